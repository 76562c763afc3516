"""``vacuum`` and ``vacuum_full`` on Miningcore's tables.

``vacuum`` runs ``VACUUM (ANALYZE)`` table by table: it marks the space of deleted rows (Miningcore
deletes shares after every confirmed block) reusable and refreshes the planner's statistics,
without locking the table against reads or writes. ``vacuum_full`` runs ``VACUUM (FULL, ANALYZE)``,
which rewrites the table and gives the space back to the disk but holds an ACCESS EXCLUSIVE lock on
it meanwhile: Miningcore cannot write shares into it. It waits at most ``FULL_LOCK_TIMEOUT`` for that
lock, so it never queues behind a long transaction while everything else queues behind it.

Only tables of the catalogue (``contract.MININGCORE_TABLES``) that exist are touched; their names
are resolved in the database and quoted with ``psycopg.sql``. For each table the result has the
dead and live tuples and the size before and after, and the time taken. The statistics views lag
behind: on PostgreSQL 15+ the figures are read after ``pg_stat_clear_snapshot()`` (vacuum and
analyze write their counts straight into shared memory); before 15 the action waits until the
statistics collector shows this run's analyze.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from agent.actions import ActionContext, ActionFailed
from agent.actions.backup import connect, describe_dsn, first_line, human_bytes, miningcore_dsn, server_major

FULL_LOCK_TIMEOUT = "10s"
STATS_WAIT_SECONDS = 5.0

RESOLVE_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')
"""

# dead/live tuples summed over the table and, for a partitioned table (Miningcore's partitioned shares), its
# leaf partitions (pg_partition_tree lists nothing for a plain table)
STATS_SQL = """
SELECT coalesce(sum(s.n_dead_tup), 0)::bigint, coalesce(sum(s.n_live_tup), 0)::bigint,
       min(greatest(s.last_analyze, s.last_autoanalyze)), coalesce(sum(pg_total_relation_size(s.relid)), 0)::bigint
FROM pg_stat_user_tables s
WHERE s.relid = %(oid)s::oid OR s.relid IN (SELECT relid FROM pg_partition_tree(%(oid)s::regclass) WHERE isleaf)
"""
STATS_SQL_OLD = """
SELECT n_dead_tup, n_live_tup, greatest(last_analyze, last_autoanalyze), pg_total_relation_size(relid)
FROM pg_stat_user_tables WHERE relid = %(oid)s::oid
"""


@dataclass
class TableStats:
    dead: int
    live: int
    analyzed: Any
    size: int


OWNER_SQL = """
SELECT pg_has_role(current_user, c.relowner, 'USAGE')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), current_user
FROM pg_class c WHERE c.oid = %s
"""


def run_vacuum(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return _vacuum(ctx, params["tables"], full=False)


def run_vacuum_full(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return _vacuum(ctx, params["tables"], full=True)


def _read_stats(conn: psycopg.Connection, oid: int, major: int) -> TableStats:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(STATS_SQL if major >= 12 else STATS_SQL_OLD, {"oid": oid}).fetchone()
    if row is None:
        return TableStats(0, 0, None, 0)
    return TableStats(int(row[0] or 0), int(row[1] or 0), row[2], int(row[3] or 0))


def _stats_after(conn: psycopg.Connection, oid: int, major: int, since: Any) -> TableStats:
    """The table's figures once they include this run's ANALYZE (immediate on PostgreSQL 15+)."""
    if major >= 15:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return _read_stats(conn, oid, major)
    deadline = time.monotonic() + STATS_WAIT_SECONDS
    while True:
        stats = _read_stats(conn, oid, major)
        if (stats.analyzed is not None and stats.analyzed >= since) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def _vacuum(ctx: ActionContext, tables: list[str], *, full: bool) -> dict[str, Any]:
    dsn = miningcore_dsn(ctx.config)
    command = "VACUUM (FULL, ANALYZE)" if full else "VACUUM (ANALYZE)"
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    started = time.monotonic()
    # VACUUM cannot run inside a transaction block: autocommit
    with connect(dsn, autocommit=True, purpose="vacuum") as conn:
        major = server_major(conn)
        if full:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(FULL_LOCK_TIMEOUT)))
            ctx.say(f"VACUUM FULL LOCKS each table against reads and writes while it rewrites it (Miningcore "
                    f"cannot record shares into a locked table); it needs free disk space about the size of the "
                    f"table, and gives up on a table whose lock it cannot get within {FULL_LOCK_TIMEOUT}")
        ctx.say(f"{command} on {', '.join(tables)} in {describe_dsn(dsn)}")
        for table in tables:
            row = conn.execute(RESOLVE_SQL, (table,)).fetchone()
            if row is None:
                skipped[table] = "no such table in this database"
                ctx.say(f"{table}: skipped, no such table in this database")
                continue
            oid, schema, name, _kind = row
            owner_ok, role = conn.execute(OWNER_SQL, (oid,)).fetchone()
            if not owner_ok:
                # PostgreSQL would skip the table with only a WARNING and report success
                failed[table] = (f"the database role {role} does not own it, and PostgreSQL vacuums only tables "
                                 "their owner (or a superuser) asks for: connect as Miningcore's owner role")
                ctx.say(f"{table}: {failed[table]}")
                continue
            before = _read_stats(conn, oid, major)
            if full:
                ctx.say(f"{table}: LOCKED while VACUUM FULL rewrites it ({human_bytes(before.size)})")
            since = conn.execute("SELECT now()").fetchone()[0]
            t0 = time.monotonic()
            try:
                conn.execute(sql.SQL(command + " {}").format(sql.Identifier(schema, name)))
            except psycopg.errors.LockNotAvailable:
                failed[table] = (f"could not lock it within {FULL_LOCK_TIMEOUT}: a long transaction is using it; "
                                 "try again later")
                ctx.say(f"{table}: {failed[table]}")
                continue
            except psycopg.Error as exc:
                failed[table] = first_line(exc)
                ctx.say(f"{table}: failed: {failed[table]}")
                continue
            seconds = time.monotonic() - t0
            after = _stats_after(conn, oid, major, since)
            results[table] = {"dead_tuples_before": before.dead, "dead_tuples_after": after.dead,
                              "live_tuples_before": before.live, "live_tuples_after": after.live,
                              "size_bytes_before": before.size, "size_bytes_after": after.size,
                              "seconds": round(seconds, 3)}
            freed = before.size - after.size
            ctx.say(f"{table}: dead tuples {before.dead:,} -> {after.dead:,}, {human_bytes(after.size)}"
                    + (f" ({human_bytes(freed)} given back to the disk)" if full and freed > 0 else "")
                    + f", {seconds:.2f} s")
    duration = time.monotonic() - started
    dead_before = sum(r["dead_tuples_before"] for r in results.values())
    dead_after = sum(r["dead_tuples_after"] for r in results.values())
    freed = sum(r["size_bytes_before"] - r["size_bytes_after"] for r in results.values())
    details = {"command": command, "tables": results, "skipped": skipped, "failed": failed,
               "dead_tuples_before": dead_before, "dead_tuples_after": dead_after, "freed_bytes": freed,
               "duration_seconds": round(duration, 3)}
    if failed:
        raise ActionFailed(f"{command} failed on {', '.join(failed)}: "
                           + "; ".join(f"{t}: {why}" for t, why in failed.items()), details)
    summary = (f"{command} on {len(results)} table(s) in {duration:.1f} s: dead tuples {dead_before:,} -> "
               f"{dead_after:,}" + (f", {human_bytes(freed)} given back to the disk" if full else "")
               + (f"; skipped {', '.join(skipped)} (not in this database)" if skipped else ""))
    return {"summary": summary, **details}
