"""``/account``: your sessions (with "log out everywhere") and your password."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for

from panel import audit
from panel.auth.forms import ChangePasswordForm, EmptyForm
from panel.auth.passwords import password_problem, verify_password
from panel.auth.principal import role_required
from panel.auth.sessions import current_session
from panel.auth.stepup import step_up_required
from panel.auth.users import end_sessions, get_user, set_password
from panel.db import get_db

bp = Blueprint("account", __name__, url_prefix="/account")


def _sessions(user_id: int):
    return get_db().execute(
        "SELECT id_hash, created_at, last_seen_at, host(client_ip) AS client_ip, user_agent FROM sessions"
        " WHERE user_id = %s ORDER BY last_seen_at DESC", (user_id,)).fetchall()


def _render(password_form=None, error=None, status=200):
    user = get_user(get_db(), g.principal.user_id)
    return render_template("account/index.html", user=user, sessions=_sessions(user["id"]),
                           current=current_session().id_hash, logout_form=EmptyForm(),
                           password_form=password_form or ChangePasswordForm(), error=error), status


@bp.get("")
@role_required("viewer")
def index():
    return _render()


@bp.post("/logout-everywhere")
@role_required("viewer")
def logout_everywhere():
    """End every session of this user, this one included."""
    if EmptyForm().validate_on_submit():
        count = end_sessions(get_db(), g.principal.user_id)
        audit.record_event("auth.logout_everywhere", "user", str(g.principal.user_id), sessions=count)
        current_session().destroy()
        flash(f"Signed out of {count} session{'s' if count != 1 else ''}.", "ok")
    return redirect(url_for("auth.login"))


@bp.post("/password")
@role_required("viewer")
@step_up_required
def change_password():
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _render(password_form=form, status=400)
    user = get_user(get_db(), g.principal.user_id)
    if not verify_password(user["password_hash"], form.current.data):
        return _render(password_form=form, error="The current password is wrong.", status=400)
    problem = password_problem(form.password.data, user["username"])
    if problem:
        return _render(password_form=form, error=problem, status=400)
    set_password(get_db(), user["id"], form.password.data)
    audit.record_event("auth.password_changed", "user", str(user["id"]))
    flash("Password changed.", "ok")
    return redirect(url_for("account.index"))
