"""The engine's maintenance task (every 2 s): follow RQ jobs into the table, expire jobs nobody
will take, run due schedules, provision schedules from the configuration file.

``tick(ctx)`` is the task; each step is a function of its own so tests drive them one by one.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from agent.contract import ACTIONS
from panel import audit
from panel.maintenance import dispatch, keys, schedules, store
from panel.maintenance.hooks import on_job_finished, on_job_started
from panel.maintenance.settings import Settings

log = logging.getLogger(__name__)

TICK_SECONDS = 2.0
WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED, JobStatus.RATE_LIMITED,
           JobStatus.READY_TO_ENQUEUE}


def tick(ctx) -> None:
    """The periodic task ``poolwarden-panel engine`` runs (``ctx``: panel.engine.tasks.TaskContext)."""
    settings = Settings.from_config(ctx.config)
    conn, rds = ctx.conn, ctx.redis
    if settings.config_path:
        provision_schedules(conn, settings.config_path)
    sync_jobs(conn, rds, settings)
    run_due_schedules(conn, rds, settings)


# -- provisioning -------------------------------------------------------------------------------------------


def provision_schedules(conn: psycopg.Connection, path: str) -> None:
    """Apply the schedules file when it changed; a bad file is logged once and shown on the page."""
    try:
        report = schedules.provision(conn, path)
    except schedules.ScheduleError as exc:
        log.error("maintenance schedules not provisioned, the previous ones stay: %s", exc)
        return
    if report is not None:
        log.info("maintenance schedules provisioned from %s: %s", path, report.line())


# -- job states ---------------------------------------------------------------------------------------------


def _utc(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _ago(ts: datetime | None, now: datetime) -> str:
    if ts is None:
        return "never seen"
    seconds = int((now - ts).total_seconds())
    if seconds < 120:
        return f"last seen {seconds} s ago"
    if seconds < 7200:
        return f"last seen {seconds // 60} min ago"
    return f"last seen {seconds // 3600} h ago"


def refresh_worker_presence(conn: psycopg.Connection, rds: redis.Redis, hosts: set[str]
                            ) -> dict[str, dispatch.WorkerPresence]:
    presence = {}
    for host in sorted(hosts):
        presence[host] = found = dispatch.worker_presence(rds, host)
        if found.online:
            store.worker_seen(conn, host, found.last_heartbeat or datetime.now(UTC))
    return presence


def sync_jobs(conn: psycopg.Connection, rds: redis.Redis, settings: Settings, now: datetime | None = None) -> None:
    """Bring every queued or running job's row up to date with its RQ job."""
    rows = store.active_jobs(conn)
    presence = refresh_worker_presence(conn, rds, keys.enrolled_hosts(conn) | {r["host"] for r in rows})
    if not rows:
        return
    jobs = Job.fetch_many([r["rq_job_id"] for r in rows], connection=rds, serializer=JSONSerializer)
    for row, job in zip(rows, jobs, strict=True):
        current = now or datetime.now(UTC)
        try:
            follow(conn, rds, row, job, presence[row["host"]], settings, current)
        except (redis.RedisError, psycopg.OperationalError):
            raise
        except Exception:  # noqa: BLE001 - one odd job must not stop the others being followed
            log.exception("maintenance job %s: could not follow its state", row["id"])


def follow(conn: psycopg.Connection, rds: redis.Redis, row: dict[str, Any], job: Job | None,
           presence: dispatch.WorkerPresence, settings: Settings, now: datetime) -> None:
    host = row["host"]
    if job is None:
        if row["status"] == "queued":
            dispatch.queue_for(rds, host).remove(row["rq_job_id"])  # the dangling id a worker would skip
            _finish(conn, row, "expired", error=f"the job waited in the queue longer than its time to live "
                                                f"({settings.queue_ttl_seconds} s) and was dropped by Redis")
        else:
            _finish(conn, row, "failed", error="the job's record is gone from Redis (Redis restarted without its "
                                               "data, or the record expired): its outcome is unknown")
        return
    status = job.get_status(refresh=False)
    meta = job.meta or {}
    progress = [str(line) for line in meta.get("progress") or []]
    if status in WAITING:
        if presence.online:
            return
        last_seen = store.host_settings(conn, host)["worker_last_seen_at"]
        waiting_since = max(row["requested_at"], last_seen) if last_seen else row["requested_at"]
        if now - waiting_since < timedelta(seconds=settings.worker_grace_seconds):
            return
        if not dispatch.take_off_queue(rds, host, row["rq_job_id"]):
            return  # a worker took it just now: the next turn sees it running
        _finish(conn, row, "expired", error=(
            f"no maintenance worker is running on {host} ({_ago(last_seen, now)}): nothing took the job for "
            f"{settings.worker_grace_seconds} s, so it was taken off the queue. Start 'poolwarden-agent work' on "
            f"{host}, then run the action again."))
        return
    if status == JobStatus.STARTED:
        started = _utc(meta.get("started_at")) or _utc(job.started_at) or now
        if row["status"] == "queued":
            updated = store.update_job(conn, row["id"], only_if=("queued",), status="running", started_at=started,
                                       progress=progress)
            if updated is not None:
                on_job_started(conn, updated)
            return
        if progress != list(row["progress"] or []):
            store.update_job(conn, row["id"], only_if=("running",), progress=progress)
        if job.worker_name and job.worker_name not in presence.names:
            last_seen = store.host_settings(conn, host)["worker_last_seen_at"]
            reference = max(t for t in (last_seen, row["started_at"], row["requested_at"]) if t is not None)
            if now - reference > timedelta(seconds=settings.worker_grace_seconds):
                _finish(conn, row, "failed", progress=progress, error=(
                    f"the maintenance worker on {host} stopped while the job ran (killed, crashed or restarted; "
                    f"{_ago(last_seen, now)}): check what the action left behind before running it again"))
        return
    if status == JobStatus.FINISHED:
        _finish_with_result(conn, row, job, progress, now)
        return
    if status == JobStatus.FAILED:
        result = job.latest_result()
        text = (result.exc_string if result is not None else None) or ""
        action = ACTIONS.get(row["action"])
        if "JobTimeoutException" in text and action is not None:
            error = f"the action ran longer than its time limit ({action.timeout_seconds} s) and was stopped"
        else:
            lines = [line for line in text.strip().splitlines() if line.strip()]
            error = f"the worker failed: {lines[-1].strip()}" if lines else "the worker failed without a message"
        _finish(conn, row, "failed", error=error, progress=progress, started=_utc(job.started_at),
                finished=_utc(job.ended_at), result={"exc": text[-4000:]} if text else None)
        return
    if status in (JobStatus.CANCELED, JobStatus.STOPPED):
        _finish(conn, row, "cancelled", progress=progress, error=f"the job was {status.value} outside the panel")


def _finish_with_result(conn: psycopg.Connection, row: dict[str, Any], job: Job, progress: list[str],
                        now: datetime) -> None:
    value = job.return_value()
    started = _utc((job.meta or {}).get("started_at")) or _utc(job.started_at)
    finished = _utc(job.ended_at) or now
    if not isinstance(value, dict):
        _finish(conn, row, "failed", progress=progress, started=started, finished=finished,
                error=f"the worker returned something that is not a job result: {str(value)[:200]!r}")
        return
    lines = [str(line) for line in value.get("progress") or []] or progress
    if value.get("refused"):
        status = "refused"
    elif value.get("ok") is True:
        status = "succeeded"
    else:
        status = "failed"
    error = value.get("error")
    if status != "succeeded" and not error:
        error = str(value.get("summary") or "the action reported a failure")
    _finish(conn, row, status, summary=_text(value.get("summary")), error=_text(error), progress=lines,
            started=started, finished=finished, result=value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _finish(conn: psycopg.Connection, row: dict[str, Any], status: str, *, error: str | None = None,
            summary: str | None = None, progress: list[str] | None = None, started: datetime | None = None,
            finished: datetime | None = None, result: Any = None) -> None:
    """Move a job to its final state; the started hook first if the job ran unseen between two turns."""
    finished = finished or datetime.now(UTC)
    if status in ("succeeded", "failed", "refused") and row["status"] == "queued" and started is not None:
        running = store.update_job(conn, row["id"], only_if=("queued",), status="running", started_at=started)
        if running is None:
            return
        on_job_started(conn, running)
        row = running
    fields: dict[str, Any] = {"status": status, "finished_at": finished, "error": error}
    if summary is not None:
        fields["summary"] = summary
    if progress is not None:
        fields["progress"] = progress
    if result is not None:
        fields["result"] = result
    if started is not None and row["started_at"] is None:
        fields["started_at"] = started
    updated = store.update_job(conn, row["id"], only_if=(row["status"],), **fields)
    if updated is not None:
        on_job_finished(conn, updated)


# -- schedules ----------------------------------------------------------------------------------------------


def run_due_schedules(conn: psycopg.Connection, rds: redis.Redis, settings: Settings,
                      now: datetime | None = None) -> list[dict[str, Any]]:
    """Queue each enabled schedule whose time has come; returns the jobs made (refused ones included).

    A schedule whose previous job is still queued or running is skipped this time (audited): a
    schedule never piles jobs up behind a slow or absent worker."""
    now = now or datetime.now(UTC)
    made = []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        due = cur.execute(
            f"SELECT {schedules.COLUMNS} FROM maintenance_schedules WHERE enabled AND next_run_at <= %s"
            " ORDER BY next_run_at FOR UPDATE SKIP LOCKED", (now,)).fetchall()
        for row in due:
            job = _run_schedule(conn, rds, settings, row, now)
            if job is not None:
                made.append(job)
    return made


def _run_schedule(conn: psycopg.Connection, rds: redis.Redis, settings: Settings, row: dict[str, Any],
                  now: datetime) -> dict[str, Any] | None:
    actor = f"schedule:{row['name']}"
    try:
        cadence = schedules.Cadence.parse(row["cadence"])
    except ValueError as exc:
        log.error("schedule %s has a bad cadence (%s): disabled", row["name"], exc)
        conn.execute("UPDATE maintenance_schedules SET enabled = false WHERE id = %s", (row["id"],))
        return None
    next_run = cadence.next_run(now, row["next_run_at"])
    busy = conn.execute("SELECT id, status FROM maintenance_jobs WHERE schedule_id = %s AND status IN"
                        " ('queued', 'running') LIMIT 1", (row["id"],)).fetchone()
    if busy is not None:
        busy_id, busy_status = (busy["id"], busy["status"]) if isinstance(busy, dict) else busy
        conn.execute("UPDATE maintenance_schedules SET next_run_at = %s WHERE id = %s", (next_run, row["id"]))
        audit.record_event("maintenance.schedule_skip", "maintenance_schedule", str(row["id"]), actor=actor,
                           conn=conn, reason=f"the previous run (job {busy_id}) is still {busy_status}",
                           next_run_at=store.iso(next_run))
        log.warning("schedule %s skipped: its previous job %s is still %s", row["name"], busy_id, busy_status)
        return None
    try:
        params = dispatch.checked_params(row["action"], row["params"])
        with conn.transaction():
            job = dispatch.enqueue_job(conn, rds, host=row["host"], action_name=row["action"], params=params,
                                       requested_by=actor, settings=settings, schedule_id=row["id"])
    except dispatch.MaintenanceRefused as exc:
        if exc.status == 503:
            raise redis.ConnectionError(exc.message) from None
        job = _refused(conn, row, actor, exc.message)
    except Exception as exc:  # noqa: BLE001 - recorded on the schedule's history, the others still run
        if isinstance(exc, redis.RedisError | psycopg.OperationalError):
            raise
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        job = _refused(conn, row, actor, f"the panel could not queue the job: {last}")
    conn.execute("UPDATE maintenance_schedules SET last_run_at = %s, last_job_id = %s, next_run_at = %s"
                 " WHERE id = %s", (now, job["id"], next_run, row["id"]))
    return job


def _refused(conn: psycopg.Connection, row: dict[str, Any], actor: str, reason: str) -> dict[str, Any]:
    """A scheduled run the panel refused (no key, safe mode, parameters no longer valid): a job row
    that says so, so the schedule's history shows the missed run."""
    import uuid

    params = row["params"] if isinstance(row["params"], dict) else {}
    job = store.insert_job(conn, job_id=str(uuid.uuid4()), host=row["host"], action=row["action"], params=params,
                           requested_by=actor, rq_job_id=None, schedule_id=row["id"], status="refused",
                           error=f"refused by the panel: {reason}")
    dispatch.refuse_quietly(conn, host=row["host"], action_name=row["action"], params=params, requested_by=actor,
                            reason=reason)
    on_job_finished(conn, job)
    return job
