"""Helpers for the audit, secretbox, token and OpenAPI tests.

``secure_app(app)`` wires the audit, token, secrets and OpenAPI parts into the test app (unless
``create_app`` already does) and adds a test-only hook that plays the session login: it sets
``g.principal`` to ``login.principal`` when no other hook (the bearer token) has set one.
"""

from __future__ import annotations

import re

import psycopg
from flask import Flask, g

from panel.auth.principal import Principal

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Login:
    """Who the test session is logged in as (None: nobody)."""

    def __init__(self) -> None:
        self.principal: Principal | None = None

    def as_user(self, user: Principal | None) -> None:
        self.principal = user


def secure_app(app: Flask) -> Login:
    from panel import secretbox
    from panel.api import openapi
    from panel.audit import init_app as audit_init
    from panel.tokens import init_app as tokens_init

    if "audit" not in app.blueprints:
        audit_init(app)
    if "tokens" not in app.blueprints:
        tokens_init(app)
    if "openapi" not in app.blueprints:
        openapi.init_app(app)
    if "secrets" not in app.cli.commands:
        secretbox.init_app(app)
    login = Login()

    def test_session_login():
        if g.get("principal") is None and login.principal is not None:
            g.principal = login.principal

    app.before_request(test_session_login)
    return login


def create_user(dsn: str, username: str, role: str) -> Principal:
    """A users row (no password, no TOTP) and the Principal a session login would give it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        (user_id,) = conn.execute(
            "INSERT INTO users (username, role, password_hash) VALUES (%s, %s, 'x') RETURNING id",
            (username, role)).fetchone()
    return Principal(kind="user", id=user_id, name=username, role=role, user_id=user_id)


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
