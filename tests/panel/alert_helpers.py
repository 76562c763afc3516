"""Helpers for the alert tests: hosts and samples written as the engine writes them (series, samples,
latest, hosts.last_seen/last_batch_ts), rules through the real config parser, evaluations at chosen times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from panel.alerts.config import parse_rule
from panel.alerts.evaluator import Evaluator, Report
from panel.alerts.store import configure, load_rules

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class Feed:
    """Writes what an agent's batches would leave in the panel database, at explicit times."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._series: dict[tuple[str, str, str], int] = {}

    def host(self, name: str, at: datetime) -> int:
        """The host, seen by the engine at ``at`` (panel clock) with a batch of that time."""
        return self.conn.execute(
            "INSERT INTO hosts (name, first_seen, last_seen, last_batch_ts) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, "
            "last_batch_ts = GREATEST(hosts.last_batch_ts, excluded.last_batch_ts) RETURNING id",
            (name, at, at, at)).fetchone()[0]

    def series(self, host: str, name: str, labels: dict[str, str] | None = None) -> int:
        key = (host, name, json.dumps(labels or {}, sort_keys=True))
        if key not in self._series:
            host_id = self.conn.execute("SELECT id FROM hosts WHERE name = %s", (host,)).fetchone()
            if host_id is None:
                host_id = (self.host(host, T0 - timedelta(days=30)),)
            self._series[key] = self.conn.execute(
                "INSERT INTO series (host_id, name, labels) VALUES (%s, %s, %s::jsonb) "
                "ON CONFLICT (host_id, name, labels) DO UPDATE SET name = excluded.name RETURNING id",
                (host_id[0], name, key[2])).fetchone()[0]
        return self._series[key]

    def sample(self, host: str, name: str, value: float, at: datetime, labels: dict[str, str] | None = None,
               *, seen: bool = True) -> int:
        """One sample (and the latest value); ``seen``: the host counts as reporting at ``at``."""
        sid = self.series(host, name, labels)
        self.conn.execute("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                          (sid, at, value))
        self.conn.execute("INSERT INTO latest (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT (series_id) "
                          "DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE latest.ts <= excluded.ts",
                          (sid, at, value))
        if seen:
            self.host(host, at)
        return sid

    def history(self, host: str, name: str, points: list[tuple[datetime, float]],
                labels: dict[str, str] | None = None) -> int:
        """Many samples at once (the newest becomes the latest value)."""
        sid = self.series(host, name, labels)
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                            [(sid, ts, v) for ts, v in points])
        newest = max(points)
        self.conn.execute("INSERT INTO latest (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT (series_id) "
                          "DO UPDATE SET ts = excluded.ts, value = excluded.value", (sid, newest[0], newest[1]))
        self.host(host, newest[0])
        return sid

    def event(self, host: str, event_id: str, kind: str, at: datetime, data: dict[str, Any]) -> None:
        host_id = self.conn.execute("SELECT id FROM hosts WHERE name = %s", (host,)).fetchone()[0]
        self.conn.execute("INSERT INTO events (host_id, event_id, kind, ts, data) VALUES (%s, %s, %s, %s, %s::jsonb)",
                          (host_id, event_id, kind, at, json.dumps(data)))


def add_rule(conn: psycopg.Connection, name: str, rule_type: str, **body: Any) -> int:
    """A rule made outside the file, through the same parser alerts.json goes through."""
    rule, problems = parse_rule(name, {"type": rule_type, **body}, f"alerts.{name}")
    assert not problems, problems
    others = [r for r in load_rules(conn) if not r.provisioned and r.name != name]
    configure(conn, [*others, rule], actor="test", replace=True)
    return conn.execute("SELECT id FROM alert_rules WHERE name = %s", (name,)).fetchone()[0]


def run(evaluator: Evaluator, conn: psycopg.Connection, at: datetime) -> Report:
    report = evaluator.evaluate(conn, at, every_rule=True)
    assert not report.errors, report.errors
    return report


def alerts(conn: psycopg.Connection, rule: str | None = None) -> list[dict[str, Any]]:
    """Every alert row (of ``rule``), oldest first, as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT a.*, r.name AS rule FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
            "WHERE %(rule)s::text IS NULL OR r.name = %(rule)s ORDER BY a.id", {"rule": rule}).fetchall()


def open_alerts(conn: psycopg.Connection, rule: str | None = None) -> list[dict[str, Any]]:
    return [a for a in alerts(conn, rule) if a["state"] != "resolved"]


def transitions(conn: psycopg.Connection, alert_id: int) -> list[tuple[str | None, str]]:
    return [tuple(row) for row in conn.execute(
        "SELECT from_state, to_state FROM alert_transitions WHERE alert_id = %s ORDER BY id", (alert_id,))]
