"""What happens when a maintenance job starts and when it ends.

The engine's sync (``panel.maintenance.sync``) calls ``on_job_started`` once when it first sees a
job running, and ``on_job_finished`` once when the job reaches a final state (succeeded, failed,
refused, cancelled, expired), in that order; a job that never ran (cancelled, expired) only gets
``on_job_finished``. ``job`` is the ``maintenance_jobs`` row after the change, as a dict.

Both record the transition in the audit log. This is where alerting hooks in: silencing the
components the action touches (``agent.contract.silenced_components``) while it runs, and raising
the critical alert for a service that did not come back once it has finished.
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


def on_job_finished(conn: psycopg.Connection, job: dict[str, Any]) -> None:
    """The job reached its final state (``job["status"]``)."""
    audit.record_event("maintenance.job_finished", "maintenance_job", str(job["id"]), actor="system", conn=conn,
                       host=job["host"], job_action=job["action"], requested_by=job["requested_by"],
                       status=job["status"], summary=job.get("summary"), error=job.get("error"),
                       duration_seconds=duration_seconds(job))
