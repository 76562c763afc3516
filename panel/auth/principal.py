"""The authenticated principal of a request and the role check every protected route uses.

Hooks that authenticate a request (the session login, API tokens) set ``g.principal``; routes
declare the least role they need with ``@role_required("operator")``. Unauthenticated requests
get 401 JSON under /api and a redirect to the login page elsewhere; a role too low gets 403
(JSON under /api, an error page elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import abort, g, jsonify, redirect, request, url_for

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str            # "user" or "token"
    id: int              # user id or token id
    name: str            # username or token name
    role: str            # one of ROLES
    user_id: int | None  # the user behind it (a token's owner), if any


def role_rank(role: str) -> int:
    return ROLES.index(role)


def has_role(principal: Principal | None, minimum: str) -> bool:
    return principal is not None and role_rank(principal.role) >= role_rank(minimum)


def current_principal() -> Principal | None:
    return g.get("principal")


def _is_api_request() -> bool:
    # /metrics is read by Prometheus: a 401 it can report, not a redirect to a login form.
    if request.path.startswith("/api/") or request.path == "/metrics":
        return True
    return request.accept_mimetypes.best == "application/json"


def role_required(minimum: str):
    """Allow the route only to a principal with at least ``minimum`` role."""
    if minimum not in ROLES:
        raise ValueError(f"unknown role {minimum!r}")

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal is None:
                if _is_api_request():
                    return jsonify(error="authentication required"), 401
                if request.method != "GET":  # a form post cannot be replayed after the login
                    return redirect(url_for("auth.login"))
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if not has_role(principal, minimum):
                if _is_api_request():
                    return jsonify(error=f"this needs the {minimum} role; you are {principal.role}"), 403
                abort(403, description=f"This page needs the {minimum} role; you are {principal.role}.")
            return view(*args, **kwargs)

        wrapper.required_role = minimum  # the URL-map test reads this
        return wrapper

    return decorator
