"""Server-side sessions: the cookie holds only a random id, everything else is a row in ``sessions``.

The Flask ``session`` object keeps working (Flask-WTF's CSRF token and flashed messages live in
it), but its contents are stored in PostgreSQL. A session is *loaded* by the ``load_session`` hook,
after the IP allowlist has run; requests refused before that never touch the table. Sessions
expire after ``SESSION_IDLE_MINUTES`` without a request and ``SESSION_MAX_HOURS`` after creation.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask import Flask, current_app, g, request, session
from flask.sessions import SessionInterface, SessionMixin
from psycopg.types.json import Jsonb
from werkzeug.datastructures import CallbackDict

from panel.auth.principal import Principal
from panel.db import get_db

SECURE_COOKIE_NAME = "__Host-poolwarden"   # __Host-: Secure, Path=/, no Domain, enforced by browsers
PLAIN_COOKIE_NAME = "poolwarden_session"
NO_SESSION_ENDPOINTS = {"static", "health.healthz"}


def hash_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_name(app: Flask) -> str:
    return SECURE_COOKIE_NAME if app.config.get("SESSION_COOKIE_SECURE") else PLAIN_COOKIE_NAME


class ServerSession(CallbackDict, SessionMixin):
    """The session's data plus its row's identity; ``regenerate()`` gives it a new id on save."""

    def __init__(self, token: str | None = None):
        def on_update(_self):
            _self.modified = True

        super().__init__(None, on_update)
        self.token = token            # the id the browser presented, if any
        self.id_hash: str | None = None
        self.user_id: int | None = None
        self.loaded = False
        self.expired = False          # the browser presented an id that is no longer valid
        self.modified = False
        self.regenerate_id = False
        self.destroyed = False

    def regenerate(self) -> None:
        """Store the data under a new random id (and drop the old row) when the response is sent."""
        self.regenerate_id = True

    def log_in(self, user_id: int) -> None:
        self.clear()
        self.user_id = user_id
        self.regenerate()

    def destroy(self) -> None:
        self.clear()
        self.user_id = None
        self.destroyed = True

    def load(self, conn) -> None:
        self.loaded = True
        if not self.token:
            return
        cfg = current_app.config
        row = conn.execute(
            "SELECT s.id_hash, s.user_id, s.data, u.username, u.role, u.disabled,"
            " s.last_seen_at > now() - make_interval(mins => %s)"
            " AND s.created_at > now() - make_interval(hours => %s) AS fresh"
            " FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id_hash = %s",
            (cfg["SESSION_IDLE_MINUTES"], cfg["SESSION_MAX_HOURS"], hash_id(self.token)),
        ).fetchone()
        if row is None or not row["fresh"]:
            self.expired = True
            if row is not None:
                conn.execute("DELETE FROM sessions WHERE id_hash = %s", (row["id_hash"],))
                if row["user_id"] is not None and not request.path.startswith("/api/"):
                    self["_flashes"] = [("warn", "Your session expired: sign in again.")]
            return
        self.id_hash = row["id_hash"]
        if row["user_id"] is not None and row["disabled"]:
            self.destroy()
            return
        conn.execute("UPDATE sessions SET last_seen_at = now() WHERE id_hash = %s", (self.id_hash,))
        self.update(row["data"])
        self.modified = False
        self.user_id = row["user_id"]
        if self.user_id is not None:
            g.principal = Principal(kind="user", id=self.user_id, name=row["username"], role=row["role"],
                                    user_id=self.user_id)


class ServerSessionInterface(SessionInterface):
    def open_session(self, app: Flask, request) -> ServerSession:
        return ServerSession(request.cookies.get(cookie_name(app)))

    def save_session(self, app: Flask, session: ServerSession, response) -> None:  # type: ignore[override]
        if not isinstance(session, ServerSession) or not session.loaded:
            return
        name = cookie_name(app)
        cookie_args = {"path": "/", "secure": app.config["SESSION_COOKIE_SECURE"], "httponly": True,
                       "samesite": app.config["SESSION_COOKIE_SAMESITE"]}
        conn = get_db()
        if session.destroyed:
            if session.id_hash:
                conn.execute("DELETE FROM sessions WHERE id_hash = %s", (session.id_hash,))
                session.id_hash = None
            response.vary.add("Cookie")
            if not dict(session):
                if session.token:
                    response.delete_cookie(name, **cookie_args)
                return
            session.regenerate_id = True  # something was stored after sign-out (a flash): a new anonymous session
        if session.regenerate_id or (session.id_hash is None and (dict(session) or session.user_id)):
            if session.id_hash:
                conn.execute("DELETE FROM sessions WHERE id_hash = %s", (session.id_hash,))
            token = secrets.token_urlsafe(32)
            _insert(conn, hash_id(token), session.user_id, dict(session))
            response.set_cookie(name, token, **cookie_args)
            response.vary.add("Cookie")
        elif session.id_hash and session.modified:
            conn.execute("UPDATE sessions SET data = %s WHERE id_hash = %s", (Jsonb(dict(session)), session.id_hash))
        elif session.expired:
            response.delete_cookie(name, **cookie_args)


def _insert(conn, id_hash: str, user_id: int | None, data: dict[str, Any]) -> None:
    cfg = current_app.config
    conn.execute(
        "DELETE FROM sessions WHERE last_seen_at < now() - make_interval(mins => %s)"
        " OR created_at < now() - make_interval(hours => %s)",
        (cfg["SESSION_IDLE_MINUTES"], cfg["SESSION_MAX_HOURS"]),
    )
    conn.execute(
        "INSERT INTO sessions (id_hash, user_id, data, client_ip, user_agent) VALUES (%s, %s, %s, %s, %s)",
        (id_hash, user_id, Jsonb(data), g.get("client_ip"), (request.user_agent.string or "")[:300]),
    )


def current_session() -> ServerSession:
    return session._get_current_object()  # type: ignore[attr-defined]


def uses_bearer_token() -> bool:
    return (request.headers.get("Authorization") or "").lower().startswith("bearer ")


def load_session() -> None:
    """Before-request hook: load the session row and, for a completed login, set ``g.principal``.

    Static files and /healthz need no session; requests carrying an API token are authenticated by
    the token hook alone (a session cookie next to a token is ignored), whichever hook runs first.
    """
    if request.endpoint in NO_SESSION_ENDPOINTS or uses_bearer_token() or g.get("principal") is not None:
        return
    sess = current_session()
    if isinstance(sess, ServerSession):
        sess.load(get_db())
