-- 0005: rollups of samples at 1 minute and 1 hour, and the rollup job's progress.
--
-- One row per (series, bucket) with min, max, sum, count (avg = sum / count) and the last value
-- with its time, so a coarser rollup is computed exactly from a finer one (avg weighted by count,
-- last by last_ts). Rollups are kept longer than raw samples (retention per resolution,
-- POOLWARDEN_RETENTION_*_DAYS). The primary key serves "one series over a time range"; BRIN on
-- bucket serves retention's time scans.

CREATE TABLE samples_1m (
    series_id   bigint NOT NULL,
    bucket      timestamptz NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    count       integer NOT NULL,
    last        double precision NOT NULL,
    last_ts     timestamptz NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE INDEX samples_1m_bucket_brin ON samples_1m USING brin (bucket);

CREATE TABLE samples_1h (LIKE samples_1m INCLUDING ALL);

-- How far each resolution is complete: every bucket before done_until is rolled up. Samples that
-- arrive later for a bucket already done are noted in rollup_dirty by the engine, which the next
-- rollup run recomputes.
CREATE TABLE rollup_state (
    resolution  text PRIMARY KEY CHECK (resolution IN ('1m', '1h')),
    done_until  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollup_dirty (
    resolution  text NOT NULL CHECK (resolution IN ('1m', '1h')),
    bucket      timestamptz NOT NULL,
    PRIMARY KEY (resolution, bucket)
);
