"""What happens when a maintenance job starts and when it ends.

The engine's sync (``panel.maintenance.sync``) calls ``on_job_started`` once when it first sees a
job running, and ``on_job_finished`` once when the job reaches a final state (succeeded, failed,
refused, cancelled, expired), in that order; a job that never ran (cancelled, expired) only gets
``on_job_finished``. ``job`` is the ``maintenance_jobs`` row after the change, as a dict.

Both record the transition in the audit log. While a job runs, the alerts it is expected to cause
are silenced: a silence (source ``maintenance``) on the job's host for the services the action
touches (``agent.contract.silenced_components``, matched against the alerts' ``service`` label),
ending at the action's time limit at the latest and expired as soon as the job finishes, so what
still fires afterwards is notified at the dispatcher's next turn. A service that did not come back
(``result.details.service_down``) raises the critical ``maintenance_failed`` alert through the
alert rules, which read ``maintenance_jobs``.
"""

from __future__ import annotations

from typing import Any

import psycopg

from panel import audit
from panel.maintenance.store import duration_seconds


def on_job_started(conn: psycopg.Connection, job: dict[str, Any]) -> None:
    """A worker took the job and is running it."""
    from agent.contract import ACTIONS, silenced_components

    wait = None
    if job.get("started_at") and job.get("requested_at"):
        wait = round(max(0.0, (job["started_at"] - job["requested_at"]).total_seconds()), 1)
    silences = silenced_components(job["action"], job["params"]) if job["action"] in ACTIONS else []
    audit.record_event("maintenance.job_started", "maintenance_job", str(job["id"]), actor="system", conn=conn,
                       host=job["host"], job_action=job["action"], requested_by=job["requested_by"],
                       waited_seconds=wait, components=silences)
    if silences:
        _silence_while_running(conn, job, silences)


def _silence_marker(job: dict[str, Any]) -> str:
    return f"maintenance job {job['id']}:"


def _silence_while_running(conn: psycopg.Connection, job: dict[str, Any], services: list[str]) -> None:
    import re
    from datetime import UTC, datetime, timedelta

    from agent.contract import ACTIONS
    from panel.notify.silences import create_silence

    ends = datetime.now(UTC) + timedelta(seconds=ACTIONS[job["action"]].timeout_seconds + 60)
    create_silence(conn, matchers=[{"name": "host", "op": "=", "value": job["host"]},
                                   {"name": "service", "op": "=~", "value": "|".join(re.escape(s) for s in services)}],
                   starts_at=None, ends_at=ends, created_by="system", source="maintenance",
                   comment=f"{_silence_marker(job)} {job['action']} by {job['requested_by']} touches "
                           f"{', '.join(services)}")


def _end_silences(conn: psycopg.Connection, job: dict[str, Any]) -> None:
    from panel.notify.silences import expire_silence

    found = conn.execute("SELECT id FROM silences WHERE source = 'maintenance' AND expired_at IS NULL "
                         "AND starts_with(comment, %s)", (_silence_marker(job),)).fetchall()
    for (silence_id,) in found:
        expire_silence(conn, silence_id, by="system")


def on_job_finished(conn: psycopg.Connection, job: dict[str, Any]) -> None:
    """The job reached its final state (``job["status"]``)."""
    audit.record_event("maintenance.job_finished", "maintenance_job", str(job["id"]), actor="system", conn=conn,
                       host=job["host"], job_action=job["action"], requested_by=job["requested_by"],
                       status=job["status"], summary=job.get("summary"), error=job.get("error"),
                       duration_seconds=duration_seconds(job))
    _end_silences(conn, job)
