"""Security policy: the before-request hooks in their order, CSRF, cookies and response headers.

Hooks, in the order they run on every request:

1. ``enforce_allowlist`` - the client address (X-Forwarded-For from trusted proxies only) must be in
   the IP allowlist; nothing else runs for a refused address, not even static files or /healthz.
2. ``load_session`` - the server-side session; a completed login sets ``g.principal``.
   (The API-token hook, registered by its own module, sets ``g.principal`` for Bearer requests.)
3. ``require_csrf_token`` - every state-changing request made with the session cookie carries the
   form's CSRF token. Bearer-token requests are exempt: a browser never adds that header by itself.

Routes then check roles with ``@role_required``; the URL-map test proves each one does.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_wtf.csrf import CSRFProtect

from panel.allowlist.policy import enforce_allowlist
from panel.auth.sessions import ServerSessionInterface, load_session, uses_bearer_token

csrf = CSRFProtect()

# Scripts and styles come only from /static: no inline code, no CDN.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)

DEFAULTS = {
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",   # Lax: links from alerts (chat, e-mail) arrive signed in
    "SESSION_IDLE_MINUTES": 30,
    "SESSION_MAX_HOURS": 12,
    "STEP_UP_SECONDS": 300,
    "LOGIN_MAX_FAILURES": 5,            # per account, then a lockout of 30 s doubling per failure
    "LOGIN_ADDRESS_MAX_FAILURES": 20,   # per client address (many users may share one)
    "LOGIN_LOCKOUT_SECONDS": 30,
    "LOGIN_LOCKOUT_MAX_SECONDS": 900,
    "TRUSTED_PROXIES": [],
    "WTF_CSRF_CHECK_DEFAULT": False,    # checked by require_csrf_token, after authentication
    "WTF_CSRF_TIME_LIMIT": None,        # the token lives as long as the (server-side) session
}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def require_csrf_token() -> None:
    if request.method not in UNSAFE_METHODS or uses_bearer_token():
        return
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    csrf.protect()


def set_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def init_app(app: Flask) -> None:
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
    # Flask's own defaults (SameSite unset) are weaker than ours: only Lax or Strict are accepted.
    if app.config.get("SESSION_COOKIE_SAMESITE") not in ("Lax", "Strict"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.session_interface = ServerSessionInterface()
    # The allowlist must stay the first hook of all: register nothing before security.init_app.
    app.before_request(enforce_allowlist)
    app.before_request(load_session)
    app.before_request(require_csrf_token)
    csrf.init_app(app)  # after our hooks: its own hook is off (WTF_CSRF_CHECK_DEFAULT), require_csrf_token runs it
    app.after_request(set_security_headers)
