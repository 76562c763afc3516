"""Sign-in, second factor, TOTP enrolment, first password, step-up and sign-out."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from panel import audit
from panel.auth import flow, totp
from panel.auth.forms import CodeForm, EmptyForm, EnrolForm, LoginForm, NewPasswordForm
from panel.auth.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    spend_verification_time,
    verify_password,
)
from panel.auth.principal import current_principal, role_required
from panel.auth.sessions import current_session
from panel.auth.stepup import is_local_target, mark_stepped_up
from panel.auth.users import complete_enrolment, find_by_name, get_user, set_password, start_enrolment, totp_secret
from panel.db import get_db

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_principal() is not None:
        return redirect(url_for("hosts.index"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    error = None
    if form.validate_on_submit():
        username = form.username.data.strip()
        error = flow.locked_message(username)
        if error is None:
            conn = get_db()
            user = find_by_name(conn, username)
            if user is None:
                spend_verification_time(form.password.data)
            if user is None or not verify_password(user["password_hash"], form.password.data) or user["disabled"]:
                error = flow.refuse(user, username, "password")
            else:
                if needs_rehash(user["password_hash"]):
                    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                                 (hash_password(form.password.data), user["id"]))
                flow.start_pending(user, form.next.data if is_local_target(form.next.data) else None)
                return redirect(url_for(flow.next_step(user)))
    return render_template("auth/login.html", form=form, error=error), (200 if error is None else 401)


@bp.route("/login/code", methods=["GET", "POST"])
@flow.pending_login_required
def login_code():
    """The second factor: a TOTP code (accepted once) or one of the user's recovery codes."""
    user = g.pending_user
    if flow.next_step(user) != "auth.login_code":
        return redirect(url_for(flow.next_step(user)))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        error = flow.locked_message(user["username"])
        code, conn = form.code.data, get_db()
        if error is None and totp.is_totp_code(code):
            outcome = totp.accept_totp(conn, user["id"], totp_secret(user), code)
            if outcome == "ok":
                return redirect(flow.complete_login(user, fresh_totp=True, method="totp"))
            error = flow.refuse(user, user["username"], "code" if outcome == "invalid" else "replayed")
        elif error is None:
            if totp.use_recovery_code(conn, user["id"], code):
                left = totp.recovery_codes_left(conn, user["id"])
                audit.record_event("auth.recovery_code_used", "user", str(user["id"]), actor=f"user:{user['username']}",
                                   codes_left=left)
                next_url = flow.complete_login(user, fresh_totp=False, method="recovery_code")
                flash(f"You signed in with a recovery code; {left} left. If your authenticator is lost, "
                      "ask an admin to reset your TOTP.", "warn")
                return redirect(next_url)
            error = flow.refuse(user, user["username"], "recovery")
    return render_template("auth/code.html", form=form, error=error, user=user), (200 if error is None else 401)


@bp.route("/login/enrol", methods=["GET", "POST"])
@flow.pending_login_required
def enrol():
    """First sign-in (or after a TOTP reset): scan the QR code, confirm one code, get recovery codes."""
    user = g.pending_user
    if flow.next_step(user) != "auth.enrol":
        return redirect(url_for(flow.next_step(user)))
    conn = get_db()
    secret = start_enrolment(conn, user)
    form = EnrolForm()
    error = None
    if form.validate_on_submit():
        outcome = totp.accept_totp(conn, user["id"], secret, form.code.data)
        if outcome == "ok":
            codes = complete_enrolment(conn, user["id"])
            audit.record_event("auth.totp_enrolled", "user", str(user["id"]), actor=f"user:{user['username']}")
            next_url = flow.complete_login(get_user(conn, user["id"]), fresh_totp=True, method="totp_enrolment")
            return render_template("auth/recovery_codes.html", codes=codes, next_url=next_url)
        error = flow.refuse(user, user["username"], "code" if outcome == "invalid" else "replayed")
    uri = totp.provisioning_uri(secret, user["username"])
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("auth/enrol.html", form=form, error=error, user=user, qr=totp.qr_svg(uri),
                           secret=grouped), (200 if error is None else 401)


@bp.route("/login/password", methods=["GET", "POST"])
@flow.pending_login_required
def new_password():
    """An invited user replaces the temporary password before anything else."""
    user = g.pending_user
    if flow.next_step(user) != "auth.new_password":
        return redirect(url_for(flow.next_step(user)))
    form = NewPasswordForm()
    error = None
    if form.validate_on_submit():
        error = password_problem(form.password.data, user["username"])
        if error is None and verify_password(user["password_hash"], form.password.data):
            error = "Choose a password different from the temporary one."
        if error is None:
            set_password(get_db(), user["id"], form.password.data)
            audit.record_event("auth.password_set", "user", str(user["id"]), actor=f"user:{user['username']}")
            return redirect(url_for(flow.next_step(get_user(get_db(), user["id"]))))
    return render_template("auth/new_password.html", form=form, error=error, user=user)


@bp.route("/step-up", methods=["GET", "POST"])
@role_required("viewer")
def step_up():
    """Confirm a destructive action with a fresh TOTP code (valid for five minutes)."""
    next_url = request.values.get("next", "")
    if not is_local_target(next_url):
        next_url = url_for("hosts.index")
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        user = get_user(get_db(), g.principal.user_id)
        error = flow.locked_message(user["username"])
        if error is None:
            outcome = totp.accept_totp(get_db(), user["id"], totp_secret(user), form.code.data)
            if outcome == "ok":
                mark_stepped_up()
                audit.record_event("auth.step_up", "user", str(user["id"]))
                return redirect(next_url)
            error = flow.refuse(user, user["username"], "code" if outcome == "invalid" else "replayed")
    return render_template("auth/step_up.html", form=form, error=error, next_url=next_url), \
        (200 if error is None else 401)


@bp.post("/logout")
@role_required("viewer")
def logout():
    form = EmptyForm()
    if form.validate_on_submit():
        audit.record_event("auth.logout", "user", str(g.principal.user_id))
        current_session().destroy()
        flash("You are signed out.", "ok")
    return redirect(url_for("auth.login"))
