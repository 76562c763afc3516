"""Helpers for the notification tests: alerts written as the evaluator writes them, channels and routes.

``AlertTable`` fires and resolves alerts in the real ``alerts`` table (one row per episode, the
labels every alert carries). ``T0`` is a fixed instant the dispatcher tests drive time from.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def _next_monday_noon() -> datetime:
    now = datetime.now(UTC)
    return (now + timedelta(days=(7 - now.weekday()) % 7 or 7)).replace(hour=12, minute=0, second=0, microsecond=0)


T0 = _next_monday_noon()  # a Monday noon UTC in the near future: silences made for it are valid now
TEST_SECRETS_KEY = base64.b64encode(bytes(range(32))).decode()
COMPONENTS = {"disk_space": "disk", "pool_down": "pool", "node_down": "node", "node_sync_lag": "node",
              "agent_silent": "agent", "pool_hashrate_drop": "pool", "database_down": "database",
              "cpu_high": "system"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fingerprint(labels: dict) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


class AlertTable:
    def __init__(self, dsn: str):
        self.conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
        self.rules: dict[str, int] = {}

    def close(self) -> None:
        self.conn.close()

    def rule(self, name: str, rule_type: str, severity: str) -> int:
        if name not in self.rules:
            self.rules[name] = self.conn.execute(
                "INSERT INTO alert_rules (name, type, severity) VALUES (%s, %s, %s) RETURNING id",
                (name, rule_type, severity)).fetchone()["id"]
        return self.rules[name]

    def labels(self, alertname: str, host: str, severity: str, rule_type: str, **extra) -> dict:
        component = extra.pop("component", COMPONENTS.get(rule_type, "system"))
        return {"alertname": alertname, "rule_type": rule_type, "severity": severity, "host": host,
                "component": component, **{k: str(v) for k, v in extra.items()}}

    def fire(self, alertname: str = "DiskFull", host: str = "pool-1", severity: str = "warning",
             rule_type: str = "disk_space", when: datetime = T0, summary: str | None = None, **extra) -> int:
        labels = self.labels(alertname, host, severity, rule_type, **extra)
        rule_id = self.rule(alertname, rule_type, severity)
        return self.conn.execute(
            "INSERT INTO alerts (rule_id, fingerprint, labels, annotations, state, severity, value, active_since,"
            " fired_at, last_eval_at) VALUES (%s, %s, %s, %s, 'firing', %s, 93.5, %s, %s, %s) RETURNING id",
            (rule_id, fingerprint(labels), Jsonb(labels),
             Jsonb({"summary": summary or f"{alertname} on {host}", "description": "details"}), severity,
             when, when, when)).fetchone()["id"]

    def resolve(self, alert_id: int, when: datetime) -> None:
        self.conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = %s, last_eval_at = %s WHERE id = %s",
                          (when, when, alert_id))

    def pending(self, alertname: str = "DiskFull", host: str = "pool-1", severity: str = "warning",
                rule_type: str = "disk_space", when: datetime = T0, **extra) -> int:
        labels = self.labels(alertname, host, severity, rule_type, **extra)
        return self.conn.execute(
            "INSERT INTO alerts (rule_id, fingerprint, labels, state, severity, active_since, last_eval_at)"
            " VALUES (%s, %s, %s, 'pending', %s, %s, %s) RETURNING id",
            (self.rule(alertname, rule_type, severity), fingerprint(labels), Jsonb(labels), severity, when,
             when)).fetchone()["id"]


def notifications(dsn: str) -> list[dict]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM notifications WHERE kind = 'alerts' ORDER BY id").fetchall()


def alert_states(notification: dict) -> dict[str, set[str]]:
    """``{"firing": {alertname@host...}, "resolved": {...}}`` of a notification's payload."""
    out: dict[str, set[str]] = {"firing": set(), "resolved": set()}
    for alert in notification["payload"]["alerts"]:
        out[alert["status"]].add(f"{alert['labels']['alertname']}@{alert['labels']['host']}")
    return out


def make_channel(conn, name: str = "ops-hook", url: str = "http://127.0.0.1:9/hook", secret: str = "s3cret",  # noqa: S107
                 **extra):
    from panel.notify.store import save_integration

    return save_integration(conn, name=name, kind="webhook", values={"url": url, "secret": secret, **extra},
                            enabled=True, by="test")


def make_route(conn, channels: list[str], name: str = "all", **fields) -> int:
    from panel.notify.store import route_spec, save_route

    raw = {"name": name, "integrations": channels, "groupWaitSeconds": 30, "groupIntervalSeconds": 300,
           "repeatIntervalSeconds": 3600, **fields}
    return save_route(conn, route_spec(raw), by="test")
