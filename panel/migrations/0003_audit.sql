-- 0003: the audit log, append-only and hash-chained.
--
-- Every row is written by panel.audit.record_event. Row ids are the chain positions 1, 2, 3 ...
-- without gaps: they are taken from audit_chain_head (locked FOR UPDATE by the writer), not from a
-- sequence, so a rolled-back write leaves no hole and concurrent writers queue instead of forking
-- the chain. hash = sha256(canonical JSON of the row's content || prev_hash); the first row's
-- prev_hash is 64 zeros.
--
-- The triggers refuse UPDATE, DELETE and TRUNCATE, and refuse an INSERT that does not extend the
-- chain head. A superuser (or the tables' owner) can still disable triggers
-- (ALTER TABLE ... DISABLE TRIGGER, SET session_replication_role = replica) and rewrite rows: that
-- is what 'poolwarden-panel audit verify' detects. Run the panel as a role that does not own these
-- tables to keep that power away from the web process.
--
-- before/after/details are json (not jsonb): json keeps the text exactly as written, so the content
-- read back hashes to the same value.

CREATE TABLE audit_log (
    id           bigint PRIMARY KEY CHECK (id > 0),
    ts           timestamptz NOT NULL,
    actor        text NOT NULL,
    address      text,
    action       text NOT NULL,
    object_type  text,
    object_id    text,
    before       json,
    after        json,
    details      json NOT NULL,
    prev_hash    text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash         text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, id);

-- One row: the newest link of the chain. Writers lock it, so appends are serialised.
CREATE TABLE audit_chain_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id    bigint NOT NULL,
    last_hash  text NOT NULL
);
INSERT INTO audit_chain_head (last_id, last_hash) VALUES (0, repeat('0', 64));

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- An insert must extend the head exactly; the head then moves to the new row.
CREATE FUNCTION audit_check_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_chain_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM audit_chain_head FOR UPDATE;
    IF NEW.id <> head.last_id + 1 OR NEW.prev_hash <> head.last_hash THEN
        RAISE EXCEPTION 'audit row % does not extend the chain head (last id %)', NEW.id, head.last_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION audit_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_chain_head SET last_id = NEW.id, last_hash = NEW.hash;
    RETURN NULL;
END;
$$;

-- The head moves only from audit_advance_head (trigger depth > 1), never by a direct statement.
CREATE FUNCTION audit_guard_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit chain head moves only when a row is appended: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_check_append BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_check_append();
CREATE TRIGGER audit_log_advance_head AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_advance_head();
CREATE TRIGGER audit_chain_head_guard BEFORE UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_guard_head();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
