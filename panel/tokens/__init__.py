"""API tokens: the /tokens page (admins create and revoke), the /api bearer hook, the rate limit."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the /tokens pages and the bearer hook.

    Call it after the IP allowlist hook and before the session-login hook: the bearer hook sets
    ``g.principal`` for /api requests that carry a token (or answers 401), and the session hook
    must leave an existing ``g.principal`` alone.
    """
    from panel.tokens.auth import authenticate_api_token
    from panel.tokens.routes import bp

    app.register_blueprint(bp)
    app.before_request(authenticate_api_token)
