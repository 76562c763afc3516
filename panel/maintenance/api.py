"""The maintenance API under ``/api/admin/maintenance``: run an action, follow and cancel jobs,
read their output, list and create schedules. Token or session authentication, the same roles as
the pages; a destructive action needs a fresh TOTP code in the session, so an API token alone
cannot run one (the step-up convention of every /api route)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, jsonify, request

from agent.contract import ACTIONS, HOST_NAME_RULE, valid_host_name
from panel.auth.principal import role_required
from panel.auth.stepup import step_up_required, stepped_up_recently
from panel.db import get_db
from panel.maintenance import dispatch, schedules, store, web
from panel.maintenance.dispatch import MaintenanceRefused

bp = Blueprint("maintenance_api", __name__, url_prefix="/api/admin/maintenance")
MAX_LIMIT = 500
RECENT_SECONDS = 600


@bp.errorhandler(MaintenanceRefused)
def _refused(exc: MaintenanceRefused):
    body: dict[str, Any] = {"error": exc.message}
    if exc.field:
        body["field"] = exc.field
    return jsonify(body), exc.status


@bp.errorhandler(schedules.ScheduleError)
def _bad_schedule(exc: schedules.ScheduleError):
    return jsonify(error=str(exc), field=exc.field), 400


def _step_up_answer():
    return step_up_required(lambda: None)()


def _limit(default: int) -> int:
    raw = request.args.get("limit", "")
    if raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise MaintenanceRefused(400, f"limit: must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}", "limit")
    return int(raw)


def _statuses() -> list[str] | None:
    raw = request.args.get("status", "").strip()
    if not raw:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in wanted if s not in store.STATUSES]
    if bad or not wanted:
        raise MaintenanceRefused(400, f"status: unknown {bad[0] if bad else raw!r}; choose from "
                                      f"{', '.join(store.STATUSES)} (several with commas)", "status")
    return wanted


def _action_filter() -> str | None:
    name = request.args.get("action", "").strip()
    if name and name not in ACTIONS:
        raise MaintenanceRefused(400, f"action: unknown {name!r}; known: {', '.join(ACTIONS)}", "action")
    return name or None


def _host_filter() -> str | None:
    name = request.args.get("host", "").strip()
    if name and not valid_host_name(name):
        raise MaintenanceRefused(400, f"host: {name!r} is not a host name ({HOST_NAME_RULE})", "host")
    return name or None


def _chosen_host(body: dict[str, Any]) -> str:
    """``?host=NAME`` or ``"host"`` in the body; without either, the only host maintenance knows."""
    name = request.args.get("host", "").strip() or body.pop("host", None)
    known = web.known_hosts()
    if name:
        if not isinstance(name, str) or name not in known:
            raise MaintenanceRefused(404, f"unknown host {name!r}", "host")
        return name
    if not known:
        raise MaintenanceRefused(404, "no host is known yet: none has reported or been enrolled", "host")
    if len(known) > 1:
        raise MaintenanceRefused(400, f"several hosts: choose one with ?host=NAME ({', '.join(known)})", "host")
    return known[0]


def _job_or_404(job_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise MaintenanceRefused(404, f"{job_id!r} is not a maintenance job id") from None
    job = store.get_job(get_db(), job_id)
    if job is None:
        raise MaintenanceRefused(404, f"no maintenance job {job_id}")
    return job


@bp.get("/actions")
@role_required("viewer")
def actions():
    """The catalogue: each action, its parameters, whether it is destructive and the role it needs."""
    return jsonify(actions=[{**a.describe(), "minimum_role": a.minimum_role({})} for a in ACTIONS.values()])


@bp.get("/hosts/<name>")
@role_required("viewer")
def host(name: str):
    """One host's maintenance state and its current jobs (queued, running, finished in the last 10 min)."""
    if name not in web.known_hosts():
        raise MaintenanceRefused(404, f"unknown host {name!r}")
    conn = get_db()
    jobs = store.active_jobs_of(conn, name) + store.recently_finished(conn, name, RECENT_SECONDS)
    return jsonify(**web.host_state(name), jobs=[store.public_job(j) for j in jobs])


@bp.get("/jobs")
@role_required("viewer")
def jobs():
    rows = store.list_jobs(get_db(), host=_host_filter(), action=_action_filter(), statuses=_statuses(),
                           limit=_limit(50))
    return jsonify(jobs=[store.public_job(j, with_output=False) for j in rows])


@bp.get("/jobs/<job_id>")
@role_required("viewer")
def job(job_id: str):
    return jsonify(store.public_job(_job_or_404(job_id)))


@bp.post("/jobs/<job_id>/cancel")
@role_required("operator")
def cancel(job_id: str):
    found = _job_or_404(job_id)
    row = dispatch.cancel_job(get_db(), web.redis_client(), str(found["id"]), actor=web.actor())
    return jsonify(store.public_job(row))


@bp.get("/logs")
@role_required("viewer")
def logs():
    """The job output log: the progress lines of recent jobs, newest job first."""
    rows = store.list_jobs(get_db(), host=_host_filter(), action=_action_filter(), statuses=_statuses(),
                           limit=_limit(20))
    entries = []
    for job in rows:
        public = store.public_job(job)
        entries.append({k: public[k] for k in ("id", "host", "action", "status", "requested_by", "requested_at",
                                               "started_at", "finished_at", "summary", "error", "progress")})
    return jsonify(entries=entries)


@bp.get("/schedules")
@role_required("viewer")
def schedule_list():
    conn = get_db()
    state = schedules.provisioning_state(conn)
    return jsonify(schedules=[schedules.public_schedule(r) for r in schedules.list_schedules(conn, _host_filter())],
                   provisioning=None if state is None else {
                       "path": state["path"], "applied_at": store.iso(state["applied_at"]), "error": state["error"]})


@bp.post("/schedules")
@role_required("admin")
def schedule_create():
    body = request.get_json(silent=True)
    spec = schedules.check_spec(body)
    if spec.host not in web.known_hosts():
        raise MaintenanceRefused(400, f"host: unknown host {spec.host!r}", "host")
    if ACTIONS[spec.action].is_destructive(spec.params) and not stepped_up_recently():
        return _step_up_answer()
    row = schedules.save_schedule(get_db(), spec, by=web.actor())
    return jsonify(schedules.public_schedule(row)), 201


@bp.post("/<action_name>")
@role_required("operator")
def run(action_name: str):
    """Queue ``action_name``; the JSON body holds its parameters (and optionally "host")."""
    if action_name not in ACTIONS:
        raise MaintenanceRefused(404, f"unknown action {action_name!r}; known: {', '.join(ACTIONS)}", "action")
    if request.content_length and not request.is_json:
        raise MaintenanceRefused(400, "params: send the parameters as a JSON object (Content-Type: "
                                      "application/json)", "params")
    body = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise MaintenanceRefused(400, "params: the body must be a JSON object of parameters", "params")
    body = dict(body)
    host = _chosen_host(body)
    try:
        row = web.request_job(host, action_name, body)
    except web.StepUpNeeded:
        return _step_up_answer()
    return jsonify(store.public_job(row)), 202
