"""Delivery: RQ jobs on the ``notify`` queue, one per notification, with retries and backoff.

The job is ``panel.notify.deliver(notification_id)`` (JSON serializer, job id ``notify-<id>``).
It locks the notification row while it sends, so a duplicated job waits and then finds it sent;
a notification already sent or given up is never sent again (its idempotency key). Every attempt
writes a ``deliveries`` row (status, response code, error, duration). A retryable failure raises,
and RQ schedules the next attempt after the next interval of ``retry_intervals()``
(exponential: 10 s, 30 s, 90 s, 270 s, 810 s by default); a permanent one (a 4xx other than 429,
a refused recipient) is not retried. The worker runs only this function (``NotifyJob``).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from panel import db, secretbox
from panel.notify.channels import DeliveryError, Message
from panel.notify.store import get_integration, rows, scalar

log = logging.getLogger(__name__)

QUEUE_NAME = "notify"
DELIVER_FUNCTION = "panel.notify.deliver"
DEFAULT_RETRY_INTERVALS = (10, 30, 90, 270, 810)
RETRY_ENV = "POOLWARDEN_NOTIFY_RETRY_INTERVALS"
JOB_TIMEOUT_SECONDS = 180
RESULT_TTL_SECONDS = 24 * 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600
LOST_AFTER = timedelta(minutes=2)

_settings: dict[str, Any] = {}


class DeliveryFailed(Exception):
    """Raised by the job so that RQ retries it (or records it failed after the last attempt)."""


class RefusedJob(Exception):
    """A job on the notify queue that is not a delivery: never run."""


def configure(*, database_url: str | None = None, retry_intervals: tuple[int, ...] | None = None) -> None:
    """Settings of this process's deliveries (the notify-worker command and tests call it)."""
    if database_url is not None:
        _settings["database_url"] = database_url
    if retry_intervals is not None:
        _settings["retry_intervals"] = tuple(retry_intervals)


def parse_intervals(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{RETRY_ENV} must be whole seconds separated by commas, e.g. 10,30,90, not {raw!r}") \
            from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{RETRY_ENV} must list at least one interval of 0 seconds or more")
    return values


def retry_intervals() -> tuple[int, ...]:
    if "retry_intervals" in _settings:
        return _settings["retry_intervals"]
    raw = os.environ.get(RETRY_ENV, "").strip()
    return parse_intervals(raw) if raw else DEFAULT_RETRY_INTERVALS


def _database_url() -> str:
    url = _settings.get("database_url") or os.environ.get("POOLWARDEN_DATABASE_URL")
    if not url:
        raise RuntimeError("the notify worker has no database: set POOLWARDEN_DATABASE_URL")
    return url


# -- the queue ---------------------------------------------------------------------------------------

def make_job_class():
    from rq.job import Job

    from panel import notify

    class NotifyJob(Job):
        """A job that can only ever call ``panel.notify.deliver(notification_id)``."""

        @property
        def func(self):
            if self.func_name != DELIVER_FUNCTION:
                raise RefusedJob(f"refused: {self.func_name!r} is not the delivery function")
            if self.instance is not None or self.kwargs or len(self.args) != 1 or not isinstance(self.args[0], int):
                raise RefusedJob("refused: a delivery job takes exactly one notification id")
            return notify.deliver

        @property
        def success_callback(self):
            return None

        @property
        def failure_callback(self):
            return None

        @property
        def stopped_callback(self):
            return None

    return NotifyJob


def queue(connection):
    from rq import Queue
    from rq.serializers import JSONSerializer

    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer, job_class=make_job_class())


def job_id(notification_id: int) -> str:
    return f"notify-{notification_id}"


def enqueue(connection, notification_ids: list[int], intervals: tuple[int, ...] | None = None) -> None:
    """Queue one delivery job per notification (in one round trip), retried after ``intervals``."""
    from rq import Queue, Retry

    if not notification_ids:
        return
    intervals = list(intervals or retry_intervals())
    q = queue(connection)
    jobs = [Queue.prepare_data(DELIVER_FUNCTION, args=(nid,), job_id=job_id(nid), timeout=JOB_TIMEOUT_SECONDS,
                               result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS,
                               retry=Retry(max=len(intervals), interval=intervals))
            for nid in notification_ids]
    q.enqueue_many(jobs)


def requeue_lost(conn, connection, now: datetime | None = None, intervals: tuple[int, ...] | None = None) -> int:
    """Queue again notifications still 'queued' after a while whose job is gone (Redis lost it, or
    the enqueue after the dispatcher's commit failed). The idempotency key makes this safe."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    now = now or datetime.now(UTC)
    candidates = rows(conn, "SELECT id FROM notifications WHERE status = 'queued' AND created_at < %s ORDER BY id"
                            " LIMIT 1000", (now - LOST_AFTER,))
    lost = []
    for nid in (r["id"] for r in candidates):
        try:
            job = Job.fetch(job_id(nid), connection=connection, serializer=JSONSerializer)
            status = job.get_status(refresh=False)
        except NoSuchJobError:
            status = None
        if status is None or status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            if status is not None:
                job.delete()
            lost.append(nid)
    if lost:
        log.warning("re-queueing %d notifications whose delivery job was lost: %s", len(lost), lost[:20])
        enqueue(connection, lost, intervals)
    return len(lost)


# -- the job -----------------------------------------------------------------------------------------

def _row(conn, notification_id: int) -> dict[str, Any] | None:
    found = rows(conn, "SELECT id, idempotency_key, kind, integration_id, integration_name, status, payload, attempts"
                       " FROM notifications WHERE id = %s FOR UPDATE", (notification_id,))
    return found[0] if found else None


def attempt(conn, notification_id: int, *, final: bool) -> dict[str, Any]:
    """Try to deliver one notification once, recording the attempt; the caller owns the retry policy.

    Returns ``{"status": "sent" | "retrying" | "failed" | "duplicate" | "gone", ...}``.
    """
    with conn.transaction():
        row = _row(conn, notification_id)
        if row is None:
            return {"status": "gone", "notification": notification_id}
        if row["status"] != "queued":
            log.info("notification %s already %s: not sent again", notification_id, row["status"])
            return {"status": "duplicate", "notification": notification_id, "was": row["status"]}
        number = row["attempts"] + 1
        integration = get_integration(conn, row["integration_id"]) if row["integration_id"] else None
        started = time.perf_counter()
        code, error, retryable = None, None, False
        if integration is None:
            error = f"channel {row['integration_name']!r} was deleted"
        elif not integration.enabled and row["kind"] != "test":
            error = f"channel {integration.name!r} is disabled"
        else:
            try:
                result = integration.channel().send(Message(row["payload"], row["idempotency_key"], row["kind"]))
                code = result.code
            except DeliveryError as exc:
                code, error, retryable = exc.code, str(exc), exc.retryable
            except secretbox.SecretboxError as exc:
                error = f"cannot read the channel's secrets: {exc}"
            except Exception as exc:  # noqa: BLE001 - a bug in a channel is this delivery's failure
                log.exception("notification %s: channel %s failed unexpectedly", notification_id, integration.name)
                error, retryable = f"unexpected error: {type(exc).__name__}: {exc}", True
        duration_ms = (time.perf_counter() - started) * 1000
        if error is None:
            status = "sent"
        elif retryable and not final:
            status = "retrying"
        else:
            status = "failed"
        conn.execute("INSERT INTO deliveries (notification_id, integration_id, attempt, status, response_code, error,"
                     " duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (notification_id, row["integration_id"], number, status, code, error, duration_ms))
        conn.execute("UPDATE notifications SET attempts = %s, last_error = %s,"
                     " status = CASE WHEN %s = 'retrying' THEN 'queued' ELSE %s END,"
                     " sent_at = CASE WHEN %s = 'sent' THEN now() ELSE sent_at END WHERE id = %s",
                     (number, error, status, status, status, notification_id))
    level = logging.INFO if status == "sent" else logging.WARNING
    log.log(level, "notification %s to %s, attempt %d: %s%s", notification_id, row["integration_name"], number,
            status, f" ({error})" if error else "")
    return {"status": status, "notification": notification_id, "attempt": number, "code": code, "error": error,
            "retryable": retryable, "duration_ms": round(duration_ms, 1)}


def deliver(notification_id: int) -> dict[str, Any]:
    """The RQ job: one attempt; raise for RQ to retry a retryable failure (none after the last)."""
    from rq import get_current_job

    job = get_current_job()
    final = job is None or not job.retries_left
    with db.connect(_database_url()) as conn:
        outcome = attempt(conn, notification_id, final=final)
    if outcome["status"] == "retrying":
        raise DeliveryFailed(f"notification {notification_id}: {outcome['error']} (will retry)")
    if outcome["status"] == "failed":
        if job is not None:
            job.retries_left = 0  # permanent: RQ must not try again
        raise DeliveryFailed(f"notification {notification_id}: {outcome['error']} (given up)")
    return outcome


def send_test(conn, integration_id: int, *, by: str, external_url: str | None = None) -> dict[str, Any]:
    """Send a test notification to one channel now (in this process), recorded like any delivery
    and audited."""
    from panel.audit import record_event

    integration = get_integration(conn, integration_id)
    if integration is None:
        raise LookupError(f"no channel {integration_id}")
    now = datetime.now(UTC)
    key = f"test-{integration_id}-{int(now.timestamp() * 1000)}-{os.urandom(3).hex()}"
    payload = {
        "version": "1", "kind": "test", "status": "firing", "severity": "info", "route": None,
        "groupKey": None, "groupLabels": {}, "commonLabels": {"alertname": "PoolwardenTest"},
        "commonAnnotations": {"summary": "Test notification"}, "counts": {"firing": 0, "resolved": 0,
                                                                            "acknowledged": 0},
        "alerts": [], "truncatedAlerts": 0, "externalUrl": external_url,
        "createdAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "receiver": integration.name, "idempotencyKey": key,
        "requestedBy": by,
    }
    nid = scalar(conn, "INSERT INTO notifications (idempotency_key, kind, integration_id, integration_name, severity,"
                       " payload) VALUES (%s, 'test', %s, %s, 'info', %s) RETURNING id",
                 (key, integration_id, integration.name, Jsonb(payload)))
    result = attempt(conn, nid, final=True)
    record_event("integration.test", "integration", str(integration_id), conn=conn, actor=by,
                 result=result["status"], code=result.get("code"), error=result.get("error"))
    return result

