"""``/admin/users``: admins invite users and change roles, reset TOTP, disable and enable accounts.

Every change needs a fresh TOTP code (step-up) and is audited with the account before and after.
An invited user gets a temporary password, shown once here, that must be replaced at first sign-in,
where TOTP enrolment follows.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from panel import audit
from panel.auth.forms import EmptyForm
from panel.auth.principal import role_required
from panel.auth.stepup import step_up_required
from panel.auth.users import (
    UserError,
    all_users,
    audit_view,
    create_user,
    get_user,
    other_active_admins,
    reset_totp,
    set_disabled,
    set_password,
    set_role,
    temporary_password,
)
from panel.db import get_db
from panel.users.forms import InviteForm, RoleForm

bp = Blueprint("users", __name__, url_prefix="/admin/users")


def _render(invite_form=None, credentials=None, status=200):
    users = all_users(get_db())
    role_forms = {u["id"]: RoleForm(role=u["role"], prefix=f"u{u['id']}") for u in users}
    return render_template("users/index.html", users=users, invite_form=invite_form or InviteForm(),
                           role_forms=role_forms, empty_form=EmptyForm(), credentials=credentials), status


def _target(user_id: int):
    user = get_user(get_db(), user_id)
    if user is None:
        abort(404, f"No user with id {user_id}.")
    return user


def _keeps_an_admin(user, *, new_role=None, disabling=False) -> bool:
    """Refuse to leave the panel without an enabled admin (and an admin removing their own rights)."""
    loses_admin = user["role"] == "admin" and not user["disabled"] and (disabling or new_role not in (None, "admin"))
    if not loses_admin:
        return True
    if user["id"] == g.principal.user_id:
        flash("You cannot remove your own admin rights or disable yourself: ask another admin.", "crit")
        return False
    if other_active_admins(get_db(), user["id"]) == 0:
        flash(f"{user['username']} is the last enabled admin: promote someone else first.", "crit")
        return False
    return True


def _audited(action: str, user, change) -> None:
    conn = get_db()
    with conn.transaction():
        change(conn)
        after = get_user(conn, user["id"])
        audit.record_event(action, "user", str(user["id"]), before=audit_view(user), after=audit_view(after))


@bp.get("")
@role_required("admin")
def index():
    return _render()


@bp.post("/invite")
@role_required("admin")
@step_up_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _render(invite_form=form, status=400)
    password = temporary_password()
    conn = get_db()
    try:
        with conn.transaction():
            user = create_user(conn, form.username.data, form.role.data, password, must_change_password=True)
            audit.record_event("user.invite", "user", str(user["id"]), after=audit_view(user))
    except UserError as exc:
        form.username.errors.append(str(exc))
        return _render(invite_form=form, status=400)
    return _render(credentials={"username": user["username"], "password": password, "action": "invited"})


@bp.post("/<int:user_id>/role")
@role_required("admin")
@step_up_required
def change_role(user_id: int):
    user = _target(user_id)
    form = RoleForm(prefix=f"u{user_id}")
    if form.validate_on_submit() and form.role.data != user["role"] and _keeps_an_admin(user, new_role=form.role.data):
        _audited("user.role_change", user, lambda conn: set_role(conn, user_id, form.role.data))
        flash(f"{user['username']} is now {form.role.data}.", "ok")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/reset-totp")
@role_required("admin")
@step_up_required
def reset_user_totp(user_id: int):
    user = _target(user_id)
    if EmptyForm().validate_on_submit():
        _audited("user.totp_reset", user, lambda conn: reset_totp(conn, user_id))
        flash(f"TOTP of {user['username']} reset: they enrol again at their next sign-in. "
              "Their sessions and recovery codes are gone.", "ok")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/reset-password")
@role_required("admin")
@step_up_required
def reset_password(user_id: int):
    user = _target(user_id)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("users.index"))
    password = temporary_password()

    def change(conn):
        set_password(conn, user_id, password, must_change=True)
        conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))

    _audited("user.password_reset", user, change)
    return _render(credentials={"username": user["username"], "password": password, "action": "reset"})


@bp.post("/<int:user_id>/disable")
@role_required("admin")
@step_up_required
def disable(user_id: int):
    user = _target(user_id)
    if EmptyForm().validate_on_submit() and not user["disabled"] and _keeps_an_admin(user, disabling=True):
        _audited("user.disable", user, lambda conn: set_disabled(conn, user_id, True))
        flash(f"{user['username']} is disabled and signed out everywhere.", "ok")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/enable")
@role_required("admin")
@step_up_required
def enable(user_id: int):
    user = _target(user_id)
    if EmptyForm().validate_on_submit() and user["disabled"]:
        _audited("user.enable", user, lambda conn: set_disabled(conn, user_id, False))
        flash(f"{user['username']} is enabled again.", "ok")
    return redirect(url_for("users.index"))
