"""Failed sign-in counting per account and per client address, with doubling lockouts.

After ``max_failures`` failures of one key, each further failure locks it for
``base * 2**(failures - max_failures)`` seconds, capped. The counts live in PostgreSQL (never in
the cookie) and are forgotten after an hour without failures. A locked key is refused before the
password is even checked, so a lockout cannot be probed for the right password.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

FORGET_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class Policy:
    max_failures: int
    address_max_failures: int
    base_seconds: int
    max_seconds: int

    @classmethod
    def from_config(cls) -> Policy:
        c = current_app.config
        return cls(c["LOGIN_MAX_FAILURES"], c["LOGIN_ADDRESS_MAX_FAILURES"], c["LOGIN_LOCKOUT_SECONDS"],
                   c["LOGIN_LOCKOUT_MAX_SECONDS"])

    def threshold(self, kind: str) -> int:
        return self.max_failures if kind == "user" else self.address_max_failures

    def lockout_seconds(self, kind: str, failures: int) -> int:
        over = failures - self.threshold(kind)
        if over < 0:
            return 0
        return min(self.base_seconds * 2 ** min(over, 20), self.max_seconds)


def keys_for(username: str | None, address: str | None) -> list[tuple[str, str]]:
    keys = []
    if username:
        keys.append(("user", username.strip().lower()))
    if address:
        keys.append(("address", address))
    return keys


def seconds_locked(conn, keys: list[tuple[str, str]]) -> int:
    """How long the longest lockout among ``keys`` still lasts (0 when none is locked)."""
    if not keys:
        return 0
    row = conn.execute(
        "SELECT ceil(extract(epoch FROM max(locked_until) - now()))::int AS left_s FROM login_attempts"
        " WHERE (kind, key) IN (SELECT * FROM unnest(%s::text[], %s::text[])) AND locked_until > now()",
        ([k for k, _ in keys], [v for _, v in keys]),
    ).fetchone()
    return max(row["left_s"] or 0, 0)


def record_failure(conn, keys: list[tuple[str, str]], policy: Policy) -> int:
    """Count one failure for each key; returns the longest lockout this caused (0 if none)."""
    longest = 0
    for kind, key in keys:
        failures = conn.execute(
            "INSERT INTO login_attempts (kind, key, failures) VALUES (%s, %s, 1)"
            " ON CONFLICT (kind, key) DO UPDATE SET failures = CASE"
            "   WHEN login_attempts.last_failure_at < now() - make_interval(secs => %s) THEN 1"
            "   ELSE login_attempts.failures + 1 END, last_failure_at = now()"
            " RETURNING failures",
            (kind, key, FORGET_AFTER_SECONDS),
        ).fetchone()["failures"]
        seconds = policy.lockout_seconds(kind, failures)
        if seconds:
            conn.execute("UPDATE login_attempts SET locked_until = now() + make_interval(secs => %s)"
                         " WHERE kind = %s AND key = %s", (seconds, kind, key))
            longest = max(longest, seconds)
    return longest


def clear_account(conn, username: str) -> None:
    """A complete sign-in forgives the account's failures (the address keeps its count until it decays)."""
    conn.execute("DELETE FROM login_attempts WHERE kind = 'user' AND key = %s", (username.strip().lower(),))
