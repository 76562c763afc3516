"""API tokens in the database: create (the token is returned once), list, revoke, authenticate.

A token reads ``pw_<id>_<secret>``: the id finds the row, the secret (32 random bytes, base64url)
is compared by its SHA-256, in constant time. A token's effective role is the lower of its own
role and its owner's current role, so demoting a user demotes their tokens too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from panel.auth.principal import ROLES, Principal, role_rank

TOKEN_PREFIX = "pw_"  # noqa: S105 (a prefix, not a secret)
_TOKEN = re.compile(r"pw_([1-9][0-9]{0,9})_([A-Za-z0-9_-]{43})")
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()
LAST_USE_RESOLUTION_SECONDS = 60


class TokenError(ValueError):
    """The token cannot be created (name taken, role too high); the message is for the form."""


@dataclass(frozen=True)
class CreatedToken:
    id: int
    name: str
    role: str
    expires_at: datetime | None
    token: str  # shown once, never stored


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create_token(conn: psycopg.Connection, *, name: str, role: str, owner: Principal,
                 expires_in_days: int | None) -> CreatedToken:
    """Store a new token for ``owner`` (a user) and audit it; the clear token is only in the result."""
    from panel.audit import record_event

    if owner.kind != "user":
        raise TokenError("only a logged-in user can create API tokens")
    if role not in ROLES or role_rank(role) > role_rank(owner.role):
        raise TokenError(f"a token cannot have more than your own role ({owner.role})")
    secret = secrets.token_urlsafe(32)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        try:
            with conn.transaction():
                row = cur.execute(
                    "INSERT INTO api_tokens (name, user_id, role, secret_hash, created_by, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::int IS NULL THEN NULL"
                    "         ELSE now() + make_interval(days => %s::int) END)"
                    " RETURNING id, expires_at",
                    (name, owner.user_id or owner.id, role, secret_hash(secret), f"user:{owner.name}",
                     expires_in_days, expires_in_days),
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise TokenError(f"a token named {name!r} already exists: revoke it or choose another name") from None
        record_event("token.create", "api_token", str(row["id"]), conn=conn,
                     after={"name": name, "role": role, "owner": owner.name, "expires_at": row["expires_at"]})
    return CreatedToken(row["id"], name, role, row["expires_at"], f"{TOKEN_PREFIX}{row['id']}_{secret}")


def revoke_token(conn: psycopg.Connection, token_id: int) -> dict[str, Any] | None:
    """Revoke a token (idempotent); None if there is no such token."""
    from panel.audit import current_actor, record_event

    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT id, name, role, revoked_at FROM api_tokens WHERE id = %s FOR UPDATE",
                          (token_id,)).fetchone()
        if row is None or row["revoked_at"] is not None:
            return row
        row = cur.execute("UPDATE api_tokens SET revoked_at = now(), revoked_by = %s WHERE id = %s"
                          " RETURNING id, name, role, revoked_at", (current_actor(), token_id)).fetchone()
        record_event("token.revoke", "api_token", str(token_id), conn=conn, name=row["name"], role=row["role"],
                     before={"revoked": False}, after={"revoked": True})
    return row


def list_tokens(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every token, newest first, with its owner and state (active, expired, revoked)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT t.id, t.name, t.role, t.created_at, t.created_by, t.expires_at, t.revoked_at, t.revoked_by,"
            "       t.last_used_at, t.last_used_from, u.username AS owner,"
            "       CASE WHEN t.revoked_at IS NOT NULL THEN 'revoked'"
            "            WHEN t.expires_at <= now() THEN 'expired' ELSE 'active' END AS state"
            " FROM api_tokens t JOIN users u ON u.id = t.user_id ORDER BY t.id DESC"
        ).fetchall()


def authenticate(conn: psycopg.Connection, presented: str, address: str | None) -> tuple[Principal | None, str]:
    """The principal of a valid token (and "" ), or (None, why) for the 401 answer.

    The reason names expiry or revocation only once the secret matched, so a guessed id learns nothing.
    """
    match = _TOKEN.fullmatch(presented)
    if match is None:
        return None, "invalid API token"
    token_id, secret = int(match[1]), match[2]
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT t.id, t.name, t.role, t.user_id, t.secret_hash, t.revoked_at,"
            "       t.expires_at IS NOT NULL AND t.expires_at <= now() AS expired,"
            "       u.role AS owner_role, u.disabled AS owner_disabled"
            " FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = %s",
            (token_id,),
        ).fetchone()
    stored = row["secret_hash"] if row else _DUMMY_HASH
    if not hmac.compare_digest(secret_hash(secret), stored) or row is None:
        return None, "invalid API token"
    if row["revoked_at"] is not None:
        return None, "API token revoked"
    if row["expired"]:
        return None, "API token expired"
    if row["owner_disabled"]:
        return None, "the account that owns this API token is disabled"
    role = min(row["role"], row["owner_role"], key=role_rank)
    _note_use(conn, token_id, address)
    return Principal(kind="token", id=row["id"], name=row["name"], role=role, user_id=row["user_id"]), ""


def _note_use(conn: psycopg.Connection, token_id: int, address: str | None) -> None:
    """Record last use; at most one write a minute per token unless the address changes."""
    conn.execute(
        "UPDATE api_tokens SET last_used_at = now(), last_used_from = %s WHERE id = %s"
        " AND (last_used_at IS NULL OR last_used_at < now() - %s OR last_used_from IS DISTINCT FROM %s)",
        (address, token_id, timedelta(seconds=LAST_USE_RESOLUTION_SECONDS), address),
    )
