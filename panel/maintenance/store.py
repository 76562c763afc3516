"""Maintenance rows: jobs (one per run, keyed like its RQ job), host settings (safe mode, worker last seen).

Functions take a connection and read with dict rows whatever row factory the connection has, so
the web requests (``get_db()``) and the engine task (``ctx.conn``) share them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired", "refused")
ACTIVE = ("queued", "running")
JOB_COLUMNS = ("id, host, action, params, status, requested_by, requested_at, started_at, finished_at, summary, "
               "result, progress, error, schedule_id, rq_job_id")


def _cur(conn: psycopg.Connection):
    return conn.cursor(row_factory=dict_row)


def redacted_params(params: dict[str, Any]) -> dict[str, Any]:
    """What the table, the audit log and the pages keep of the parameters: a new Miningcore
    config.json holds the pool's database password, so only its digest and size are kept."""
    out = dict(params)
    config = out.get("config")
    if isinstance(config, str):
        data = config.encode()
        out["config"] = f"sha256:{hashlib.sha256(data).hexdigest()[:16]} ({len(data)} bytes)"
    return out


# -- jobs -------------------------------------------------------------------------------------------


def insert_job(conn: psycopg.Connection, *, job_id: str, host: str, action: str, params: dict[str, Any],
               requested_by: str, rq_job_id: str | None, schedule_id: int | None = None, status: str = "queued",
               error: str | None = None, summary: str | None = None) -> dict[str, Any]:
    finished = status not in ACTIVE
    with _cur(conn) as cur:
        return cur.execute(
            f"INSERT INTO maintenance_jobs (id, host, action, params, status, requested_by, rq_job_id, schedule_id,"
            f" error, summary, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            f" CASE WHEN %s THEN now() END) RETURNING {JOB_COLUMNS}",
            (job_id, host, action, Jsonb(redacted_params(params)), status, requested_by, rq_job_id, schedule_id,
             error, summary, finished)).fetchone()


def get_job(conn: psycopg.Connection, job_id: str) -> dict[str, Any] | None:
    with _cur(conn) as cur:
        return cur.execute(f"SELECT {JOB_COLUMNS} FROM maintenance_jobs WHERE id = %s", (job_id,)).fetchone()


def list_jobs(conn: psycopg.Connection, *, host: str | None = None, action: str | None = None,
              statuses: list[str] | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    where, args = [], []
    if host:
        where.append("host = %s")
        args.append(host)
    if action:
        where.append("action = %s")
        args.append(action)
    if statuses:
        where.append("status = ANY(%s)")
        args.append(list(statuses))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with _cur(conn) as cur:
        return cur.execute(f"SELECT {JOB_COLUMNS} FROM maintenance_jobs {clause} ORDER BY requested_at DESC, id"
                           " LIMIT %s OFFSET %s", (*args, limit, offset)).fetchall()


def active_jobs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with _cur(conn) as cur:
        return cur.execute(f"SELECT {JOB_COLUMNS} FROM maintenance_jobs WHERE status IN ('queued', 'running')"
                           " ORDER BY requested_at").fetchall()


def active_jobs_of(conn: psycopg.Connection, host: str) -> list[dict[str, Any]]:
    with _cur(conn) as cur:
        return cur.execute(f"SELECT {JOB_COLUMNS} FROM maintenance_jobs WHERE host = %s AND status IN"
                           " ('queued', 'running') ORDER BY requested_at", (host,)).fetchall()


def recently_finished(conn: psycopg.Connection, host: str, seconds: int) -> list[dict[str, Any]]:
    with _cur(conn) as cur:
        return cur.execute(f"SELECT {JOB_COLUMNS} FROM maintenance_jobs WHERE host = %s AND status NOT IN"
                           " ('queued', 'running') AND finished_at > now() - make_interval(secs => %s)"
                           " ORDER BY finished_at DESC LIMIT 20", (host, seconds)).fetchall()


def update_job(conn: psycopg.Connection, job_id: str, *, only_if: tuple[str, ...] = ACTIVE, **fields: Any
               ) -> dict[str, Any] | None:
    """Set ``fields`` on a job still in one of ``only_if`` states; None when it had moved on already
    (another engine, or a cancel from the page, got there first)."""
    sets, args = [], []
    for name, value in fields.items():
        if name not in ("status", "started_at", "finished_at", "summary", "result", "progress", "error"):
            raise ValueError(f"not a job field: {name}")
        sets.append(f"{name} = %s")
        args.append(Jsonb(value) if name in ("result", "progress") and value is not None else value)
    with _cur(conn) as cur:
        return cur.execute(f"UPDATE maintenance_jobs SET {', '.join(sets)} WHERE id = %s AND status = ANY(%s)"
                           f" RETURNING {JOB_COLUMNS}", (*args, job_id, list(only_if))).fetchone()


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def duration_seconds(job: dict[str, Any]) -> float | None:
    if job.get("started_at") and job.get("finished_at"):
        return round((job["finished_at"] - job["started_at"]).total_seconds(), 1)
    if job.get("started_at") and job["status"] == "running":
        return round((datetime.now(UTC) - job["started_at"]).total_seconds(), 1)
    return None


def public_job(job: dict[str, Any], *, with_output: bool = True) -> dict[str, Any]:
    """A job as the API and the page script see it."""
    from agent.contract import ACTIONS

    action = ACTIONS.get(job["action"])
    out = {
        "id": str(job["id"]), "host": job["host"], "action": job["action"],
        "title": action.title if action else job["action"], "params": job["params"], "status": job["status"],
        "requested_by": job["requested_by"], "requested_at": iso(job["requested_at"]),
        "started_at": iso(job["started_at"]), "finished_at": iso(job["finished_at"]),
        "duration_seconds": duration_seconds(job), "summary": job["summary"], "error": job["error"],
        "schedule_id": job["schedule_id"], "rq_job_id": job["rq_job_id"],
    }
    if with_output:
        result = job["result"] if isinstance(job["result"], dict) else None
        out["progress"] = list(job["progress"] or [])
        out["details"] = (result or {}).get("details") if isinstance((result or {}).get("details"), dict) else {}
        out["result"] = job["result"]
    return out


# -- host settings ------------------------------------------------------------------------------------


def host_settings(conn: psycopg.Connection, host: str) -> dict[str, Any]:
    with _cur(conn) as cur:
        row = cur.execute("SELECT * FROM maintenance_host_settings WHERE host = %s", (host,)).fetchone()
    return row or {"host": host, "safe_mode": False, "safe_mode_by": None, "safe_mode_at": None,
                   "safe_mode_reason": None, "worker_last_seen_at": None}


def set_safe_mode(conn: psycopg.Connection, host: str, on: bool, *, by: str, reason: str) -> dict[str, Any]:
    with _cur(conn) as cur:
        return cur.execute(
            "INSERT INTO maintenance_host_settings (host, safe_mode, safe_mode_by, safe_mode_at, safe_mode_reason)"
            " VALUES (%s, %s, %s, now(), %s) ON CONFLICT (host) DO UPDATE SET safe_mode = excluded.safe_mode,"
            " safe_mode_by = excluded.safe_mode_by, safe_mode_at = excluded.safe_mode_at,"
            " safe_mode_reason = excluded.safe_mode_reason RETURNING *", (host, on, by, reason)).fetchone()


def worker_seen(conn: psycopg.Connection, host: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO maintenance_host_settings (host, worker_last_seen_at) VALUES (%s, %s) ON CONFLICT (host)"
        " DO UPDATE SET worker_last_seen_at = GREATEST(maintenance_host_settings.worker_last_seen_at,"
        " excluded.worker_last_seen_at)", (host, at))


def maintenance_hosts(conn: psycopg.Connection) -> list[str]:
    """Every host the maintenance pages know: reporting hosts, enrolled ones, and those with jobs."""
    rows = conn.execute("SELECT name FROM hosts UNION SELECT host FROM maintenance_host_keys"
                        " UNION SELECT host FROM maintenance_host_settings ORDER BY 1").fetchall()
    return [r["name"] if isinstance(r, dict) else r[0] for r in rows]
