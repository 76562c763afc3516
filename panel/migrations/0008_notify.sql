-- 0008: notifications. Channels (integrations) with encrypted secrets, routes from alerts to
-- channels, the per-group state of the dispatcher (what was last told to whom, and when), the
-- notifications it queues on RQ's "notify" queue and one delivery row per attempt, and silences.
--
-- Comes after 0007 (alert_rules, alerts, alert_transitions) but does not reference those tables:
-- an alert is named here by its id and fingerprint only, so history survives alert pruning.

-- A channel: a generic webhook or an SMTP mailbox (later: Telegram, Discord, Slack).
-- settings holds what is not secret; secrets_enc is secretbox.encrypt() of a JSON object of the
-- secret fields (webhook url, signing secret, auth header; SMTP password).
CREATE TABLE integrations (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$'),
    kind         text NOT NULL,
    settings     jsonb NOT NULL DEFAULT '{}',
    secrets_enc  text,
    enabled      boolean NOT NULL DEFAULT true,
    provisioned  boolean NOT NULL DEFAULT false,   -- from integrations.json: read-only in the UI
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT 'system'
);
CREATE UNIQUE INDEX integrations_name_key ON integrations (lower(name));

-- Routes, tried in position order: an alert goes to the first route whose severities and
-- matchers fit it (and on to later ones while the matched route has continue_matching).
CREATE TABLE notify_routes (
    id                       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                     text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$'),
    position                 integer NOT NULL DEFAULT 0,
    severities               text[] NOT NULL DEFAULT '{info,warning,critical}',
    matchers                 jsonb NOT NULL DEFAULT '[]',   -- [{"name", "op", "value"}], all must match
    group_by                 text[] NOT NULL DEFAULT '{alertname,host}',
    group_wait_seconds       integer NOT NULL DEFAULT 30 CHECK (group_wait_seconds >= 0),
    group_interval_seconds   integer NOT NULL DEFAULT 300 CHECK (group_interval_seconds >= 1),
    repeat_interval_seconds  integer NOT NULL DEFAULT 14400 CHECK (repeat_interval_seconds >= 1),
    continue_matching        boolean NOT NULL DEFAULT false,
    enabled                  boolean NOT NULL DEFAULT true,
    provisioned              boolean NOT NULL DEFAULT false,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    updated_by               text NOT NULL DEFAULT 'system'
);
CREATE UNIQUE INDEX notify_routes_name_key ON notify_routes (lower(name));

CREATE TABLE notify_route_integrations (
    route_id        integer NOT NULL REFERENCES notify_routes (id) ON DELETE CASCADE,
    integration_id  integer NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    PRIMARY KEY (route_id, integration_id)
);

-- One aggregation group per route and value of its group_by labels (Alertmanager's model).
-- notified maps each fingerprint the channels were last told is firing to
-- {"id": alert id, "acked": bool, "muted": bool}: muted marks one silenced, snoozed or inhibited
-- since, so that it is told again when it comes back while still firing.
CREATE TABLE notify_groups (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    route_id          integer NOT NULL REFERENCES notify_routes (id) ON DELETE CASCADE,
    group_key         text NOT NULL,
    group_labels      jsonb NOT NULL,
    created_at        timestamptz NOT NULL,
    next_flush_at     timestamptz NOT NULL,
    last_flush_at     timestamptz,
    last_notified_at  timestamptz,
    notified          jsonb NOT NULL DEFAULT '{}',
    notifications     integer NOT NULL DEFAULT 0,
    UNIQUE (route_id, group_key)
);
CREATE INDEX notify_groups_next_flush_idx ON notify_groups (next_flush_at);

-- One message for one channel: queued by the dispatcher (or the "send test" action), delivered by
-- the RQ job panel.notify.deliver. The payload is rendered once, so every attempt sends the same
-- bytes; idempotency_key makes a retried or duplicated job send at most once after a success.
CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    kind             text NOT NULL DEFAULT 'alerts' CHECK (kind IN ('alerts', 'test')),
    group_id         bigint REFERENCES notify_groups (id) ON DELETE SET NULL,
    route_name       text,
    integration_id   integer REFERENCES integrations (id) ON DELETE SET NULL,
    integration_name text NOT NULL,
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    severity         text,
    firing           integer NOT NULL DEFAULT 0,
    resolved         integer NOT NULL DEFAULT 0,
    fingerprints     text[] NOT NULL DEFAULT '{}',
    payload          jsonb NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX notifications_integration_idx ON notifications (integration_id, id DESC);
CREATE INDEX notifications_group_idx ON notifications (group_id, id DESC);

-- One row per delivery attempt.
CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    integration_id   integer REFERENCES integrations (id) ON DELETE SET NULL,
    attempt          integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('sent', 'retrying', 'failed')),
    response_code    integer,
    error            text,
    duration_ms      double precision NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_integration_idx ON deliveries (integration_id, id DESC);
CREATE INDEX deliveries_notification_idx ON deliveries (notification_id);

-- Silences: label matchers and a time window. A recurring silence (recurrence not null) is in force
-- during its weekly windows between starts_at and ends_at (NULL: no end):
-- {"weekdays": [0..6, Monday = 0], "start": "HH:MM" UTC, "duration_minutes": N}.
CREATE TABLE silences (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers    jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'array' AND jsonb_array_length(matchers) > 0),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    recurrence  jsonb,
    comment     text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT 'user',   -- user, api, maintenance
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expired_at  timestamptz,
    expired_by  text,
    CHECK (recurrence IS NOT NULL OR (ends_at IS NOT NULL AND ends_at > starts_at))
);
CREATE INDEX silences_live_idx ON silences (ends_at) WHERE expired_at IS NULL;

-- What the last import of integrations.json did (one row): the page shows a refused file.
CREATE TABLE notify_provisioning (
    id          integer PRIMARY KEY CHECK (id = 1),
    path        text NOT NULL,
    checksum    text,
    loaded_at   timestamptz,
    checked_at  timestamptz NOT NULL,
    error       text
);
