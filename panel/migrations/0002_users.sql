-- 0002: panel accounts. Roles: viewer (read), operator (acknowledge, snooze, safe maintenance),
-- admin (users, rules, integrations, destructive actions).

CREATE TABLE users (
    id                integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username          text NOT NULL,
    role              text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash     text NOT NULL,                 -- argon2id
    totp_secret_enc   text,                          -- encrypted TOTP secret; NULL until enrolment starts
                                                     -- (it counts only once totp_enrolled_at is set)
    totp_enrolled_at  timestamptz,
    totp_last_step    bigint,                        -- last accepted TOTP time step: replays are refused
    disabled          boolean NOT NULL DEFAULT false,
    session_epoch     integer NOT NULL DEFAULT 0,    -- bumped by "log out everywhere"
    must_change_password boolean NOT NULL DEFAULT false,  -- invited: signs in with a temporary password
    last_login_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

-- Ten single-use recovery codes per user, stored hashed.
CREATE TABLE recovery_codes (
    user_id     integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   text NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

-- Server-side sessions: the cookie holds only a random id; the row is found by that id's
-- SHA-256, so a copy of this table does not yield usable cookies. user_id is NULL until the login
-- is complete (password and TOTP). Expiry (idle and absolute) is checked on every request.
CREATE TABLE sessions (
    id_hash       text PRIMARY KEY,
    user_id       integer REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    client_ip     inet,
    user_agent    text NOT NULL DEFAULT '',
    data          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_last_seen_at_idx ON sessions (last_seen_at);

-- Failed sign-in attempts, per account (kind 'user', key = lower(username)) and per client
-- address (kind 'address'). After a threshold each further failure locks the key for a doubling,
-- capped delay. Kept here, never in the cookie, so clearing cookies does not reset the count.
CREATE TABLE login_attempts (
    kind             text NOT NULL CHECK (kind IN ('user', 'address')),
    key              text NOT NULL,
    failures         integer NOT NULL DEFAULT 0,
    last_failure_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    PRIMARY KEY (kind, key)
);

-- The IP allowlist, checked before anything else. Empty means every address may connect.
CREATE TABLE ip_allowlist (
    network     cidr PRIMARY KEY,
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT ''
);
