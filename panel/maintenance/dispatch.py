"""Putting maintenance jobs on a host's RQ queue, taking them off again, and seeing its workers.

A job is a call of ``agent.worker.run_job(envelope, signature)`` (by name: the panel never imports
the worker) on ``maint:<host>`` with RQ's JSON serializer. The envelope is the contract's
``make_envelope`` and the signature its HMAC with the host's job key; the agent checks both.
The job row and its audit record are written in the same transaction as the enqueue, so a job is
either queued and recorded, or neither.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from agent.contract import (
    ACTIONS,
    MAINT_JOB_FUNCTION,
    ParamError,
    maint_job_id,
    maint_queue,
    make_envelope,
    sign_envelope,
    validate_params,
)
from panel import audit
from panel.maintenance import keys, store
from panel.maintenance.settings import RESULT_TTL_SECONDS, Settings

QUEUE_TIMEOUT_MARGIN_SECONDS = 60


class MaintenanceRefused(Exception):
    """The panel will not queue (or cancel) this job. ``status`` is the HTTP answer: 400 bad
    parameter (``field`` names it), 403 safe mode or role, 404 unknown, 409 no key or wrong state,
    503 Redis unreachable."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def queue_for(rds: redis.Redis, host: str) -> Queue:
    return Queue(maint_queue(host), connection=rds, serializer=JSONSerializer)


def checked_params(action_name: str, params: Any) -> dict[str, Any]:
    """Validated parameters with defaults; MaintenanceRefused(400 or 404) naming the bad field."""
    if action_name not in ACTIONS:
        raise MaintenanceRefused(404, f"unknown action {action_name!r}; known: {', '.join(ACTIONS)}", "action")
    try:
        return validate_params(action_name, params)
    except ParamError as exc:
        raise MaintenanceRefused(400, str(exc), exc.field) from None


def safe_mode_message(host: str, settings_row: dict[str, Any]) -> str:
    who = settings_row.get("safe_mode_by") or "someone"
    why = settings_row.get("safe_mode_reason") or "no reason given"
    return f"safe mode is on for {host} (switched on by {who}: {why}): destructive actions are refused"


def enqueue_job(conn: psycopg.Connection, rds: redis.Redis, *, host: str, action_name: str, params: dict[str, Any],
                requested_by: str, settings: Settings, schedule_id: int | None = None) -> dict[str, Any]:
    """Queue a catalogue action on ``host`` (parameters already validated); returns the job row.

    Refuses (MaintenanceRefused) a host without a job key (409) and a destructive action while the
    host is in safe mode (403). The refusal is the caller's to audit; the queued job is audited here.
    """
    action = ACTIONS[action_name]
    key = keys.load_key(conn, host)
    if key is None:
        raise MaintenanceRefused(409, keys.enrol_hint(host))
    host_settings = store.host_settings(conn, host)
    destructive = action.is_destructive(params)
    if destructive and host_settings["safe_mode"]:
        raise MaintenanceRefused(403, safe_mode_message(host, host_settings))
    job_uuid = str(uuid.uuid4())
    envelope = make_envelope(job_uuid=job_uuid, host=host, action=action_name, params=params,
                             requested_by=requested_by, safe_mode=bool(host_settings["safe_mode"]),
                             ttl_seconds=settings.queue_ttl_seconds)
    signature = sign_envelope(key, envelope)
    rq_id = maint_job_id(job_uuid)
    with conn.transaction():
        row = store.insert_job(conn, job_id=job_uuid, host=host, action=action_name, params=params,
                               requested_by=requested_by, rq_job_id=rq_id, schedule_id=schedule_id)
        audit.record_event("maintenance.queue", "maintenance_job", job_uuid, actor=requested_by, conn=conn,
                           host=host, job_action=action_name, params=store.redacted_params(params),
                           destructive=destructive, schedule_id=schedule_id)
        try:
            queue_for(rds, host).enqueue(
                MAINT_JOB_FUNCTION, envelope, signature, job_id=rq_id,
                job_timeout=action.timeout_seconds + QUEUE_TIMEOUT_MARGIN_SECONDS,
                result_ttl=RESULT_TTL_SECONDS, failure_ttl=RESULT_TTL_SECONDS, ttl=settings.queue_ttl_seconds,
                description=f"{action_name} on {host} for {requested_by}")
        except redis.RedisError as exc:
            raise MaintenanceRefused(503, f"Redis cannot be reached, the job was not queued: {exc}") from None
    return row


def refuse_quietly(conn: psycopg.Connection, *, host: str, action_name: str, params: Any, requested_by: str,
                   reason: str) -> None:
    """Audit a request the panel refused (no job row: nothing was queued)."""
    shown = store.redacted_params(params) if isinstance(params, dict) else params
    audit.record_event("maintenance.refuse", "host", host, actor=requested_by, conn=conn, job_action=action_name,
                       params=shown, reason=reason)


# -- taking a job off the queue -------------------------------------------------------------------------


def take_off_queue(rds: redis.Redis, host: str, rq_job_id: str) -> bool:
    """Remove a job no worker took yet; False when a worker has it already (or it is gone)."""
    removed = queue_for(rds, host).remove(rq_job_id)
    if not removed:
        return False
    try:
        Job.fetch(rq_job_id, connection=rds, serializer=JSONSerializer).delete()
    except NoSuchJobError:
        pass
    return True


def cancel_job(conn: psycopg.Connection, rds: redis.Redis, job_id: str, *, actor: str) -> dict[str, Any]:
    """Cancel a queued job (audited); MaintenanceRefused(409) once a worker has started it."""
    job = store.get_job(conn, job_id)
    if job is None:
        raise MaintenanceRefused(404, f"no maintenance job {job_id}")
    if job["status"] != "queued":
        raise MaintenanceRefused(409, f"the job is {job['status']}: only a queued job can be cancelled")
    try:
        removed = take_off_queue(rds, job["host"], job["rq_job_id"])
    except (redis.RedisError, InvalidJobOperation) as exc:
        raise MaintenanceRefused(503, f"Redis cannot be reached, the job was not cancelled: {exc}") from None
    if not removed:
        raise MaintenanceRefused(409, "the host's worker has just taken the job: it is running and cannot be "
                                      "cancelled any more")
    with conn.transaction():
        row = store.update_job(conn, job_id, only_if=("queued",), status="cancelled", finished_at=_now(conn),
                               error=f"cancelled by {actor} before a worker took it")
        if row is None:
            raise MaintenanceRefused(409, "the job is no longer queued")
        audit.record_event("maintenance.cancel", "maintenance_job", job_id, actor=actor, conn=conn,
                           host=job["host"], job_action=job["action"])
    from panel.maintenance.hooks import on_job_finished

    on_job_finished(conn, row)
    return row


def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    return row["now"] if isinstance(row, dict) else row[0]


# -- workers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPresence:
    host: str
    online: bool
    workers: int
    busy: int
    last_heartbeat: datetime | None
    names: frozenset[str]

    def public(self, last_seen: datetime | None) -> dict[str, Any]:
        seen = self.last_heartbeat or last_seen
        return {"online": self.online, "workers": self.workers, "busy": self.busy,
                "last_seen": store.iso(seen)}


def worker_presence(rds: redis.Redis, host: str) -> WorkerPresence:
    """The live RQ workers of ``maint:<host>`` (RQ drops a worker that stops sending heartbeats)."""
    workers = Worker.all(queue=queue_for(rds, host))
    beats = [w.last_heartbeat for w in workers if w.last_heartbeat]
    busy = sum(1 for w in workers if w.get_state() == "busy")
    return WorkerPresence(host, bool(workers), len(workers), busy, max(beats) if beats else None,
                          frozenset(w.name for w in workers))
