-- 0007: alerting. Rules (built-in types with parameters, provisioned from config/alerts.json or
-- made in the UI), alerts (one row per episode of one rule and label set) and every state change.
--
-- An alert row lives from the moment its condition is first seen (pending) through firing to
-- resolved; a new episode of the same rule and labels is a new row, so the resolved rows are the
-- history. The partial unique index keeps one open alert per rule and label set (fingerprint).
-- acknowledged_* and snoozed_* are written by the notifier (panel/notify), never by evaluation.

CREATE TABLE alert_rules (
    id                   serial PRIMARY KEY,
    name                 text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z][A-Za-z0-9_.-]{0,63}$'),
    type                 text NOT NULL,
    params               jsonb NOT NULL DEFAULT '{}'::jsonb,
    severity             text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    for_seconds          integer NOT NULL DEFAULT 0 CHECK (for_seconds >= 0),
    keep_firing_seconds  integer NOT NULL DEFAULT 0 CHECK (keep_firing_seconds >= 0),
    labels               jsonb NOT NULL DEFAULT '{}'::jsonb,    -- extra labels every alert of the rule carries
    annotations          jsonb NOT NULL DEFAULT '{}'::jsonb,    -- summary/description templates overriding the type's
    matchers             jsonb NOT NULL DEFAULT '[]'::jsonb,    -- ["mount!~/boot.*", ...]: which label sets it watches
    enabled              boolean NOT NULL DEFAULT true,
    provisioned          boolean NOT NULL DEFAULT false,        -- from the configuration file: read-only in the UI
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           text NOT NULL DEFAULT 'system',
    last_error           text,                                  -- why the last evaluation of the rule failed
    last_error_at        timestamptz
);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    rule_id          integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    fingerprint      text NOT NULL,
    labels           jsonb NOT NULL,
    annotations      jsonb NOT NULL DEFAULT '{}'::jsonb,        -- summary, description
    state            text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    value            double precision,
    active_since     timestamptz NOT NULL,                      -- condition first seen (pending since)
    fired_at         timestamptz,
    resolved_at      timestamptz,
    last_eval_at     timestamptz NOT NULL,
    cleared_since    timestamptz,                               -- condition gone since (keep-firing runs)
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    snoozed_until    timestamptz,
    snoozed_by       text
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (rule_id, fingerprint) WHERE state <> 'resolved';
CREATE INDEX alerts_open_idx ON alerts (state, severity) WHERE state <> 'resolved';
CREATE INDEX alerts_active_since_idx ON alerts (active_since DESC);
CREATE INDEX alerts_rule_idx ON alerts (rule_id, active_since DESC);
CREATE INDEX alerts_labels_idx ON alerts USING gin (labels jsonb_path_ops);

CREATE TABLE alert_transitions (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    from_state  text CHECK (from_state IN ('pending', 'firing', 'resolved')),   -- NULL: the alert was created
    to_state    text NOT NULL CHECK (to_state IN ('pending', 'firing', 'resolved')),
    at          timestamptz NOT NULL,
    value       double precision,
    note        text
);
CREATE INDEX alert_transitions_alert_idx ON alert_transitions (alert_id, id);

-- The last import of the alert rules file (one row): the rules page shows a refused file.
CREATE TABLE alert_provisioning (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    path        text NOT NULL,
    checksum    text,                                           -- sha256 of the file last applied
    applied_at  timestamptz,
    checked_at  timestamptz NOT NULL,
    error       text                                            -- why the last file read was refused (null: applied)
);
