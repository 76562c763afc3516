-- 0001: hosts, metric series and their samples, ingested batches, events.
--
-- Time-series layout: one row per (series, ts). The primary key (series_id, ts) serves the
-- panel's typical read, "one series over a time range", as an index range scan; the BRIN index
-- on ts serves whole-table time scans (rollups, retention) at almost no write cost because rows
-- arrive roughly in time order. ts is part of the key, so a later migration can turn samples
-- into a table range-partitioned by ts without changing the key. samples deliberately has no
-- foreign key to series: it would cost a lookup per inserted row and complicate partitioning;
-- series are never deleted without their samples (a host removal deletes both).

CREATE TABLE hosts (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),   -- panel clock: last stream entry received
    agent_version   text NOT NULL DEFAULT '',
    last_batch_ts   timestamptz                           -- agent clock: newest batch's ts
);

CREATE TABLE series (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id     integer NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (host_id, name, labels)
);
CREATE INDEX series_name_idx ON series (name);

CREATE TABLE samples (
    series_id   bigint NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (series_id, ts)
);
CREATE INDEX samples_ts_brin ON samples USING brin (ts) WITH (pages_per_range = 32);

-- The newest value of each series, kept current by the engine, so overviews read one row per
-- series instead of scanning samples.
CREATE TABLE latest (
    series_id   bigint PRIMARY KEY REFERENCES series (id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL
);

-- Every batch the engine stored, by the agent's batch id: a batch delivered twice (spool replay,
-- retried XADD, crash between commit and XACK) is recognised here and stored once.
CREATE TABLE ingested_batches (
    host_id       integer NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    batch_id      text NOT NULL,
    stream_id     text NOT NULL,
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    sample_count  integer NOT NULL,
    PRIMARY KEY (host_id, batch_id)
);
CREATE INDEX ingested_batches_received_at_idx ON ingested_batches USING brin (received_at);

CREATE TABLE events (
    host_id     integer NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    event_id    text NOT NULL,
    kind        text NOT NULL,
    ts          timestamptz NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (host_id, event_id)
);
CREATE INDEX events_host_ts_idx ON events (host_id, ts DESC);
CREATE INDEX events_kind_ts_idx ON events (kind, ts DESC);

-- Stream entries the engine could not read (bad JSON, wrong shape, impossible values). They are
-- acknowledged so they cannot block the stream, and kept here for the operator to inspect.
CREATE TABLE rejected_batches (
    host          text NOT NULL,
    stream_id     text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    reason        text NOT NULL,
    payload       text NOT NULL,
    PRIMARY KEY (host, stream_id)
);
CREATE INDEX rejected_batches_received_at_idx ON rejected_batches (received_at DESC);
