"""Reading alerts for the pages and the API: the open ones, the history with filters, one alert with
its timeline, and the same JSON shape everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from panel.alerts.data import rows
from panel.alerts.present import value_text
from panel.alerts.types import TYPES
from panel.alerts.types.base import COMPONENTS, SEVERITIES

STATES = ("pending", "firing", "resolved")
COLUMNS = sql.SQL(
    "a.id, a.rule_id, r.name AS rule, r.type AS rule_type, a.fingerprint, a.labels, a.annotations, a.state,"
    " a.severity, a.value, a.active_since, a.fired_at, a.resolved_at, a.last_eval_at, a.acknowledged_at,"
    " a.acknowledged_by, a.snoozed_until, a.snoozed_by")
SEVERITY_ORDER = sql.SQL("CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END")
HISTORY_PAGE = 50
MAX_LIMIT = 5000


class BadFilter(ValueError):
    """A filter value the pages show and the API answers with 400."""


@dataclass
class Filters:
    states: tuple[str, ...] = ()
    severity: str | None = None
    rule: str | None = None
    host: str | None = None
    component: str | None = None
    since: date | None = None
    until: date | None = None
    text: str | None = None
    fired_only: bool = False

    @classmethod
    def from_args(cls, args, *, allow_resolved: bool = True) -> Filters:
        """From a query string; BadFilter names the argument and what it accepts."""
        states = tuple(s for s in (args.get("state") or "").split(",") if s)
        allowed = STATES if allow_resolved else STATES[:2]
        for state in states:
            if state not in allowed:
                raise BadFilter(f"state: {state!r} is not one of {', '.join(allowed)} (several: a,b)")
        severity = args.get("severity") or None
        if severity is not None and severity not in SEVERITIES:
            raise BadFilter(f"severity: must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        component = args.get("component") or None
        if component is not None and component not in COMPONENTS:
            raise BadFilter(f"component: must be one of {', '.join(COMPONENTS)}, not {component!r}")
        texts = {}
        for key in ("rule", "host", "q"):
            value = (args.get(key) or "").strip()
            if "\x00" in value or len(value) > 200:
                raise BadFilter(f"{key}: at most 200 characters, no NUL")
            texts[key] = value or None
        dates = {}
        for key in ("since", "until"):
            raw = (args.get(key) or "").strip()
            try:
                dates[key] = date.fromisoformat(raw) if raw else None
            except ValueError:
                raise BadFilter(f"{key}: a date like 2026-11-20, not {raw!r}") from None
        fired = (args.get("fired") or "").lower()
        if fired not in ("", "0", "1", "true", "false"):
            raise BadFilter("fired: 1 (only alerts that fired) or 0")
        return cls(states, severity, texts["rule"], texts["host"], component, dates["since"], dates["until"],
                   texts["q"], fired in ("1", "true"))

    def where(self) -> tuple[sql.Composable, dict[str, Any]]:
        parts: list[sql.Composable] = [sql.SQL("true")]
        params: dict[str, Any] = {}
        if self.states:
            parts.append(sql.SQL("a.state = ANY(%(states)s)"))
            params["states"] = list(self.states)
        if self.severity:
            parts.append(sql.SQL("a.severity = %(severity)s"))
            params["severity"] = self.severity
        if self.rule:
            parts.append(sql.SQL("r.name = %(rule)s"))
            params["rule"] = self.rule
        if self.host:
            parts.append(sql.SQL("a.labels @> %(host)s::jsonb"))
            params["host"] = Jsonb({"host": self.host})
        if self.component:
            parts.append(sql.SQL("a.labels @> %(component)s::jsonb"))
            params["component"] = Jsonb({"component": self.component})
        if self.since:
            parts.append(sql.SQL("a.active_since >= %(since)s"))
            params["since"] = datetime.combine(self.since, time.min, tzinfo=UTC)
        if self.until:
            parts.append(sql.SQL("a.active_since < %(until)s"))
            params["until"] = datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)
        if self.text:
            parts.append(sql.SQL("(strpos(lower(a.labels::text), lower(%(q)s)) > 0"
                                 " OR strpos(lower(a.annotations->>'summary'), lower(%(q)s)) > 0)"))
            params["q"] = self.text
        if self.fired_only:
            parts.append(sql.SQL("a.fired_at IS NOT NULL"))
        return sql.SQL(" AND ").join(parts), params

    def args(self) -> dict[str, str]:
        """The filters as query arguments (for links that keep them)."""
        out = {"state": ",".join(self.states), "severity": self.severity, "rule": self.rule, "host": self.host,
               "component": self.component, "since": self.since.isoformat() if self.since else None,
               "until": self.until.isoformat() if self.until else None, "q": self.text,
               "fired": "1" if self.fired_only else None}
        return {k: v for k, v in out.items() if v}


def active(conn: psycopg.Connection, filters: Filters, limit: int = 500, offset: int = 0
           ) -> tuple[list[dict[str, Any]], int]:
    """Open alerts (firing first, then by severity, newest first) and how many match in all."""
    where, params = filters.where()
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(sql.SQL(
            "SELECT {cols}, count(*) OVER () AS total FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
            "WHERE a.state <> 'resolved' AND {where} "
            "ORDER BY (a.state = 'firing') DESC, {sev}, a.active_since DESC, a.id DESC"
            " LIMIT %(limit)s OFFSET %(offset)s"
        ).format(cols=COLUMNS, where=where, sev=SEVERITY_ORDER),
            {**params, "limit": limit, "offset": offset}).fetchall()
        total = found[0]["total"] if found else (
            cur.execute(sql.SQL("SELECT count(*) AS n FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
                                "WHERE a.state <> 'resolved' AND {}").format(where), params).fetchone()["n"]
            if offset else 0)
    return found, total


def history(conn: psycopg.Connection, filters: Filters, page: int = 1, per_page: int = HISTORY_PAGE
            ) -> tuple[list[dict[str, Any]], bool]:
    """Alerts of every state, newest first; and whether there is a next page."""
    where, params = filters.where()
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(sql.SQL(
            "SELECT {cols} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE {where} "
            "ORDER BY a.active_since DESC, a.id DESC LIMIT %(limit)s OFFSET %(offset)s"
        ).format(cols=COLUMNS, where=where), {**params, "limit": per_page + 1,
                                              "offset": (page - 1) * per_page}).fetchall()
    return found[:per_page], len(found) > per_page


def one(conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT {cols} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
                                   "WHERE a.id = %s").format(cols=COLUMNS), (alert_id,)).fetchone()


def timeline(conn: psycopg.Connection, alert_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT id, from_state, to_state, at, value, note FROM alert_transitions "
                           "WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()


def earlier_episodes(conn: psycopg.Connection, alert: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
    """Other alerts of the same rule and label set (the same fingerprint), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL(
            "SELECT {cols} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE a.rule_id = %s "
            "AND a.fingerprint = %s AND a.id <> %s ORDER BY a.active_since DESC LIMIT %s").format(cols=COLUMNS),
            (alert["rule_id"], alert["fingerprint"], alert["id"], limit)).fetchall()


def counts(conn: psycopg.Connection) -> dict[str, Any]:
    """Open alerts by state and severity, and a stamp that changes whenever any of them does."""
    values = rows(conn,
                  "SELECT count(*) FILTER (WHERE state = 'firing' AND severity = 'critical'),"
                  " count(*) FILTER (WHERE state = 'firing' AND severity = 'warning'),"
                  " count(*) FILTER (WHERE state = 'firing' AND severity = 'info'),"
                  " count(*) FILTER (WHERE state = 'pending'),"
                  " max(GREATEST(acknowledged_at, snoozed_until)) FROM alerts WHERE state <> 'resolved'")[0]
    newest_id = rows(conn, "SELECT max(id) FROM alert_transitions")[0][0]
    stamp = values[4]
    return {"critical": values[0], "warning": values[1], "info": values[2], "pending": values[3],
            "layout": f"{newest_id or 0}:{stamp.timestamp() if stamp else 0:.0f}:{sum(values[:4])}"}


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    """One alert as the API gives it."""
    kind = TYPES.get(row["rule_type"])
    return {
        "id": row["id"], "rule": row["rule"], "rule_id": row["rule_id"], "rule_type": row["rule_type"],
        "fingerprint": row["fingerprint"], "state": row["state"], "severity": row["severity"],
        "labels": row["labels"], "annotations": row["annotations"], "value": row["value"],
        "value_text": value_text(row["value"], kind.unit if kind else ""),
        "active_since": iso(row["active_since"]), "fired_at": iso(row["fired_at"]),
        "resolved_at": iso(row["resolved_at"]), "last_eval_at": iso(row["last_eval_at"]),
        "acknowledged_at": iso(row["acknowledged_at"]), "acknowledged_by": row["acknowledged_by"],
        "snoozed_until": iso(row["snoozed_until"]), "snoozed_by": row["snoozed_by"],
    }


def transition_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "from": row["from_state"], "to": row["to_state"], "at": iso(row["at"]),
            "value": row["value"], "note": row["note"]}
