"""Panel accounts in PostgreSQL. Every function takes a connection with dict rows."""

from __future__ import annotations

import re
import secrets
from typing import Any

from panel import secretbox
from panel.auth import totp
from panel.auth.passwords import hash_password
from panel.auth.principal import ROLES

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
USERNAME_RULE = "1 to 64 characters: letters, digits and . _ @ - (starting with a letter or digit)"

_COLUMNS = ("id, username, role, password_hash, totp_secret_enc, totp_enrolled_at, totp_last_step, disabled,"
            " must_change_password, last_login_at, created_at")


class UserError(ValueError):
    """A change the panel refuses; the message says why, in the operator's words."""


def find_by_name(conn, username: str) -> dict[str, Any] | None:
    return conn.execute(f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower(%s)", (username,)).fetchone()


def get_user(conn, user_id: int) -> dict[str, Any] | None:
    return conn.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", (user_id,)).fetchone()


def all_users(conn) -> list[dict[str, Any]]:
    return conn.execute(
        f"SELECT {_COLUMNS}, (SELECT count(*) FROM sessions s WHERE s.user_id = users.id) AS sessions,"
        " (SELECT count(*) FROM recovery_codes r WHERE r.user_id = users.id AND r.used_at IS NULL) AS recovery_left"
        " FROM users ORDER BY lower(username)"
    ).fetchall()


def audit_view(user: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of an account in before/after (never a hash or a secret)."""
    return {"username": user["username"], "role": user["role"], "disabled": user["disabled"],
            "totp_enrolled": user["totp_enrolled_at"] is not None}


def create_user(conn, username: str, role: str, password: str, *, must_change_password: bool = False
                ) -> dict[str, Any]:
    if not USERNAME.match(username):
        raise UserError(f"Usernames are {USERNAME_RULE}.")
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    if find_by_name(conn, username):
        raise UserError(f"A user named {username!r} already exists.")
    return conn.execute(
        f"INSERT INTO users (username, role, password_hash, must_change_password) VALUES (%s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (username, role, hash_password(password), must_change_password),
    ).fetchone()


def temporary_password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters, 96 bits


def set_password(conn, user_id: int, password: str, *, must_change: bool = False) -> None:
    conn.execute("UPDATE users SET password_hash = %s, must_change_password = %s, updated_at = now() WHERE id = %s",
                 (hash_password(password), must_change, user_id))


def totp_secret(user: dict[str, Any]) -> str | None:
    enc = user["totp_secret_enc"]
    return secretbox.decrypt(enc) if enc else None


def start_enrolment(conn, user: dict[str, Any]) -> str:
    """The secret being enrolled: the pending one if enrolment already started, else a new one."""
    secret = totp_secret(user)
    if secret is None or user["totp_enrolled_at"] is not None:
        secret = totp.new_secret()
        conn.execute("UPDATE users SET totp_secret_enc = %s, totp_enrolled_at = NULL, totp_last_step = NULL,"
                     " updated_at = now() WHERE id = %s", (secretbox.encrypt(secret), user["id"]))
    return secret


def complete_enrolment(conn, user_id: int) -> list[str]:
    """Mark the pending secret as enrolled; returns the new recovery codes (shown once)."""
    conn.execute("UPDATE users SET totp_enrolled_at = now(), updated_at = now() WHERE id = %s", (user_id,))
    return totp.replace_recovery_codes(conn, user_id)


def enrol_with_secret(conn, user_id: int, secret: str) -> None:
    """Enrol a known secret directly (console: the demo account)."""
    conn.execute("UPDATE users SET totp_secret_enc = %s, totp_enrolled_at = now(), totp_last_step = NULL,"
                 " updated_at = now() WHERE id = %s", (secretbox.encrypt(secret), user_id))


def reset_totp(conn, user_id: int) -> None:
    """Forget the TOTP secret and recovery codes: the user enrols again at the next sign-in."""
    conn.execute("UPDATE users SET totp_secret_enc = NULL, totp_enrolled_at = NULL, totp_last_step = NULL,"
                 " updated_at = now() WHERE id = %s", (user_id,))
    conn.execute("DELETE FROM recovery_codes WHERE user_id = %s", (user_id,))
    end_sessions(conn, user_id)


def set_role(conn, user_id: int, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")
    conn.execute("UPDATE users SET role = %s, updated_at = now() WHERE id = %s", (role, user_id))


def set_disabled(conn, user_id: int, disabled: bool) -> None:
    conn.execute("UPDATE users SET disabled = %s, updated_at = now() WHERE id = %s", (disabled, user_id))
    if disabled:
        end_sessions(conn, user_id)


def end_sessions(conn, user_id: int) -> int:
    """Log the user out everywhere: every server-side session of theirs is deleted."""
    conn.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = %s", (user_id,))
    return conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,)).rowcount


def other_active_admins(conn, user_id: int) -> int:
    row = conn.execute("SELECT count(*) AS n FROM users WHERE role = 'admin' AND NOT disabled AND id <> %s",
                       (user_id,)).fetchone()
    return row["n"]
