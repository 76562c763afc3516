"""Series history for graphs, and growth over 24 h, read from raw samples and the rollups.

A graph asks for a range (1h, 24h, 7d, 30d); the range fixes the step (about 700 points whatever
the range) and the source: raw samples for an hour, 1 m rollups up to a week, 1 h rollups beyond.
The newest stretch a rollup has not reached yet (it waits for minutes to settle) comes from raw
samples, so every graph reaches the present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from panel.engine.rollups import DEFAULT_RETENTION, ORIGIN, Retention, floor_to


@dataclass(frozen=True)
class GraphRange:
    span: timedelta
    source: str      # "raw", "1m" or "1h"
    step: timedelta  # bucket width of the returned points


RANGES = {
    "1h": GraphRange(timedelta(hours=1), "raw", timedelta(seconds=5)),
    "24h": GraphRange(timedelta(hours=24), "1m", timedelta(minutes=2)),
    "7d": GraphRange(timedelta(days=7), "1m", timedelta(minutes=15)),
    "30d": GraphRange(timedelta(days=30), "1h", timedelta(hours=1)),
}
DEFAULT_RANGE = "24h"
MAX_SERIES = 48
MAX_NAMES = 8
ROLLUP_TABLES = {"1m": "samples_1m", "1h": "samples_1h"}


class BadQuery(ValueError):
    """A series request the API answers with 400; the message says what to fix."""


def parse_labels(raw: str) -> dict[str, list[str]]:
    """``mount=/,component=logs|backups`` -> {"mount": ["/"], "component": ["logs", "backups"]}."""
    wanted: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise BadQuery(f"labels: {part!r} is not key=value (several: a=1,b=2; alternatives: a=1|2)")
        wanted.setdefault(key.strip(), []).extend(v for v in value.split("|"))
    return wanted


def choose_range(name: str, retention: Retention) -> GraphRange:
    if name not in RANGES:
        raise BadQuery(f"range must be one of {', '.join(RANGES)}, not {name!r}")
    chosen = RANGES[name]
    # A 1 m retention shorter than the range (an operator's choice) falls back to the 1 h rollup.
    if chosen.source == "1m" and chosen.span > timedelta(days=retention.m1_days):
        return GraphRange(chosen.span, "1h", max(chosen.step, timedelta(hours=1)))
    return chosen


def series_history(conn: psycopg.Connection, host_id: int, names: list[str], labels: dict[str, list[str]],
                   range_name: str, retention: Retention = DEFAULT_RETENTION,
                   now: datetime | None = None) -> dict[str, Any]:
    """Points of every series of the host matching ``names`` and ``labels``, aligned on one time axis."""
    if not names or len(names) > MAX_NAMES:
        raise BadQuery(f"give 1-{MAX_NAMES} metric names (name=...)")
    if any("\x00" in text for text in [*names, *labels, *(v for vs in labels.values() for v in vs)]):
        raise BadQuery("names and labels cannot contain NUL characters")
    graph = choose_range(range_name, retention)
    now = now or datetime.now(UTC)
    end = floor_to(now, graph.step) + graph.step
    start = end - graph.span
    conditions = [sql.SQL("host_id = %(host)s"), sql.SQL("name = ANY(%(names)s)")]
    params: dict[str, Any] = {"host": host_id, "names": names, "start": start, "end": end, "step": graph.step,
                              "origin": ORIGIN}
    for index, (key, values) in enumerate(sorted(labels.items())):
        conditions.append(sql.SQL("labels->>{} = ANY({})").format(sql.Placeholder(f"k{index}"),
                                                                   sql.Placeholder(f"v{index}")))
        params[f"k{index}"], params[f"v{index}"] = key, values
    # A host with many interfaces, disks or containers can match more series than a graph can show:
    # keep the busiest (highest latest value) and say how many were left out.
    matched = conn.execute(sql.SQL(
        "SELECT id, name, labels FROM series LEFT JOIN latest ON latest.series_id = series.id WHERE {} "
        "ORDER BY latest.value DESC NULLS LAST, name, labels::text LIMIT {}"
    ).format(sql.SQL(" AND ").join(conditions), sql.Literal(MAX_SERIES + 1)), params).fetchall()
    truncated = len(matched) > MAX_SERIES
    found = sorted(matched[:MAX_SERIES], key=lambda row: (_col(row, 1, "name"), json.dumps(_col(row, 2, "labels"),
                                                                                           sort_keys=True)))
    params["ids"] = [_col(row, 0, "id") for row in found]
    cut = start
    parts = []
    if graph.source != "raw":
        table = ROLLUP_TABLES[graph.source]
        done = conn.execute("SELECT done_until FROM rollup_state WHERE resolution = %s", (graph.source,)).fetchone()
        if done is not None:
            cut = min(max(floor_to(_col(done, 0, "done_until"), graph.step), start), end)
            params["cut"] = cut
            parts.append(sql.SQL(
                "SELECT series_id, date_bin(%(step)s, bucket, %(origin)s) AS b, sum(sum) / sum(count) AS v "
                "FROM {} WHERE series_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < %(cut)s GROUP BY 1, 2"
            ).format(sql.Identifier(table)))
    params["raw_from"] = cut
    parts.append(sql.SQL(
        "SELECT series_id, date_bin(%(step)s, ts, %(origin)s) AS b, avg(value) AS v "
        "FROM samples WHERE series_id = ANY(%(ids)s) AND ts >= %(raw_from)s AND ts < %(end)s GROUP BY 1, 2"))
    points: dict[int, dict[datetime, float]] = {sid: {} for sid in params["ids"]}
    if params["ids"]:
        for row in conn.execute(sql.SQL(" UNION ALL ").join(parts), params):
            points[_col(row, 0, "series_id")][_col(row, 1, "b")] = _col(row, 2, "v")
    stamps = sorted({ts for by_ts in points.values() for ts in by_ts})
    return {
        "range": range_name,
        "resolution": graph.source,
        "step": int(graph.step.total_seconds()),
        "from": _iso(start),
        "to": _iso(end),
        "timestamps": [int(ts.timestamp()) for ts in stamps],
        "truncated": truncated,  # more series matched than MAX_SERIES; the busiest are shown
        "series": [
            {"name": _col(row, 1, "name"), "labels": _col(row, 2, "labels"),
             "values": [points[_col(row, 0, "id")].get(ts) for ts in stamps]}
            for row in found
        ],
    }


def _col(row, index: int, key: str):
    """Rows from dict_row (the request connection) and tuple rows (benchmarks, engine) alike."""
    return row[key] if isinstance(row, dict) else row[index]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


GROWTH_WINDOW = timedelta(hours=24)
GROWTH_SLACK = timedelta(hours=2)  # the "24 h ago" value may be up to this much older


def growth_24h(conn: psycopg.Connection, host_id: int, name: str, label: str,
               values: list[str]) -> dict[str, float | None]:
    """Per value of ``label``: the sum over its series now minus the same sum 24 h ago.

    None when no series of that value has a sample from 24-26 h ago (a new host, or the agent was
    down then): a growth over a different window would be mislabelled.
    """
    rows = conn.execute(
        "SELECT s.labels->>%(label)s AS key, sum(l.value) AS now, sum(old.value) AS then, count(old.value) AS n "
        "FROM series s JOIN latest l ON l.series_id = s.id "
        "LEFT JOIN LATERAL ("
        "  SELECT value FROM ("
        "    (SELECT ts, value FROM samples WHERE series_id = s.id AND ts <= %(at)s AND ts > %(oldest)s"
        "     ORDER BY ts DESC LIMIT 1)"
        "    UNION ALL"
        "    (SELECT last_ts, last FROM samples_1m WHERE series_id = s.id AND bucket <= %(at)s AND bucket > %(oldest)s"
        "     ORDER BY bucket DESC LIMIT 1)"
        "  ) AS candidates ORDER BY ts DESC LIMIT 1"
        ") AS old ON true "
        "WHERE s.host_id = %(host)s AND s.name = %(name)s AND s.labels->>%(label)s = ANY(%(values)s) "
        "GROUP BY 1",
        {"label": label, "host": host_id, "name": name, "values": values,
         "at": datetime.now(UTC) - GROWTH_WINDOW, "oldest": datetime.now(UTC) - GROWTH_WINDOW - GROWTH_SLACK},
    ).fetchall()
    growth: dict[str, float | None] = dict.fromkeys(values)
    for row in rows:
        if _col(row, 3, "n"):
            growth[_col(row, 0, "key")] = _col(row, 1, "now") - _col(row, 2, "then")
    return growth
