-- 0004: API tokens for /api. The token is shown once at creation as pw_<id>_<secret>; only the
-- sha256 of the secret is stored (the secret is 256 random bits, so a plain hash is enough).
-- A token acts with its own role, never above its owner's current role, and stops working when
-- the owner is disabled or deleted.

CREATE TABLE api_tokens (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    user_id         integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_hash     text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    revoked_by      text,
    last_used_at    timestamptz,
    last_used_from  text
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
-- Audit rows name a token as token:<name>: names are unique among tokens not revoked.
CREATE UNIQUE INDEX api_tokens_active_name_key ON api_tokens (lower(name)) WHERE revoked_at IS NULL;
