"""The sign-in sequence: password, then (new password,) TOTP enrolment or code, then the session.

Between the password and the second factor the session holds only ``pending_user_id``, for at
most five minutes; ``g.principal`` is set only once both factors passed.
"""

from __future__ import annotations

import time
from functools import wraps
from typing import Any

from flask import flash, g, redirect, session, url_for

from panel import audit
from panel.auth import lockout
from panel.auth.sessions import current_session
from panel.auth.stepup import mark_stepped_up
from panel.auth.users import get_user
from panel.db import get_db

PENDING_SECONDS = 300


def start_pending(user: dict[str, Any], next_url: str | None) -> None:
    """Password accepted: remember who is signing in (under a new session id) until the second factor."""
    sess = current_session()
    sess.clear()
    sess["pending_user_id"] = user["id"]
    sess["pending_since"] = time.time()
    if next_url:
        sess["next"] = next_url
    sess.regenerate()


def pending_user() -> dict[str, Any] | None:
    user_id, since = session.get("pending_user_id"), session.get("pending_since")
    if not isinstance(user_id, int) or not isinstance(since, int | float) or time.time() - since > PENDING_SECONDS:
        return None
    user = get_user(get_db(), user_id)
    return None if user is None or user["disabled"] else user


def next_step(user: dict[str, Any]) -> str:
    if user["must_change_password"]:
        return "auth.new_password"
    if user["totp_enrolled_at"] is None:
        return "auth.enrol"
    return "auth.login_code"


def pending_login_required(view):
    """For the steps after the password: without a recent password, back to the login form."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        user = pending_user()
        if user is None:
            if session.pop("pending_user_id", None) is not None:
                flash("The sign-in took too long: enter your password again.", "warn")
            return redirect(url_for("auth.login"))
        g.pending_user = user
        return view(*args, **kwargs)

    wrapper.login_flow = True  # the URL-map test reads this: reachable between password and TOTP only
    return wrapper


def complete_login(user: dict[str, Any], *, fresh_totp: bool, method: str) -> str:
    """Both factors passed: a new session id bound to the user. Returns where to go next."""
    conn = get_db()
    next_url = session.get("next") or url_for("hosts.index")
    current_session().log_in(user["id"])
    if fresh_totp:
        mark_stepped_up()
    conn.execute("UPDATE users SET last_login_at = now() WHERE id = %s", (user["id"],))
    lockout.clear_account(conn, user["username"])
    audit.record_event("auth.login", "user", str(user["id"]), actor=f"user:{user['username']}", method=method)
    return next_url


def refuse(user: dict[str, Any] | None, username: str, reason: str) -> str:
    """Count a failed attempt (account and address); returns the message for the form."""
    conn = get_db()
    locked = lockout.record_failure(conn, lockout.keys_for(username, g.get("client_ip")),
                                    lockout.Policy.from_config())
    audit.record_event("auth.login_failed", "user", str(user["id"]) if user else None, actor=f"user:{username}",
                       reason=reason)
    if locked:
        audit.record_event("auth.locked_out", "user", str(user["id"]) if user else None, actor=f"user:{username}",
                           seconds=locked)
        return f"Too many failed attempts: try again in {locked}\u00a0s."
    return {
        "password": "Wrong username or password.",
        "code": "That code is not valid. Check your authenticator's clock and try the current code.",
        "replayed": "That code was already used. Wait for the next code from your authenticator.",
        "recovery": "That recovery code is not valid or was already used.",
    }[reason]


def locked_message(username: str | None) -> str | None:
    seconds = lockout.seconds_locked(get_db(), lockout.keys_for(username, g.get("client_ip")))
    return f"Too many failed attempts: try again in {seconds}\u00a0s." if seconds else None
