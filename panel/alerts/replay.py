"""History for the rule editor's preview: a rule's value minute by minute over the last days, read
from the 1-minute rollups, and a replay of the rule's state machine over it ("would have fired N
times in the last 7 days").

The replay judges each minute's average as the evaluation judges the newest value, with the rule's
thresholds, pending duration, clear threshold and keep-firing time; minutes without data (an agent
that was down) change nothing, as a silent host's alerts neither start nor resolve.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from panel.alerts.data import rows
from panel.alerts.types.base import PreviewSeries
from panel.engine.rollups import ORIGIN

MAX_POINTS = 2_000_000     # series x steps replayed per preview; beyond, the step grows


def _key_columns(keys: tuple[str, ...] | None) -> sql.Composable:
    if keys is None:
        return sql.SQL(", s.labels::text")
    if not keys:
        return sql.SQL("")
    return sql.SQL(", ") + sql.SQL(", ").join(
        sql.SQL("s.labels->>{}").format(sql.Literal(k)) for k in keys)


def step_for(series_count: int, span: timedelta) -> timedelta:
    """One minute, or coarser when there are so many series that a replay would be slow."""
    minutes = max(1, int(series_count * span.total_seconds() / 60 // MAX_POINTS) + 1)
    return timedelta(minutes=minutes)


def _count_series(conn: psycopg.Connection, name: str) -> int:
    return rows(conn, "SELECT count(*) FROM series WHERE name = %s", (name,))[0][0]


def metric_minutes(conn: psycopg.Connection, name: str, start: datetime, end: datetime,
                   keys: tuple[str, ...] | None = (), *, scale: float = 1.0) -> list[PreviewSeries]:
    """Per host and values of ``keys`` (None: per series, all its labels): the metric's average per step
    between ``start`` and ``end``."""
    step = step_for(_count_series(conn, name), end - start)
    query = sql.SQL(
        "SELECT h.name{keys}, date_bin(%(step)s, m.bucket, %(origin)s) AS b, sum(m.sum) / sum(m.count) * %(scale)s "
        "FROM samples_1m m JOIN series s ON s.id = m.series_id JOIN hosts h ON h.id = s.host_id "
        "WHERE s.name = %(name)s AND m.bucket >= %(start)s AND m.bucket < %(end)s "
        "GROUP BY h.name{keys}, b ORDER BY h.name{keys}, b"
    ).format(keys=_key_columns(keys))
    found = rows(conn, query, {"step": step, "origin": ORIGIN, "name": name, "start": start, "end": end,
                               "scale": scale})
    return _group(found, keys)


def ratio_minutes(conn: psycopg.Connection, numerator: str, denominator: str, start: datetime, end: datetime,
                  *, scale: float = 1.0) -> list[PreviewSeries]:
    """Per host: numerator / denominator (both without labels) per step, times ``scale``."""
    step = step_for(_count_series(conn, numerator), end - start)
    found = rows(conn,
                 "WITH per AS ("
                 " SELECT h.name AS host, s.name AS metric, date_bin(%(step)s, m.bucket, %(origin)s) AS b,"
                 " sum(m.sum) / sum(m.count) AS v"
                 " FROM samples_1m m JOIN series s ON s.id = m.series_id JOIN hosts h ON h.id = s.host_id"
                 " WHERE s.name = ANY(%(names)s) AND m.bucket >= %(start)s AND m.bucket < %(end)s GROUP BY 1, 2, 3) "
                 "SELECT n.host, n.b, n.v / d.v * %(scale)s FROM per n JOIN per d ON d.host = n.host AND d.b = n.b "
                 "AND d.metric = %(den)s WHERE n.metric = %(num)s AND d.v > 0 ORDER BY 1, 2",
                 {"step": step, "origin": ORIGIN, "names": [numerator, denominator], "num": numerator,
                  "den": denominator, "start": start, "end": end, "scale": scale})
    return _group(found, ())


def _group(found: list[tuple], keys: tuple[str, ...] | None) -> list[PreviewSeries]:
    width = 1 if keys is None else len(keys)
    grouped: dict[tuple, list[tuple[datetime, float]]] = {}
    for row in found:
        ident, bucket, value = row[: 1 + width], row[1 + width], row[2 + width]
        if value is not None:
            grouped.setdefault(tuple(ident), []).append((bucket, value))
    out = []
    for ident, points in grouped.items():
        if keys is None:
            labels = {"host": ident[0], **json.loads(ident[1])}
        else:
            labels = {"host": ident[0], **{k: ident[i + 1] or "" for i, k in enumerate(keys)}}
        out.append(PreviewSeries(labels, points))
    return out


@dataclass
class Replay:
    fired: int = 0                  # pending -> firing transitions
    series: int = 0                 # label sets replayed
    firing_seconds: float = 0.0
    firing_now: int = 0             # label sets still firing at the end
    by_labels: list[dict[str, Any]] = field(default_factory=list)


def replay(series: list[PreviewSeries], judge: Callable[[float, dict[str, Any], str | None],
                                                      tuple[bool, bool, str | None]],
           params: dict[str, Any], for_seconds: int, keep_firing_seconds: int,
           keep: Callable[[dict[str, str]], bool] = lambda labels: True) -> Replay:
    """Run the rule's state machine over each label set's points."""
    result = Replay()
    for one in series:
        if not keep(one.labels):
            continue
        result.series += 1
        fired, firing_seconds, still = _replay_one(one.points, judge, params, for_seconds, keep_firing_seconds)
        result.fired += fired
        result.firing_seconds += firing_seconds
        result.firing_now += int(still)
        if fired:
            result.by_labels.append({"labels": one.labels, "fired": fired, "firing_seconds": firing_seconds})
    result.by_labels.sort(key=lambda item: (-item["fired"], -item["firing_seconds"]))
    return result


def _replay_one(points, judge, params, for_seconds: int, keep_seconds: int) -> tuple[int, float, bool]:
    state = None            # None, "pending" or "firing"
    since = fired_at = cleared = severity = None
    fired = 0
    firing_seconds = 0.0
    for at, value in points:
        breach, held, new_severity = judge(value, params, severity if state else None)
        if state is None:
            if breach:
                state, since, severity = "pending", at, new_severity
        elif held:
            cleared = None
            severity = new_severity
        elif state == "firing" and keep_seconds:
            cleared = cleared or at
            if (at - cleared).total_seconds() >= keep_seconds:
                firing_seconds += (at - fired_at).total_seconds()
                state = None
        else:
            if state == "firing":
                firing_seconds += (at - fired_at).total_seconds()
            state = None
        if state == "pending" and (at - since).total_seconds() >= for_seconds:
            state, fired_at = "firing", at
            fired += 1
    if state == "firing" and points:
        firing_seconds += (points[-1][0] - fired_at).total_seconds()
    return fired, firing_seconds, state == "firing"
