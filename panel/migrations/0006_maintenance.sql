-- 0006: maintenance. Jobs the panel queued on a host's RQ queue (maint:<host>) and what became of
-- them, the per-host job keys that sign them, each host's safe mode, and the schedules.
--
-- A host here is a name (agent/contract.py valid_host_name), not a hosts row: a host can be
-- enrolled for maintenance before its agent first reports.

CREATE TABLE maintenance_jobs (
    id              uuid PRIMARY KEY,
    host            text NOT NULL,
    action          text NOT NULL,
    params          jsonb NOT NULL DEFAULT '{}'::jsonb,   -- validated, defaults filled in (config text redacted)
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired', 'refused')),
    requested_by    text NOT NULL,                        -- user:<name>, token:<name>, schedule:<name>
    requested_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    summary         text,
    result          jsonb,                                -- the worker's return value
    progress        jsonb NOT NULL DEFAULT '[]'::jsonb,   -- lines, as the worker reported them
    error           text,
    schedule_id     integer,
    rq_job_id       text UNIQUE
);
CREATE INDEX maintenance_jobs_host_idx ON maintenance_jobs (host, requested_at DESC);
CREATE INDEX maintenance_jobs_requested_idx ON maintenance_jobs (requested_at DESC);
CREATE INDEX maintenance_jobs_active_idx ON maintenance_jobs (status) WHERE status IN ('queued', 'running');
CREATE INDEX maintenance_jobs_schedule_idx ON maintenance_jobs (schedule_id, requested_at DESC)
    WHERE schedule_id IS NOT NULL;

-- The HMAC key that signs a host's jobs, encrypted with panel.secretbox (v1:<key-id>:...).
CREATE TABLE maintenance_host_keys (
    host            text PRIMARY KEY,
    key_enc         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    imported        boolean NOT NULL DEFAULT false
);

-- Safe mode per host, and when the panel last saw the host's maintenance worker.
CREATE TABLE maintenance_host_settings (
    host                text PRIMARY KEY,
    safe_mode           boolean NOT NULL DEFAULT false,
    safe_mode_by        text,
    safe_mode_at        timestamptz,
    safe_mode_reason    text,
    worker_last_seen_at timestamptz
);

CREATE TABLE maintenance_schedules (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$'),
    host            text NOT NULL,
    action          text NOT NULL,
    params          jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- "daily at HH:MM", "weekly on <weekday> at HH:MM" (UTC), "every N hours"
    cadence         text NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    provisioned     boolean NOT NULL DEFAULT false,       -- from the configuration file: read-only in the UI
    last_run_at     timestamptz,
    next_run_at     timestamptz,
    last_job_id     uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL
);
CREATE INDEX maintenance_schedules_due_idx ON maintenance_schedules (next_run_at) WHERE enabled;

-- The last provisioning of schedules from the configuration file (one row).
CREATE TABLE maintenance_provisioning (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    path            text,
    file_stamp      text,                                 -- size:mtime of the file last read
    applied_at      timestamptz,
    error           text,                                 -- why the last read file was refused (null: applied)
    error_at        timestamptz
);
