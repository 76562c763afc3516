"""What one evaluation reads: the newest value of every series the rules watch (one query for all
rules), the hosts and how long each has been silent, and on demand windows of raw samples or
1-minute rollups (averages, regressions, counter increases, last change) and events.

Everything is read once per evaluation and cached by what was asked, so ten rules on the same
metric cost one query. Windows are asked for the series the latest snapshot holds, by id, which
the samples primary key (series_id, ts) serves as range scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

# A series whose newest value is this much older than its host's newest batch is gone (a mount
# unmounted, a container removed, a pool no longer configured): it is not judged any more.
STALE_GRACE_SECONDS = 180
# Collectors that run every few minutes (component sizes, table sizes, Docker disk usage).
SLOW_PREFIXES = ("poolwarden_component_", "poolwarden_log_", "poolwarden_backup_", "poolwarden_docker_",
                 "poolwarden_container_rw_size_bytes", "poolwarden_postgres_table_")
SLOW_GRACE_SECONDS = 1800


@dataclass(frozen=True, slots=True)
class Point:
    series_id: int
    host: str
    name: str
    labels: dict[str, str]
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class HostInfo:
    id: int
    name: str
    last_seen: datetime
    last_batch_ts: datetime | None
    silent_seconds: float       # since the engine last received a batch (panel clock)
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class Fit:
    """A least-squares line through a series' values over a window."""

    slope: float | None         # units per second
    count: int
    first: datetime
    last: datetime
    restarted: datetime | None = None   # the line starts after a clean-up (see ``regression``)

    @property
    def span_seconds(self) -> float:
        return (self.last - self.first).total_seconds()


# A fall by more than 1 % of the value (and 1 MiB) is a clean-up: growth lines start after it.
DROP_RESTART_FRACTION = 0.01
DROP_RESTART_BYTES = 2**20


def grace_for(name: str) -> float:
    return SLOW_GRACE_SECONDS if name.startswith(SLOW_PREFIXES) else STALE_GRACE_SECONDS


def rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[tuple]:
    """Tuple rows whatever the connection's row factory (the request's connection uses dicts)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


class EvalData:
    def __init__(self, conn: psycopg.Connection, now: datetime, stale_after: float):
        self.conn = conn
        self.now = now
        self.stale_after = stale_after
        self._latest: dict[str, list[Point]] = {}
        self._cache: dict[tuple, Any] = {}
        # (rule id, fingerprint) -> severity of the open alert, for rules whose severity has hysteresis
        self.open_severities: dict[tuple[int | None, str], str] = {}
        self.hosts = {
            row[1]: HostInfo(row[0], row[1], row[2], row[3], max(0.0, row[4]), row[5])
            for row in rows(conn, "SELECT id, name, last_seen, last_batch_ts, "
                                  "EXTRACT(EPOCH FROM %s - last_seen)::float8, first_seen FROM hosts", (now,))
        }
        # Hosts the engine has not heard from: their values are the last ones received, not the
        # present, so their alerts neither start nor resolve until the host reports again (the
        # agent_silent rule says what is going on).
        self.frozen_hosts = {name for name, host in self.hosts.items() if host.silent_seconds > stale_after}

    def open_severity(self, rule, specific: dict[str, str]) -> str | None:
        """The severity of the rule's open alert for these labels (None: no open alert)."""
        from panel.alerts.identity import alert_labels, fingerprint

        return self.open_severities.get((rule.id, fingerprint(alert_labels(rule, specific))))

    # -- newest values ---------------------------------------------------------------------------

    def load_latest(self, names: set[str]) -> None:
        """Read the newest value of every series of ``names`` in one query."""
        missing = sorted(set(names) - set(self._latest))
        if not missing:
            return
        for name in missing:
            self._latest[name] = []
        found = rows(self.conn,
                     "SELECT s.id, h.name, s.name, s.labels, l.ts, l.value FROM series s "
                     "JOIN latest l ON l.series_id = s.id JOIN hosts h ON h.id = s.host_id "
                     "WHERE s.name = ANY(%s)", (missing,))
        for sid, host, name, labels, ts, value in found:
            newest = self.hosts[host].last_batch_ts if host in self.hosts else None
            if newest is not None and (newest - ts).total_seconds() > grace_for(name):
                continue
            self._latest[name].append(Point(sid, host, name, labels, ts, value))

    def latest(self, name: str) -> list[Point]:
        if name not in self._latest:
            self.load_latest({name})
        return self._latest[name]

    def by_host(self, name: str) -> dict[str, Point]:
        """For metrics without labels: the newest point of each host."""
        out: dict[str, Point] = {}
        for point in self.latest(name):
            if point.host not in out or point.ts > out[point.host].ts:
                out[point.host] = point
        return out

    def by_label(self, name: str, label: str) -> dict[tuple[str, str], Point]:
        """(host, value of ``label``) -> newest point."""
        out: dict[tuple[str, str], Point] = {}
        for point in self.latest(name):
            key = (point.host, point.labels.get(label, ""))
            if key not in out or point.ts > out[key].ts:
                out[key] = point
        return out

    def _ids(self, name: str) -> list[int]:
        return [p.series_id for p in self.latest(name)]

    # -- windows of raw samples ------------------------------------------------------------------

    def window_avg(self, name: str, seconds: float) -> dict[int, float]:
        """Mean of each series' raw samples over the last ``seconds``."""
        key = ("avg", name, seconds)
        if key not in self._cache:
            found = rows(self.conn,
                         "SELECT series_id, avg(value) FROM samples WHERE series_id = ANY(%s) "
                         "AND ts > %s AND ts <= %s GROUP BY 1",
                         (self._ids(name), self.now - timedelta(seconds=seconds), self.now))
            self._cache[key] = {sid: value for sid, value in found}
        return self._cache[key]

    def regression(self, name: str, seconds: float, *, restart_on_drop: bool = False) -> dict[int, Fit]:
        """Slope (per second) of each series over the last ``seconds`` of raw samples.

        With ``restart_on_drop`` the line starts at the newest sample that fell by more than
        ``DROP_RESTART_FRACTION`` of the one before it (and at least ``DROP_RESTART_BYTES``): after a
        clean-up (logs deleted, a rotation, old backups pruned) the growth before it says nothing about
        the growth to come. ``Fit.restarted`` is then the time of that sample.
        """
        key = ("fit", name, seconds, restart_on_drop)
        if key not in self._cache:
            if restart_on_drop:
                found = rows(self.conn,
                             "WITH s AS (SELECT series_id, ts, value,"
                             "  lag(value) OVER (PARTITION BY series_id ORDER BY ts) AS prev"
                             "  FROM samples WHERE series_id = ANY(%(ids)s) AND ts > %(start)s AND ts <= %(now)s),"
                             " cut AS (SELECT series_id, max(ts) FILTER (WHERE prev - value > GREATEST("
                             "  prev * %(fraction)s, %(bytes)s)) AS since FROM s GROUP BY 1) "
                             "SELECT s.series_id, regr_slope(s.value, extract(epoch FROM s.ts)), count(*), min(s.ts),"
                             " max(s.ts), min(cut.since) FROM s JOIN cut USING (series_id)"
                             " WHERE cut.since IS NULL OR s.ts >= cut.since GROUP BY 1",
                             {"ids": self._ids(name), "start": self.now - timedelta(seconds=seconds), "now": self.now,
                              "fraction": DROP_RESTART_FRACTION, "bytes": DROP_RESTART_BYTES})
                self._cache[key] = {sid: Fit(slope, n, first, last, since)
                                    for sid, slope, n, first, last, since in found}
            else:
                found = rows(self.conn,
                             "SELECT series_id, regr_slope(value, extract(epoch FROM ts)), count(*), min(ts), max(ts) "
                             "FROM samples WHERE series_id = ANY(%s) AND ts > %s AND ts <= %s GROUP BY 1",
                             (self._ids(name), self.now - timedelta(seconds=seconds), self.now))
                self._cache[key] = {sid: Fit(slope, n, first, last) for sid, slope, n, first, last in found}
        return self._cache[key]

    def rollup_regression(self, name: str, start: datetime, end: datetime) -> dict[int, Fit]:
        """Slope of each series' 1-minute averages between ``start`` and ``end`` (long baselines)."""
        key = ("fit1m", name, start, end)
        if key not in self._cache:
            found = rows(self.conn,
                         "SELECT series_id, regr_slope(sum / count, extract(epoch FROM bucket)), count(*), "
                         "min(bucket), max(bucket) FROM samples_1m WHERE series_id = ANY(%s) "
                         "AND bucket >= %s AND bucket < %s GROUP BY 1",
                         (self._ids(name), start, end))
            self._cache[key] = {sid: Fit(slope, n, first, last) for sid, slope, n, first, last in found}
        return self._cache[key]

    def increase(self, name: str, seconds: float) -> dict[int, float]:
        """How much each counter rose over the last ``seconds`` (a reset counts as a new start)."""
        key = ("inc", name, seconds)
        if key not in self._cache:
            found = rows(self.conn,
                         "SELECT series_id, sum(GREATEST(d, 0)) FROM ("
                         " SELECT series_id, value - lag(value) OVER (PARTITION BY series_id ORDER BY ts) AS d"
                         " FROM samples WHERE series_id = ANY(%s) AND ts > %s AND ts <= %s) AS deltas "
                         "WHERE d IS NOT NULL GROUP BY 1",
                         (self._ids(name), self.now - timedelta(seconds=seconds), self.now))
            self._cache[key] = {sid: value for sid, value in found}
        return self._cache[key]

    def unchanged_since(self, name: str, seconds: float) -> dict[int, datetime | None]:
        """When each series last had a value other than its newest one, within ``seconds``.

        None when every sample of the window equals the newest value and the window is covered
        (the value has not changed for at least ``seconds``); series with too little history for the
        window are left out.
        """
        key = ("chg", name, seconds)
        if key not in self._cache:
            start = self.now - timedelta(seconds=seconds)
            found = rows(self.conn,
                         "SELECT s.series_id, max(s.ts) FILTER (WHERE s.value <> l.value), min(s.ts) "
                         "FROM samples s JOIN latest l ON l.series_id = s.series_id "
                         "WHERE s.series_id = ANY(%s) AND s.ts > %s AND s.ts <= %s GROUP BY 1",
                         (self._ids(name), start, self.now))
            out: dict[int, datetime | None] = {}
            for sid, changed, oldest in found:
                if changed is not None:
                    out[sid] = changed
                elif (oldest - start).total_seconds() <= STALE_GRACE_SECONDS:
                    out[sid] = None
            self._cache[key] = out
        return self._cache[key]

    # -- rollups ---------------------------------------------------------------------------------

    def rollup_avg(self, name: str, start: datetime, end: datetime) -> dict[int, tuple[float, int]]:
        """Mean of each series between ``start`` and ``end`` and the minutes that had data: 1-minute
        rollups where they exist, raw samples for the newest stretch the rollup has not reached."""
        key = ("ravg", name, start, end)
        if key not in self._cache:
            found = rows(
                self.conn,
                "WITH done AS (SELECT COALESCE((SELECT done_until FROM rollup_state WHERE resolution = '1m'),"
                " %(start)s) AS until) "
                "SELECT series_id, sum(s) / NULLIF(sum(c), 0), sum(m)::int FROM ("
                " SELECT series_id, sum(sum) AS s, sum(count) AS c, count(*) AS m FROM samples_1m, done"
                " WHERE series_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < LEAST(%(end)s, done.until)"
                " GROUP BY 1"
                " UNION ALL"
                " SELECT series_id, sum(value), count(*), count(DISTINCT date_trunc('minute', ts)) FROM samples, done"
                " WHERE series_id = ANY(%(ids)s) AND ts >= GREATEST(%(start)s, done.until) AND ts < %(end)s"
                " GROUP BY 1"
                ") AS parts GROUP BY 1",
                {"ids": self._ids(name), "start": start, "end": end})
            self._cache[key] = {sid: (avg, minutes) for sid, avg, minutes in found if avg is not None}
        return self._cache[key]

    # -- events and other tables -----------------------------------------------------------------

    def events(self, kinds: list[str], since: datetime) -> list[tuple[str, str, str, datetime, dict[str, Any]]]:
        """(host, event_id, kind, ts, data) of the given kinds since ``since``, oldest first."""
        key = ("events", tuple(kinds), since)
        if key not in self._cache:
            self._cache[key] = rows(self.conn,
                                    "SELECT h.name, e.event_id, e.kind, e.ts, e.data FROM events e "
                                    "JOIN hosts h ON h.id = e.host_id WHERE e.kind = ANY(%s) AND e.ts >= %s "
                                    "AND e.ts <= %s ORDER BY e.ts",
                                    (kinds, since, self.now))
        return self._cache[key]

    def has_table(self, name: str) -> bool:
        key = ("table", name)
        if key not in self._cache:
            self._cache[key] = rows(self.conn, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]
        return self._cache[key]
