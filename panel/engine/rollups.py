"""Rollups (1 minute, 1 hour: min/max/sum/count/last per series) and retention, in bounded steps.

``run_rollups`` is what ``poolwarden-panel rollup`` runs and what the engine calls once a minute:

1. **1 m**: every minute bucket that ended more than ``SETTLE_SECONDS`` ago is aggregated from raw
   samples, ``CHUNK_MINUTES`` at a time, and ``rollup_state['1m']`` moves forward. A chunk is
   recomputed whole (upsert), so a re-run changes nothing.
2. **Late samples**: the engine notes the minute of any sample older than the 1 m watermark in
   ``rollup_dirty`` (same transaction as the sample); those minutes are recomputed here, and their
   hours marked dirty in turn. The watermark row is updated *before* aggregating and the engine
   reads it ``FOR SHARE``, so a sample committed while a chunk is rolled up is either seen by the
   chunk or marked dirty, never lost.
3. **1 h** from 1 m, the same way (avg weighted by count, last by time).
4. **Retention**: raw samples older than ``raw_days`` (and already rolled up), 1 m rows older than
   ``m1_days`` (and in the 1 h rollup), 1 h rows older than ``h1_days``, and ingested batch ids
   older than ``raw_days``; deleted ``DELETE_BATCH`` rows per statement, ``max_rounds`` statements
   per table and run, so one run never holds locks or WAL for long.

Buckets are aligned on UTC (``date_bin`` with a UTC origin), whatever the session time zone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

log = logging.getLogger(__name__)

SETTLE_SECONDS = 120          # agents send every 15 s; a minute is complete well within 2 min
CHUNK_MINUTES = 60            # raw samples aggregated per statement
CHUNK_HOURS = 24              # 1 m rows aggregated per statement
MAX_CHUNKS = 48               # per run: up to two days of backlog per call
MAX_DIRTY = 500               # late minutes recomputed per run
DELETE_BATCH = 50_000
MAX_DELETE_ROUNDS = 20
ROLLUP_LOCK_KEY = 0x706F6F6C726F6C6C  # "poolroll": one rollup run at a time, whoever starts it
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

AGGREGATE_RAW = """
INSERT INTO samples_1m AS r (series_id, bucket, min, max, sum, count, last, last_ts)
SELECT series_id, date_bin('1 minute', ts, %(origin)s), min(value), max(value), sum(value), count(*),
       (array_agg(value ORDER BY ts DESC))[1], max(ts)
FROM samples WHERE ts >= %(start)s AND ts < %(end)s
GROUP BY 1, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum,
    count = excluded.count, last = excluded.last, last_ts = excluded.last_ts
"""

AGGREGATE_1M = """
INSERT INTO samples_1h AS r (series_id, bucket, min, max, sum, count, last, last_ts)
SELECT series_id, date_bin('1 hour', bucket, %(origin)s), min(min), max(max), sum(sum), sum(count),
       (array_agg(last ORDER BY last_ts DESC))[1], max(last_ts)
FROM samples_1m WHERE bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1, 2
ON CONFLICT (series_id, bucket) DO UPDATE SET min = excluded.min, max = excluded.max, sum = excluded.sum,
    count = excluded.count, last = excluded.last, last_ts = excluded.last_ts
"""

RESOLUTIONS = {"1m": (timedelta(minutes=1), "samples_1m", "samples", "ts", AGGREGATE_RAW),
               "1h": (timedelta(hours=1), "samples_1h", "samples_1m", "bucket", AGGREGATE_1M)}


@dataclass(frozen=True)
class Retention:
    """Days kept per resolution (``POOLWARDEN_RETENTION_RAW_DAYS``, ``_1M_DAYS``, ``_1H_DAYS``)."""

    raw_days: int = 7
    m1_days: int = 30
    h1_days: int = 400

    @classmethod
    def from_config(cls, config) -> Retention:
        return cls(config.get("RETENTION_RAW_DAYS") or cls.raw_days,
                   config.get("RETENTION_1M_DAYS") or cls.m1_days,
                   config.get("RETENTION_1H_DAYS") or cls.h1_days)


DEFAULT_RETENTION = Retention()


@dataclass
class RollupReport:
    buckets: dict[str, int] = field(default_factory=lambda: {"1m": 0, "1h": 0})  # rows written
    late: int = 0                                                             # dirty minutes redone
    deleted: dict[str, int] = field(default_factory=dict)                      # table -> rows
    done_until: dict[str, datetime | None] = field(default_factory=dict)
    skipped: bool = False       # another run held the lock
    backlog: bool = False       # more to do than one run's bound: call again soon

    def line(self) -> str:
        if self.skipped:
            return "another rollup run is in progress: skipped"
        deleted = ", ".join(f"{n} from {t}" for t, n in self.deleted.items() if n) or "nothing"
        marks = ", ".join(f"{r} up to {_iso(ts)}" for r, ts in self.done_until.items())
        return (f"rolled up {self.buckets['1m']} 1m and {self.buckets['1h']} 1h rows ({self.late} late minutes); "
                f"deleted {deleted}; complete: {marks or 'no samples yet'}"
                + ("; backlog remains" if self.backlog else ""))


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def floor_to(ts: datetime, step: timedelta) -> datetime:
    return ORIGIN + ((ts - ORIGIN) // step) * step


def run_rollups(conn: psycopg.Connection, retention: Retention = DEFAULT_RETENTION, *, now: datetime | None = None,
                max_chunks: int = MAX_CHUNKS, delete_batch: int = DELETE_BATCH,
                max_delete_rounds: int = MAX_DELETE_ROUNDS) -> RollupReport:
    """One bounded rollup + retention pass over an autocommit connection."""
    now = now or datetime.now(UTC)
    report = RollupReport()
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (ROLLUP_LOCK_KEY,)).fetchone()[0]:
        report.skipped = True
        return report
    try:
        _roll_forward(conn, "1m", floor_to(now - timedelta(seconds=SETTLE_SECONDS), timedelta(minutes=1)),
                      max_chunks, report)
        _redo_late_minutes(conn, now - timedelta(days=retention.raw_days), report)
        done_1m = _done_until(conn, "1m")
        if done_1m is not None:
            _roll_forward(conn, "1h", floor_to(done_1m, timedelta(hours=1)), max_chunks, report)
        _redo_late_hours(conn, report)
        _apply_retention(conn, retention, now, delete_batch, max_delete_rounds, report)
        report.done_until = {r: _done_until(conn, r) for r in RESOLUTIONS}
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ROLLUP_LOCK_KEY,))
    return report


def _done_until(conn: psycopg.Connection, resolution: str) -> datetime | None:
    row = conn.execute("SELECT done_until FROM rollup_state WHERE resolution = %s", (resolution,)).fetchone()
    return row[0] if row else None


def _first_bucket(conn: psycopg.Connection, resolution: str) -> datetime | None:
    step, _target, source, column, _sql = RESOLUTIONS[resolution]
    # min() over the whole table: a sequential scan, but only once (the first run ever).
    oldest = conn.execute(f"SELECT min({column}) FROM {source}").fetchone()[0]  # noqa: S608 - fixed names
    return floor_to(oldest, step) if oldest else None


def _roll_forward(conn: psycopg.Connection, resolution: str, target: datetime, max_chunks: int,
                  report: RollupReport) -> None:
    step, _table, _source, _column, sql = RESOLUTIONS[resolution]
    chunk = timedelta(minutes=CHUNK_MINUTES) if resolution == "1m" else timedelta(hours=CHUNK_HOURS)
    start = _done_until(conn, resolution)
    if start is None:
        start = _first_bucket(conn, resolution)
        if start is None:
            return
        conn.execute("INSERT INTO rollup_state (resolution, done_until) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (resolution, start))
    for _ in range(max_chunks):
        if start >= target:
            return
        end = min(start + chunk, target)
        with conn.transaction():
            # Watermark first: the engine's FOR SHARE read of it waits for this transaction, so a
            # sample it commits meanwhile is marked dirty instead of falling between the two.
            conn.execute("UPDATE rollup_state SET done_until = %s, updated_at = now() WHERE resolution = %s",
                         (end, resolution))
            written = conn.execute(sql, {"origin": ORIGIN, "start": start, "end": end}).rowcount
        report.buckets[resolution] += max(written, 0)
        start = end
    report.backlog = report.backlog or start < target


def _redo_late_minutes(conn: psycopg.Connection, raw_cutoff: datetime, report: RollupReport) -> None:
    """Recompute minutes that received samples after they were rolled up; their hours become dirty."""
    with conn.transaction():
        conn.execute("DELETE FROM rollup_dirty WHERE resolution = '1m' AND bucket < %s", (raw_cutoff,))
        minutes = [row[0] for row in conn.execute(
            "DELETE FROM rollup_dirty WHERE (resolution, bucket) IN (SELECT resolution, bucket FROM rollup_dirty"
            " WHERE resolution = '1m' ORDER BY bucket LIMIT %s) RETURNING bucket", (MAX_DIRTY,))]
        for minute in minutes:
            conn.execute(AGGREGATE_RAW, {"origin": ORIGIN, "start": minute, "end": minute + timedelta(minutes=1)})
        if minutes:
            conn.execute(
                "INSERT INTO rollup_dirty (resolution, bucket) "
                "SELECT DISTINCT '1h', date_bin('1 hour', m, %s) FROM unnest(%s::timestamptz[]) AS m "
                "WHERE m < (SELECT done_until FROM rollup_state WHERE resolution = '1h') ON CONFLICT DO NOTHING",
                (ORIGIN, minutes))
    report.late += len(minutes)
    report.backlog = report.backlog or len(minutes) == MAX_DIRTY


def _redo_late_hours(conn: psycopg.Connection, report: RollupReport) -> None:
    with conn.transaction():
        hours = [row[0] for row in conn.execute(
            "DELETE FROM rollup_dirty WHERE (resolution, bucket) IN (SELECT resolution, bucket FROM rollup_dirty"
            " WHERE resolution = '1h' ORDER BY bucket LIMIT %s) RETURNING bucket", (MAX_DIRTY,))]
        for hour in hours:
            conn.execute(AGGREGATE_1M, {"origin": ORIGIN, "start": hour, "end": hour + timedelta(hours=1)})


def _apply_retention(conn: psycopg.Connection, retention: Retention, now: datetime, batch: int, rounds: int,
                     report: RollupReport) -> None:
    done_1m, done_1h = _done_until(conn, "1m"), _done_until(conn, "1h")
    raw_cutoff = now - timedelta(days=retention.raw_days)
    m1_cutoff = now - timedelta(days=retention.m1_days)
    # Never delete what the next resolution has not absorbed yet (a rollup that fell behind).
    plans = [
        ("samples", "ts", min(raw_cutoff, done_1m) if done_1m else None),
        ("samples_1m", "bucket", min(m1_cutoff, done_1h) if done_1h else None),
        ("samples_1h", "bucket", now - timedelta(days=retention.h1_days)),
        ("ingested_batches", "received_at", raw_cutoff),
    ]
    for table, column, cutoff in plans:
        if cutoff is None:
            continue
        total = 0
        for _ in range(rounds):
            deleted = conn.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - fixed table names
                f"SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s))", (cutoff, batch)).rowcount
            total += deleted
            if deleted < batch:
                break
        else:
            report.backlog = True
        report.deleted[table] = total
        if total:
            log.info("retention: deleted %d rows of %s older than %s", total, table, _iso(cutoff))
