"""Reading the audit log: filtered pages for the audit page and batches for the CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

PAGE_SIZE = 50
EXPORT_BATCH = 1000
COLUMNS = ("id", "ts", "actor", "address", "action", "object_type", "object_id", "before", "after", "details",
           "prev_hash", "hash")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def where_clause(filters: dict[str, Any]) -> tuple[sql.Composable, list[Any]]:
    """SQL conditions for the page's filters. Dates are whole UTC days, ``until`` inclusive."""
    parts: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    if "actor" in filters:
        parts.append(sql.SQL("strpos(lower(actor), lower(%s)) > 0"))
        params.append(filters["actor"])
    if "action" in filters:
        parts.append(sql.SQL("(action = %s OR starts_with(action, %s))"))
        params += [filters["action"], filters["action"].rstrip(".") + "."]
    if "object_type" in filters:
        parts.append(sql.SQL("object_type = %s"))
        params.append(filters["object_type"])
    if "object_id" in filters:
        parts.append(sql.SQL("object_id = %s"))
        params.append(filters["object_id"])
    if "since" in filters:
        parts.append(sql.SQL("ts >= %s"))
        params.append(_day_start(filters["since"]))
    if "until" in filters:
        parts.append(sql.SQL("ts < %s"))
        params.append(_day_start(filters["until"] + timedelta(days=1)))
    return sql.SQL(" AND ").join(parts), params


def page_of(conn: psycopg.Connection, filters: dict[str, Any], page: int) -> tuple[list[dict[str, Any]], bool]:
    """One page, newest first, and whether there is a next page."""
    where, params = where_clause(filters)
    query = sql.SQL("SELECT * FROM audit_log WHERE {} ORDER BY id DESC LIMIT %s OFFSET %s").format(where)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, [*params, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE]).fetchall()
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def export_rows(conn: psycopg.Connection, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every matching row, oldest first, fetched in batches (keyset on id)."""
    where, params = where_clause(filters)
    query = sql.SQL("SELECT * FROM audit_log WHERE {} AND id > %s ORDER BY id LIMIT %s").format(where)
    after = 0
    with conn.cursor(row_factory=dict_row) as cur:
        while True:
            batch = cur.execute(query, [*params, after, EXPORT_BATCH]).fetchall()
            yield from batch
            if len(batch) < EXPORT_BATCH:
                return
            after = batch[-1]["id"]


def latest_verification(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The newest ``audit.verify`` row (from the command or the page's button)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, ts, actor, details FROM audit_log WHERE action = 'audit.verify' ORDER BY id DESC LIMIT 1"
        ).fetchone()


def chain_head(conn: psycopg.Connection) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT last_id, last_hash FROM audit_chain_head").fetchone()
