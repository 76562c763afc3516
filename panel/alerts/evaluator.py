"""Alert evaluation: every few seconds the engine judges every enabled rule against the newest data
and moves each alert through pending -> firing -> resolved, storing every transition.

For one rule and one label set (fingerprint) there is at most one open alert:

* a **breach** (firing threshold crossed) with no open alert starts one, ``pending`` (or ``firing``
  at once when the rule's ``for`` is 0);
* ``pending`` becomes ``firing`` once the condition has **held** for ``for``; a pending alert whose
  condition clears first is resolved without ever firing;
* a ``firing`` alert stays while the condition holds (past the clear threshold: hysteresis); once it
  no longer holds it stays firing for ``keepFiringFor`` more (a return of the condition cancels
  that), then resolves. A label set that is no longer reported (a mount gone) clears the same way.
* a firing alert whose severity changes (disk usage reaching critical) stays the same alert; the
  change is stored as a firing -> firing transition.

Alerts of a host the engine has not heard from for ``STALE_AFTER_SECONDS`` neither start nor resolve
(their data is old); ``agent_silent`` says so. All writes of one evaluation are one transaction,
done in a few set-based statements, followed by ``NOTIFY poolwarden_alerts`` with the newest
transition id when anything changed, so the notifier can react at once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from panel.alerts.config import ConfigInvalid, builtin_rules, dumps, export_document
from panel.alerts.data import EvalData, rows
from panel.alerts.identity import alert_labels, fingerprint
from panel.alerts.matchers import all_match
from panel.alerts.present import annotations
from panel.alerts.rules import Rule
from panel.alerts.store import load_rules, provision, provision_file
from panel.alerts.types.base import SEVERITIES, Observation

log = logging.getLogger(__name__)

EVALUATION_LOCK_KEY = 0x706F6F6C616C7274   # "poolalrt": one evaluation at a time across engines
NOTIFY_CHANNEL = "poolwarden_alerts"
VALUE_REFRESH_SECONDS = 30                 # an open alert's stored value is refreshed this often
PROVISION_CHECK_SECONDS = 10               # how often the rules file is looked at for changes
DEFAULT_EVALUATE_SECONDS = 5.0
AFTER_INGEST_SECONDS = 0.25                # new batches are judged at once, at most this often
BUILTIN = "(built-in rules)"


def config_path(config: Mapping[str, Any]) -> str | None:
    """The rules file: ALERTS_CONFIG in the panel's config, else POOLWARDEN_ALERTS_CONFIG; None: the built-ins."""
    path = config.get("ALERTS_CONFIG") or os.environ.get("POOLWARDEN_ALERTS_CONFIG", "").strip()
    return path or None


def evaluate_every(config: Mapping[str, Any]) -> float:
    raw = config.get("ALERTS_EVALUATE_SECONDS") or os.environ.get("POOLWARDEN_ALERTS_EVALUATE_SECONDS", "")
    try:
        return max(1.0, float(raw)) if raw else DEFAULT_EVALUATE_SECONDS
    except ValueError:
        log.error("POOLWARDEN_ALERTS_EVALUATE_SECONDS=%r is not a number: using %s", raw, DEFAULT_EVALUATE_SECONDS)
        return DEFAULT_EVALUATE_SECONDS


@dataclass
class OpenAlert:
    id: int
    rule_id: int
    fingerprint: str
    host: str | None
    state: str
    severity: str
    value: float | None
    active_since: datetime
    fired_at: datetime | None
    cleared_since: datetime | None
    last_eval_at: datetime


@dataclass
class Changes:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (alert id, or ("new", index in inserts), from, to, at, value, note)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class Report:
    skipped: bool = False
    rules: int = 0
    evaluated: int = 0
    observations: int = 0
    open_alerts: int = 0
    created: int = 0
    fired: int = 0
    resolved: int = 0
    updated: int = 0
    transitions: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # For the engine's task runner: evaluate again when the first pending alert's ``for`` (or a
    # keep-firing countdown) ends, and let the notifier tell what changed in the same round.
    run_again_in: float | None = None

    @property
    def wake(self) -> tuple[str, ...]:
        return ("notify",) if self.transitions else ()

    def line(self) -> str:
        if self.skipped:
            return "another evaluation holds the lock: skipped"
        took = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in self.seconds.items())
        return (f"{self.evaluated}/{self.rules} rules, {self.observations} label sets, {self.open_alerts} open; "
                f"{self.created} new, {self.fired} fired, {self.resolved} resolved, {self.updated} refreshed"
                + (f"; {len(self.errors)} rules failed" if self.errors else "") + f" ({took})")


def _rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


class Evaluator:
    """Keeps what must survive between evaluations: when each rule last ran, the file last imported."""

    def __init__(self, *, stale_after: float = 60.0, rules_path: str | None = None, provision_rules: bool = True):
        self.stale_after = stale_after
        self.rules_path = rules_path
        self.provision_rules = provision_rules
        self._last_run: dict[int, tuple[datetime, datetime | None]] = {}   # rule id -> (evaluated at, updated_at)
        self._file_stamp: tuple[float, int] | None = None
        self._checksum: str | None = None
        self._next_file_check = 0.0
        self._last_refusal: str | None = None

    # -- the engine's task ------------------------------------------------------------------------

    def tick(self, ctx) -> Report:
        """``PeriodicTask.run``: import the rules file when it changed, then evaluate."""
        if self.provision_rules:
            self.provision_if_changed(ctx.conn)
        report = self.evaluate(ctx.conn)
        level = logging.INFO if report.created or report.fired or report.resolved or report.errors else logging.DEBUG
        log.log(level, "alerts: %s", report.line())
        return report

    def provision_if_changed(self, conn: psycopg.Connection) -> None:
        if time.monotonic() < self._next_file_check:
            return
        self._next_file_check = time.monotonic() + PROVISION_CHECK_SECONDS
        if self.rules_path is None:
            if self._checksum is None:
                rules = builtin_rules()
                import hashlib

                self._checksum = hashlib.sha256(dumps(export_document(rules)).encode()).hexdigest()
                report = provision(conn, rules, path=BUILTIN, checksum=self._checksum)
                log.info("alert rules: built-in rules provisioned (%s); set POOLWARDEN_ALERTS_CONFIG to use a file",
                         report.line())
            return
        try:
            stat = Path(self.rules_path).stat()
            stamp = (stat.st_mtime, stat.st_size)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._file_stamp:
            return
        try:
            report = provision_file(conn, self.rules_path, known_checksum=self._checksum)
        except ConfigInvalid as exc:
            if str(exc) != self._last_refusal:
                log.error("alert rules: %s", exc)
                self._last_refusal = str(exc)
            self._file_stamp = stamp
            return
        self._file_stamp, self._last_refusal = stamp, None
        if report is not None:
            self._checksum = rows(conn, "SELECT checksum FROM alert_provisioning WHERE id = 1")[0][0]
            log.info("alert rules: imported %s (%s)", self.rules_path, report.line())

    # -- one evaluation ---------------------------------------------------------------------------

    def evaluate(self, conn: psycopg.Connection, now: datetime | None = None, *, every_rule: bool = False) -> Report:
        """Judge every due rule (``every_rule``: all enabled rules) and store what changed."""
        report = Report()
        clock = time.perf_counter()
        with conn.transaction():
            if not rows(conn, "SELECT pg_try_advisory_xact_lock(%s)", (EVALUATION_LOCK_KEY,))[0][0]:
                report.skipped = True
                return report
            now = now or rows(conn, "SELECT clock_timestamp()")[0][0]
            rules = load_rules(conn)
            report.rules = len(rules)
            due = [r for r in rules if r.enabled and (every_rule or self._due(r, now))]
            data = EvalData(conn, now, self.stale_after)
            needed: set[str] = set()
            for rule in due:
                needed |= rule.kind.latest_metrics(rule.params)
            data.load_latest(needed)
            open_alerts = self._open_alerts(conn)
            report.open_alerts = sum(len(v) for v in open_alerts.values())
            data.open_severities = {(rid, fp): a.severity for rid, by_fp in open_alerts.items()
                                    for fp, a in by_fp.items()}
            report.seconds["read"] = time.perf_counter() - clock

            clock = time.perf_counter()
            changes = Changes()
            errors: dict[int, str | None] = {}
            for rule in due:
                try:
                    with conn.transaction():   # a savepoint: a failing rule's query leaves the others alone
                        observations = rule.kind.observe(data, rule)
                except Exception as exc:  # noqa: BLE001 - one rule's failure is reported, never the evaluation's
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                    log.warning("alert rule %s failed: %s", rule.name, message, exc_info=rule.last_error is None)
                    errors[rule.id] = message
                    report.errors[rule.name] = message
                    continue
                if rule.last_error is not None:
                    errors[rule.id] = None
                report.evaluated += 1
                report.observations += len(observations)
                self._reconcile(rule, observations, open_alerts.get(rule.id, {}), now, data, changes, report)
                self._last_run[rule.id] = (now, rule.updated_at)
            for rule in rules:
                if not rule.enabled:
                    for alert in open_alerts.get(rule.id, {}).values():
                        self._resolve(alert, now, "the rule was disabled", changes, report)
            report.seconds["judge"] = time.perf_counter() - clock

            clock = time.perf_counter()
            self._write(conn, changes, report)
            for rule_id, message in errors.items():
                conn.execute("UPDATE alert_rules SET last_error = %s, last_error_at = %s WHERE id = %s",
                             (message, now if message else None, rule_id))
            report.seconds["write"] = time.perf_counter() - clock
            report.run_again_in = self._next_deadline(conn, {r.id: r for r in rules}, now)
        return report

    def _next_deadline(self, conn: psycopg.Connection, rules: dict[int, Rule], now: datetime) -> float | None:
        """Seconds until a pending alert's ``for`` or a kept-firing alert's countdown ends, when its rule
        will be due then (None: nothing to wait for: the regular cadence covers the rest). A deadline
        this evaluation already judged (a silent host's alert) waits for the cadence."""
        found = rows(conn, "SELECT a.rule_id, min(CASE WHEN a.state = 'pending'"
                           " THEN a.active_since + make_interval(secs => r.for_seconds)"
                           " ELSE a.cleared_since + make_interval(secs => r.keep_firing_seconds) END),"
                           " clock_timestamp() FROM alerts a JOIN alert_rules r ON r.id = a.rule_id"
                           " WHERE a.state = 'pending' OR (a.state = 'firing' AND a.cleared_since IS NOT NULL)"
                           " GROUP BY a.rule_id")
        soonest: float | None = None
        for rule_id, at, clock in found:
            rule, last = rules.get(rule_id), self._last_run.get(rule_id)
            if rule is None or not rule.enabled or last is None:
                continue
            at = max(at, last[0] + timedelta(seconds=max(0.0, rule.kind.every_seconds - 0.5)))
            if at <= now:
                continue
            wait = max(0.0, (at - clock).total_seconds())   # it may have passed while this evaluation ran
            if soonest is None or wait < soonest:
                soonest = wait
        return None if soonest is None else soonest + 0.02

    def _due(self, rule: Rule, now: datetime) -> bool:
        last = self._last_run.get(rule.id)
        if last is None or last[1] != rule.updated_at:
            return True
        return (now - last[0]).total_seconds() >= rule.kind.every_seconds - 0.5

    def _open_alerts(self, conn: psycopg.Connection) -> dict[int, dict[str, OpenAlert]]:
        found = rows(conn, "SELECT id, rule_id, fingerprint, labels->>'host', state, severity, value, active_since,"
                           " fired_at, cleared_since, last_eval_at FROM alerts WHERE state <> 'resolved'")
        out: dict[int, dict[str, OpenAlert]] = {}
        for row in found:
            alert = OpenAlert(*row)
            out.setdefault(alert.rule_id, {})[alert.fingerprint] = alert
        return out

    # -- the state machine ------------------------------------------------------------------------

    def _reconcile(self, rule: Rule, observations: list[Observation], open_alerts: dict[str, OpenAlert],
                   now: datetime, data: EvalData, changes: Changes, report: Report) -> None:
        kind = rule.kind
        frozen = set() if kind.judges_silent_hosts else data.frozen_hosts
        seen: set[str] = set()
        for obs in observations:
            labels = alert_labels(rule, obs.labels)
            fp = fingerprint(labels)
            if fp in seen:
                continue
            if obs.labels.get("host") in frozen:
                seen.add(fp)   # its alert (if any) keeps its state
                continue
            if not all_match(rule.parsed_matchers, labels):
                continue
            seen.add(fp)
            severity = obs.severity if _rank(obs.severity) > _rank(rule.severity) else rule.severity
            labels["severity"] = severity
            alert = open_alerts.get(fp)
            if alert is None:
                if obs.breach:
                    self._start(rule, fp, labels, obs, severity, now, changes, report)
                continue
            if obs.held:
                self._hold(rule, alert, labels, obs, severity, now, changes, report)
            else:
                self._clear(rule, alert, obs.value, now, "the condition cleared", changes, report)
        for fp, alert in open_alerts.items():
            if fp not in seen and alert.host not in frozen:
                self._clear(rule, alert, alert.value, now, "no longer reported", changes, report)

    def _texts(self, rule: Rule, labels: dict[str, str], obs: Observation) -> dict[str, str]:
        return annotations(rule.annotations, obs.summary, obs.description, labels, obs.value, rule.kind.unit)

    def _start(self, rule: Rule, fp: str, labels: dict[str, str], obs: Observation, severity: str, now: datetime,
               changes: Changes, report: Report) -> None:
        firing = rule.for_seconds == 0
        index = len(changes.inserts)
        changes.inserts.append({
            "rule_id": rule.id, "fingerprint": fp, "labels": labels, "annotations": self._texts(rule, labels, obs),
            "state": "firing" if firing else "pending", "severity": severity, "value": obs.value,
            "active_since": now, "fired_at": now if firing else None, "last_eval_at": now})
        note = obs.summary[:500]
        changes.transitions.append((("new", index), None, "firing" if firing else "pending", now, obs.value, note))
        report.created += 1
        report.fired += int(firing)

    def _hold(self, rule: Rule, alert: OpenAlert, labels: dict[str, str], obs: Observation, severity: str,
              now: datetime, changes: Changes, report: Report) -> None:
        update: dict[str, Any] = {}
        if alert.cleared_since is not None:
            update["cleared_since"] = None
        if alert.state == "pending" and (now - alert.active_since).total_seconds() >= rule.for_seconds:
            update.update(state="firing", fired_at=now)
            held = timedelta(seconds=int((now - alert.active_since).total_seconds()))
            changes.transitions.append((alert.id, "pending", "firing", now, obs.value, f"held for {held}"))
            report.fired += 1
        if severity != alert.severity:
            update["severity"] = severity
            if alert.state == "firing" or update.get("state") == "firing":
                changes.transitions.append((alert.id, "firing", "firing", now, obs.value,
                                            f"severity {alert.severity} -> {severity}"))
        if update or (now - alert.last_eval_at).total_seconds() >= VALUE_REFRESH_SECONDS:
            update.update(labels=labels, annotations=self._texts(rule, labels, obs))
            self._update(alert, update, obs.value, now, changes, report)

    def _clear(self, rule: Rule, alert: OpenAlert, value: float | None, now: datetime, why: str, changes: Changes,
               report: Report) -> None:
        if alert.state == "firing" and rule.keep_firing_seconds:
            if alert.cleared_since is None:
                self._update(alert, {"cleared_since": now}, value, now, changes, report)
                return
            if (now - alert.cleared_since).total_seconds() < rule.keep_firing_seconds:
                return
            why = f"{why}; kept firing for {timedelta(seconds=rule.keep_firing_seconds)}"
        elif alert.state == "pending":
            why = f"{why} before it fired"
        self._resolve(alert, now, why, changes, report, value)

    def _resolve(self, alert: OpenAlert, now: datetime, why: str, changes: Changes, report: Report,
                 value: float | None = None) -> None:
        value = alert.value if value is None else value
        self._update(alert, {"state": "resolved", "resolved_at": now}, value, now, changes, report)
        changes.transitions.append((alert.id, alert.state, "resolved", now, value, why))
        report.resolved += 1

    def _update(self, alert: OpenAlert, update: dict[str, Any], value: float | None, now: datetime,
                changes: Changes, report: Report) -> None:
        entry = changes.updates.setdefault(alert.id, {"state": alert.state, "severity": alert.severity})
        entry.update(update, value=value, last_eval_at=now)
        report.updated += 1

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, conn: psycopg.Connection, changes: Changes, report: Report) -> None:
        new_ids: list[int] = []
        if changes.inserts:
            cols = ("rule_id", "fingerprint", "labels", "annotations", "state", "severity", "value", "active_since",
                    "fired_at", "last_eval_at")
            arrays = {c: [row[c] for row in changes.inserts] for c in cols}
            for c in ("labels", "annotations"):
                arrays[c] = [json.dumps(v) for v in arrays[c]]
            arrays["value"] = _floats(arrays["value"])
            found = rows(conn,
                         "INSERT INTO alerts (rule_id, fingerprint, labels, annotations, state, severity, value,"
                         " active_since, fired_at, last_eval_at) "
                         "SELECT * FROM unnest(%s::int[], %s::text[], %s::jsonb[], %s::jsonb[], %s::text[],"
                         " %s::text[], %s::float8[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[])"
                         " RETURNING id, rule_id, fingerprint",
                         [arrays[c] for c in cols])
            by_key = {(rule_id, fp): alert_id for alert_id, rule_id, fp in found}
            new_ids = [by_key[(row["rule_id"], row["fingerprint"])] for row in changes.inserts]
        if changes.updates:
            ids = list(changes.updates)
            u = [changes.updates[i] for i in ids]
            conn.execute(
                "UPDATE alerts a SET state = t.state, severity = t.severity, value = t.value,"
                " last_eval_at = t.ev, labels = COALESCE(t.labels::jsonb, a.labels),"
                " annotations = COALESCE(t.ann::jsonb, a.annotations), fired_at = COALESCE(a.fired_at, t.fired),"
                " resolved_at = COALESCE(t.resolved, a.resolved_at),"
                " cleared_since = CASE WHEN t.set_cleared THEN t.cleared ELSE a.cleared_since END "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::timestamptz[], %s::text[],"
                " %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bool[], %s::timestamptz[])"
                " AS t(id, state, severity, value, ev, labels, ann, fired, resolved, set_cleared, cleared) "
                "WHERE a.id = t.id",
                (ids, [x["state"] for x in u], [x["severity"] for x in u], _floats([x["value"] for x in u]),
                 [x["last_eval_at"] for x in u],
                 [json.dumps(x["labels"]) if "labels" in x else None for x in u],
                 [json.dumps(x["annotations"]) if "annotations" in x else None for x in u],
                 [x.get("fired_at") for x in u], [x.get("resolved_at") for x in u],
                 ["cleared_since" in x for x in u], [x.get("cleared_since") for x in u]))
        if changes.transitions:
            alert_ids = [new_ids[t[0][1]] if isinstance(t[0], tuple) else t[0] for t in changes.transitions]
            found = rows(conn,
                         "INSERT INTO alert_transitions (alert_id, from_state, to_state, at, value, note) "
                         "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[],"
                         " %s::float8[], %s::text[]) RETURNING id",
                         (alert_ids, [t[1] for t in changes.transitions], [t[2] for t in changes.transitions],
                          [t[3] for t in changes.transitions], _floats([t[4] for t in changes.transitions]),
                          [t[5] for t in changes.transitions]))
            report.transitions = len(found)
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(max(row[0] for row in found))))


def _floats(values: list[Any]) -> list[float | None]:
    """Values as one array type (psycopg refuses a list mixing int and float)."""
    return [None if v is None else float(v) for v in values]


def make_task(config: Mapping[str, Any]):
    """The engine's periodic task (``panel.engine.tasks.default_tasks`` adds it)."""
    from panel.engine.tasks import PeriodicTask

    evaluator = Evaluator(stale_after=float(config.get("STALE_AFTER_SECONDS") or 60), rules_path=config_path(config))
    return PeriodicTask("alerts", evaluate_every(config), evaluator.tick, after_ingest=AFTER_INGEST_SECONDS)
