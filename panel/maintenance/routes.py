"""Maintenance pages: every host's state, one host's actions (form, confirmation, queue), a job's
output, cancel, safe mode. Schedules have their own module (``schedule_routes``)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from agent.contract import ACTIONS
from panel import audit
from panel.auth.principal import current_principal, has_role, role_required
from panel.auth.stepup import step_up_required, stepped_up_recently
from panel.db import get_db
from panel.maintenance import dispatch, schedules, store, web
from panel.maintenance.dispatch import MaintenanceRefused
from panel.maintenance.formatting import register_filters
from panel.maintenance.forms import (
    ButtonForm,
    JobFilterForm,
    RunForm,
    SafeModeForm,
    needs_post,
    param_inputs,
    params_from_form,
    params_to_query,
)

bp = Blueprint("maintenance", __name__)
register_filters(bp)
HISTORY_PAGE = 50


def _host_or_404(name: str) -> str:
    if name not in web.known_hosts():
        abort(404, f"No host named {name!r} is known to this panel (it has not reported and is not enrolled).")
    return name


def _action_or_404(name: str):
    action = ACTIONS.get(name)
    if action is None:
        abort(404, f"There is no maintenance action {name!r}; known: {', '.join(ACTIONS)}.")
    return action


def _job_or_404(job_id: str) -> dict:
    try:
        uuid.UUID(job_id)
    except ValueError:
        abort(404, f"{job_id!r} is not a maintenance job id.")
    job = store.get_job(get_db(), job_id)
    if job is None:
        abort(404, f"No maintenance job {job_id}.")
    return job


def _step_up_gate():
    """None when a fresh code was given; otherwise the answer ``step_up_required`` gives."""
    return step_up_required(lambda: None)()


@bp.get("/maintenance")
@role_required("viewer")
def index():
    conn = get_db()
    hosts = [web.host_state(h) for h in web.known_hosts()]
    active = {h: 0 for h in web.known_hosts()}
    for job in store.active_jobs(conn):
        active[job["host"]] = active.get(job["host"], 0) + 1
    return render_template("maintenance/index.html", hosts=hosts, active=active,
                           jobs=store.list_jobs(conn, limit=25), button=ButtonForm())


@bp.get("/hosts/<name>/maintenance")
@role_required("viewer")
def host_page(name: str):
    host = _host_or_404(name)
    conn = get_db()
    filters = JobFilterForm(formdata=request.args)
    filters.validate()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    history = store.list_jobs(conn, host=host, action=filters.action.data or None,
                              statuses=[filters.status.data] if filters.status.data else None,
                              limit=HISTORY_PAGE + 1, offset=(page - 1) * HISTORY_PAGE)
    principal = current_principal()
    prefill = _prefill(request.args)
    cards = [{"action": a, "inputs": param_inputs(a, prefill.get(a.name)), "post": needs_post(a),
              "allowed": has_role(principal, "operator"),
              "destructive_allowed": has_role(principal, "admin")} for a in ACTIONS.values()]
    args = {k: v for k, v in request.args.items() if k in ("action", "status") and v}
    state = web.host_state(host)
    return render_template(
        "maintenance/host.html", host=host, state=state, cards=cards,
        current=store.active_jobs_of(conn, host), history=history[:HISTORY_PAGE],
        has_next=len(history) > HISTORY_PAGE, page=page, args=args, filters=filters,
        schedules=schedules.list_schedules(conn, host), button=ButtonForm(),
        safe_form=SafeModeForm(formdata=None, state="off" if state["safe_mode"]["on"] else "on"),
        stepped_up=stepped_up_recently())


def _prefill(args) -> dict[str, dict]:
    """``?prefill=ACTION&param=...``: the confirmation's "change parameters" link fills that card again."""
    action = ACTIONS.get(args.get("prefill", ""))
    if action is None:
        return {}
    try:
        return {action.name: dispatch.checked_params(action.name, params_from_form(action, args))}
    except MaintenanceRefused:
        return {}


@bp.route("/hosts/<name>/maintenance/<action_name>/confirm", methods=["GET", "POST"])
@role_required("operator")
def confirm(name: str, action_name: str):
    """The confirmation step: exactly what will happen, and the button that queues it."""
    action = _action_or_404(action_name)
    host = _host_or_404(name)
    source = request.form if request.method == "POST" else request.args
    try:
        params = dispatch.checked_params(action.name, params_from_form(action, source))
    except MaintenanceRefused as exc:
        flash(f"{action.title}: {exc.message}", "crit")
        return redirect(url_for("maintenance.host_page", name=host) + f"#action-{action.name}")
    shown = web.confirmation(host, action.name, params)
    if not has_role(current_principal(), shown["role"]):
        abort(403, description=f"{action.title} with these parameters is destructive: it needs the admin role; "
                               f"you are {current_principal().role}.")
    if shown["destructive"]:
        gate = _step_up_gate()
        if gate is not None:
            return gate
    form = RunForm(formdata=None, params=json.dumps(params, sort_keys=True))
    back = url_for("maintenance.host_page", name=host) + f"#action-{action.name}"
    edit_url = None
    if not needs_post(action):
        query = urlencode([("prefill", action.name), *params_to_query(params)])
        edit_url = f"{url_for('maintenance.host_page', name=host)}?{query}#action-{action.name}"
    return render_template("maintenance/confirm.html", host=host, c=shown, form=form, back=back,
                           edit_url=edit_url)


@bp.post("/hosts/<name>/maintenance/<action_name>/run")
@role_required("operator")
def run(name: str, action_name: str):
    action = _action_or_404(action_name)
    host = _host_or_404(name)
    form = RunForm()
    page = url_for("maintenance.host_page", name=host)
    if not form.validate_on_submit():
        abort(400, description="The confirmation form expired or was damaged: start again from the maintenance page.")
    try:
        job = web.request_job(host, action.name, form.parsed())
    except web.StepUpNeeded:
        return _step_up_gate()
    except MaintenanceRefused as exc:
        if exc.status == 404:
            abort(404, description=exc.message)
        flash(f"{action.title} was not queued: {exc.message}", "crit")
        return redirect(page)
    flash(f"{action.title} queued on {host} as job {str(job['id'])[:8]}: follow it below.", "ok")
    return redirect(page + "#current-jobs")


@bp.get("/maintenance/jobs/<job_id>")
@role_required("viewer")
def job_page(job_id: str):
    from agent.contract import explain

    job = _job_or_404(job_id)
    action = ACTIONS.get(job["action"])
    text = explain(job["action"], job["params"]) if action else None
    schedule = schedules.get_schedule(get_db(), job["schedule_id"]) if job["schedule_id"] else None
    return render_template("maintenance/job.html", job=job, public=store.public_job(job), action=action,
                           explain=text, schedule=schedule, button=ButtonForm(),
                           host_known=job["host"] in web.known_hosts())


@bp.post("/maintenance/jobs/<job_id>/cancel")
@role_required("operator")
def cancel(job_id: str):
    job = _job_or_404(job_id)
    if not ButtonForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        dispatch.cancel_job(get_db(), web.redis_client(), str(job["id"]), actor=web.actor())
        flash(f"Job {str(job['id'])[:8]} ({job['action']}) cancelled: it will not run.", "ok")
    except MaintenanceRefused as exc:
        flash(f"Not cancelled: {exc.message}", "warn")
    target = request.form.get("back") or ""
    if target == "job":
        return redirect(url_for("maintenance.job_page", job_id=job["id"]))
    return redirect(url_for("maintenance.host_page", name=job["host"]) + "#current-jobs")


@bp.post("/hosts/<name>/maintenance/safe-mode")
@role_required("admin")
def safe_mode(name: str):
    host = _host_or_404(name)
    form = SafeModeForm()
    page = url_for("maintenance.host_page", name=host) + "#safe-mode"
    if not form.validate_on_submit() or form.state.data not in ("on", "off"):
        errors = "; ".join(e for errs in form.errors.values() for e in errs) or "say whether to switch it on or off"
        flash(f"Safe mode not changed: {errors}", "crit")
        return redirect(page)
    conn = get_db()
    on = form.state.data == "on"
    before = store.host_settings(conn, host)
    cancelled = []
    with conn.transaction():
        after = store.set_safe_mode(conn, host, on, by=web.actor(), reason=form.reason.data.strip())
        audit.record_event("maintenance.safe_mode", "host", host,
                           before={"safe_mode": before["safe_mode"], "reason": before["safe_mode_reason"]},
                           after={"safe_mode": after["safe_mode"], "reason": after["safe_mode_reason"]})
    if on:
        cancelled = _cancel_destructive_queued(host)
    word = "on: destructive actions are refused" if on else "off: destructive actions are allowed again"
    extra = f" {len(cancelled)} queued destructive job(s) cancelled." if cancelled else ""
    flash(f"Safe mode for {host} is {word}.{extra}", "warn" if on else "ok")
    return redirect(page)


def _cancel_destructive_queued(host: str) -> list[str]:
    """Switching safe mode on also takes queued destructive jobs off the queue (their envelopes
    were signed with safe mode off)."""
    conn = get_db()
    done = []
    for job in store.active_jobs_of(conn, host):
        action = ACTIONS.get(job["action"])
        if job["status"] != "queued" or action is None or not action.is_destructive(job["params"]):
            continue
        try:
            dispatch.cancel_job(conn, web.redis_client(), str(job["id"]), actor=f"{web.actor()} (safe mode)")
            done.append(str(job["id"]))
        except MaintenanceRefused:
            continue
    return done
