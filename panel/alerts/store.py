"""Alert rules in the database: provisioning from alerts.json, rules made in the UI or the API, and
what the last import of the file did. Every change is audited in the same transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from panel import audit
from panel.alerts.config import ConfigInvalid, read_file
from panel.alerts.data import rows
from panel.alerts.rules import Rule
from panel.alerts.types import TYPES

log = logging.getLogger(__name__)

RULE_COLUMNS = ("id, name, type, params, severity, for_seconds, keep_firing_seconds, labels, annotations, matchers, "
                "enabled, provisioned, created_at, updated_at, updated_by, last_error, last_error_at")


class RuleRefused(ValueError):
    """A change to the rules that cannot be made (a provisioned rule, a name taken)."""


def load_rules(conn: psycopg.Connection) -> list[Rule]:
    """Every rule whose type this version knows, by name."""
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY name").fetchall()
    rules = []
    for row in found:
        if row["type"] not in TYPES:
            log.warning("alert rule %s has the unknown type %r: skipped", row["name"], row["type"])
            continue
        rules.append(Rule.from_row(row))
    return rules


def get_rule(conn: psycopg.Connection, rule_id: int) -> Rule | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = %s", (rule_id,)).fetchone()
    return Rule.from_row(row) if row and row["type"] in TYPES else None


def _values(rule: Rule) -> dict[str, Any]:
    return {"name": rule.name, "type": rule.type, "params": Jsonb(rule.params), "severity": rule.severity,
            "for_seconds": rule.for_seconds, "keep_firing_seconds": rule.keep_firing_seconds,
            "labels": Jsonb(rule.labels), "annotations": Jsonb(rule.annotations), "matchers": Jsonb(rule.matchers),
            "enabled": rule.enabled}


def _insert(conn: psycopg.Connection, rule: Rule, provisioned: bool, actor: str) -> int:
    return rows(
        conn,
        "INSERT INTO alert_rules (name, type, params, severity, for_seconds, keep_firing_seconds, labels, annotations,"
        " matchers, enabled, provisioned, updated_by) VALUES (%(name)s, %(type)s, %(params)s, %(severity)s,"
        " %(for_seconds)s, %(keep_firing_seconds)s, %(labels)s, %(annotations)s, %(matchers)s, %(enabled)s,"
        " %(provisioned)s, %(actor)s) RETURNING id",
        {**_values(rule), "provisioned": provisioned, "actor": actor})[0][0]


def _update(conn: psycopg.Connection, rule_id: int, rule: Rule, provisioned: bool, actor: str) -> None:
    conn.execute(
        "UPDATE alert_rules SET name = %(name)s, type = %(type)s, params = %(params)s, severity = %(severity)s,"
        " for_seconds = %(for_seconds)s, keep_firing_seconds = %(keep_firing_seconds)s, labels = %(labels)s,"
        " annotations = %(annotations)s, matchers = %(matchers)s, enabled = %(enabled)s,"
        " provisioned = %(provisioned)s, updated_at = now(), updated_by = %(actor)s, last_error = NULL,"
        " last_error_at = NULL WHERE id = %(id)s",
        {**_values(rule), "provisioned": provisioned, "actor": actor, "id": rule_id})


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def line(self) -> str:
        parts = [f"{len(self.created)} created", f"{len(self.updated)} updated", f"{len(self.removed)} removed",
                 f"{self.unchanged} unchanged"]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged}


def _sync(conn: psycopg.Connection, wanted: list[Rule], *, provisioned: bool, actor: str, remove_missing: bool,
          report: SyncReport) -> None:
    """Make the rules of one origin (provisioned or not) those of ``wanted``."""
    existing = {rule.name: rule for rule in load_rules(conn)}
    for rule in wanted:
        current = existing.get(rule.name)
        if current is None:
            _insert(conn, rule, provisioned, actor)
            report.created.append(rule.name)
        elif current.definition() != rule.definition() or current.provisioned != provisioned:
            _update(conn, current.id, rule, provisioned, actor)
            report.updated.append(rule.name)
        else:
            report.unchanged += 1
    if remove_missing:
        names = {rule.name for rule in wanted}
        gone = [r.name for r in existing.values() if r.provisioned == provisioned and r.name not in names]
        if gone:
            conn.execute("DELETE FROM alert_rules WHERE name = ANY(%s) AND provisioned = %s", (gone, provisioned))
            report.removed += gone


def provision(conn: psycopg.Connection, rules: list[Rule], *, path: str, checksum: str | None,
              actor: str = "system") -> SyncReport:
    """Make the provisioned rules exactly ``rules`` (a rule made in the UI under the same name is taken
    over by the file), record the import, audit what changed."""
    report = SyncReport()
    with conn.transaction():
        _sync(conn, rules, provisioned=True, actor=actor, remove_missing=True, report=report)
        conn.execute(
            "INSERT INTO alert_provisioning (id, path, checksum, applied_at, checked_at, error)"
            " VALUES (1, %(path)s, %(sum)s, now(), now(), NULL) ON CONFLICT (id) DO UPDATE SET path = %(path)s,"
            " checksum = %(sum)s, applied_at = now(), checked_at = now(), error = NULL",
            {"path": path, "sum": checksum})
        if report.created or report.updated or report.removed:
            audit.record_event("alerts.provision", "alert_rules", path, actor=actor, conn=conn, **report.as_dict())
    return report


def record_refusal(conn: psycopg.Connection, path: str, error: str, actor: str = "system") -> None:
    """Keep why a file was refused (the rules page shows it); the rules themselves are left alone."""
    with conn.transaction():
        found = rows(conn, "SELECT error FROM alert_provisioning WHERE id = 1")
        previous = found[0] if found else None
        conn.execute(
            "INSERT INTO alert_provisioning (id, path, checked_at, error) VALUES (1, %(path)s, now(), %(error)s)"
            " ON CONFLICT (id) DO UPDATE SET path = %(path)s, checked_at = now(), error = %(error)s",
            {"path": path, "error": error})
        if previous is None or previous[0] != error:
            audit.record_event("alerts.provision_refused", "alert_rules", path, actor=actor, conn=conn, error=error)


def provision_file(conn: psycopg.Connection, path: str, *, actor: str = "system",
                   known_checksum: str | None = None) -> SyncReport | None:
    """Import the rules of a file as provisioned rules; None when its checksum is ``known_checksum``.

    A file that cannot be used raises ConfigInvalid after recording why: the rules stay as they are.
    """
    try:
        rules, checksum = read_file(path)
    except ConfigInvalid as exc:
        record_refusal(conn, path, str(exc), actor)
        raise
    if known_checksum is not None and checksum == known_checksum:
        return None
    return provision(conn, rules, path=path, checksum=checksum, actor=actor)


def provisioning_status(conn: psycopg.Connection) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT path, checksum, applied_at, checked_at, error FROM alert_provisioning "
                           "WHERE id = 1").fetchone()


def configure(conn: psycopg.Connection, rules: list[Rule], *, actor: str, replace: bool) -> SyncReport:
    """Rules sent to the API (or imported in the UI): they become the rules made outside the file
    (``replace``: those not named are removed). A name of a provisioned rule is refused."""
    provisioned = {r.name for r in load_rules(conn) if r.provisioned}
    taken = [(f"alerts.{r.name}", "is provisioned from the configuration file: change it there") for r in rules
             if r.name in provisioned]
    if taken:
        raise ConfigInvalid(taken, "the rules")
    report = SyncReport()
    with conn.transaction():
        _sync(conn, rules, provisioned=False, actor=actor, remove_missing=replace, report=report)
        audit.record_event("alerts.configure", "alert_rules", None, actor=actor, conn=conn, replace=replace,
                           **report.as_dict())
    return report


def save_rule(conn: psycopg.Connection, rule: Rule, *, actor: str, rule_id: int | None = None) -> int:
    """Create (``rule_id`` None) or change a rule made in the UI; provisioned rules are refused."""
    with conn.transaction():
        found = rows(conn, "SELECT id, provisioned FROM alert_rules WHERE name = %s", (rule.name,))
        clash = found[0] if found else None
        if clash and clash[0] != rule_id:
            raise RuleRefused(f"a rule named {rule.name!r} exists already")
        if rule_id is None:
            rule_id = _insert(conn, rule, False, actor)
            audit.record_event("alerts.rule_create", "alert_rule", str(rule_id), actor=actor, conn=conn,
                               after={"name": rule.name, **rule.as_config()})
            return rule_id
        before = get_rule(conn, rule_id)
        if before is None:
            raise RuleRefused("the rule does not exist any more")
        if before.provisioned:
            raise RuleRefused(f"{before.name} is provisioned from the configuration file: change it there")
        _update(conn, rule_id, rule, False, actor)
        audit.record_event("alerts.rule_update", "alert_rule", str(rule_id), actor=actor, conn=conn,
                           before={"name": before.name, **before.as_config()},
                           after={"name": rule.name, **rule.as_config()})
        return rule_id


def delete_rule(conn: psycopg.Connection, rule_id: int, *, actor: str) -> Rule:
    """Delete a rule made in the UI, its alerts with it."""
    with conn.transaction():
        rule = get_rule(conn, rule_id)
        if rule is None:
            raise RuleRefused("the rule does not exist any more")
        if rule.provisioned:
            raise RuleRefused(f"{rule.name} is provisioned from the configuration file: remove it there")
        conn.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,))
        audit.record_event("alerts.rule_delete", "alert_rule", str(rule_id), actor=actor, conn=conn,
                           before={"name": rule.name, **rule.as_config()})
    return rule
