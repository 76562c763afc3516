"""Step-up: destructive actions need a TOTP code entered in the last five minutes.

``@step_up_required`` goes under ``@role_required``. Without a fresh code, a page request is sent
to the step-up form and back; a form post is sent to the step-up form and then back to the page
it came from, where the operator submits again (a POST is never replayed on their behalf).
"""

from __future__ import annotations

import time
from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, flash, jsonify, redirect, request, session, url_for

STEP_UP_KEY = "step_up_at"


def is_local_target(target: str | None) -> bool:
    """True for a path on this panel ("/hosts/x?y=1"), false for anything that could leave it."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return False
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def mark_stepped_up() -> None:
    session[STEP_UP_KEY] = time.time()


def stepped_up_recently() -> bool:
    at = session.get(STEP_UP_KEY)
    return isinstance(at, int | float) and 0 <= time.time() - at <= current_app.config["STEP_UP_SECONDS"]


def _back_to() -> str:
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if parts.netloc == request.host:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if is_local_target(path):
            return path
    return url_for("hosts.index")


def step_up_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if stepped_up_recently():
            return view(*args, **kwargs)
        if request.path.startswith("/api/"):
            return jsonify(error="this action needs a fresh TOTP code: confirm at " + url_for("auth.step_up")), 403
        if request.method != "GET":
            flash("Confirm with a fresh authentication code, then submit again.", "warn")
        return redirect(url_for("auth.step_up", next=_back_to()))

    wrapper.step_up = True
    return wrapper
