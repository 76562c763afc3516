"""The dispatcher: from the alerts table to notifications, with Alertmanager's noise control.

Each turn (``dispatch``, run by the engine every second through ``tick``):

1. Every firing alert is routed (first matching route, more while ``continue``) into the
   aggregation group of its route and ``group_by`` label values.
2. Alerts silenced, snoozed or suppressed by a firing cause (``inhibit``) are muted.
3. A new group waits ``group_wait`` before its first notification; after that it is looked at
   every ``group_interval`` (and dropped at the first look that finds it empty with nothing to
   tell, so a group notifies at most once per ``group_interval``). It notifies when an alert
   appeared that the channels were not told about (or that comes back from a silence, snooze or
   suppression), when an alert they were told about resolved (resolutions are never muted), or,
   after ``repeat_interval``, to repeat what still fires. Acknowledged alerts do not trigger
   notifications and are not repeated, but ride along (marked) in the group's next one, and their
   resolution is sent.
4. A notification carries every firing and resolved alert of its group; one row per channel is
   written in ``notifications`` and queued on RQ (``jobs.enqueue``) after the commit.

Comparisons are by fingerprint, so an alert that flaps (a new episode row each time) is told at
most once per ``group_interval``. ``now`` is a parameter so tests and the storm benchmark can
drive time.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from panel.notify import inhibit
from panel.notify.silences import Silence, live_silences
from panel.notify.store import Route, load_routes, rows, scalar

log = logging.getLogger(__name__)

DISPATCH_LOCK_KEY = 0x706F6F6C6E6F7466   # "poolnotf": one dispatcher at a time across engines
MAX_ALERTS_PER_NOTIFICATION = 1000
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

ALERT_COLUMNS = ("id, fingerprint, labels, annotations, state, severity, value, active_since, fired_at, resolved_at,"
                 " acknowledged_at, acknowledged_by, snoozed_until")


@dataclass(slots=True)
class AlertRow:
    id: int
    fingerprint: str
    labels: dict[str, Any]
    annotations: dict[str, Any]
    state: str
    severity: str | None
    value: float | None
    active_since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    snoozed_until: datetime | None

    @property
    def acked(self) -> bool:
        return self.acknowledged_at is not None


@dataclass
class Group:
    id: int
    route_id: int
    group_key: str
    group_labels: dict[str, str]
    created_at: datetime
    next_flush_at: datetime
    last_flush_at: datetime | None
    last_notified_at: datetime | None
    notified: dict[str, dict[str, Any]]
    notifications: int


@dataclass
class DispatchReport:
    skipped: bool = False
    firing: int = 0
    muted: int = 0
    groups: int = 0
    flushed: int = 0
    notifications: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _load_alerts(conn, where: str, params: tuple = ()) -> list[AlertRow]:
    return [AlertRow(**row) for row in rows(conn, f"SELECT {ALERT_COLUMNS} FROM alerts {where}", params)]


def _load_groups(conn) -> list[Group]:
    return [Group(**row) for row in rows(conn, "SELECT id, route_id, group_key, group_labels, created_at,"
                                               " next_flush_at, last_flush_at, last_notified_at, notified,"
                                               " notifications FROM notify_groups")]


def mute_reasons(firing: list[AlertRow], silences: list[Silence], now: datetime) -> dict[str, str]:
    """``{fingerprint: why}`` for firing alerts not to notify now: silenced, snoozed or suppressed."""
    reasons = {fp: f"suppressed: {why}" for fp, why in inhibit.suppressed(firing).items()}
    for alert in firing:
        if alert.snoozed_until is not None and alert.snoozed_until > now:
            reasons.setdefault(alert.fingerprint, f"snoozed until {_iso(alert.snoozed_until)}")
            continue
        for silence in silences:
            if silence.matches(alert.labels):
                reasons[alert.fingerprint] = f"silenced by silence {silence.id}"
                break
    return reasons


def _alert_json(alert: AlertRow, status: str, external_url: str | None) -> dict[str, Any]:
    return {
        "id": alert.id, "fingerprint": alert.fingerprint, "status": status,
        "severity": alert.severity or alert.labels.get("severity"), "labels": alert.labels,
        "annotations": alert.annotations or {}, "value": alert.value,
        "startsAt": _iso(alert.fired_at or alert.active_since), "endsAt": _iso(alert.resolved_at),
        "acknowledged": alert.acked, "acknowledgedBy": alert.acknowledged_by,
        "url": f"{external_url}/alerts/{alert.id}" if external_url else None,
    }


def _common(items: list[dict[str, Any]]) -> dict[str, Any]:
    if not items:
        return {}
    common = dict(items[0])
    for item in items[1:]:
        common = {k: v for k, v in common.items() if item.get(k) == v}
    return common


def build_payload(route: Route, group: Group, firing: list[AlertRow], resolved: list[AlertRow], now: datetime,
                  external_url: str | None) -> dict[str, Any]:
    """The channel-independent part of the documented JSON (receiver and key are added per channel)."""
    firing = sorted(firing, key=lambda a: (-SEVERITY_RANK.get(a.severity or "", 0), a.fingerprint))
    resolved = sorted(resolved, key=lambda a: a.fingerprint)
    alerts = [_alert_json(a, "firing", external_url) for a in firing]
    alerts += [_alert_json(a, "resolved", external_url) for a in resolved]
    pool = firing or resolved
    severity = max((a.severity or "info" for a in pool), key=lambda s: SEVERITY_RANK.get(s, 0), default="info")
    return {
        "version": "1", "kind": "alerts", "status": "firing" if firing else "resolved", "severity": severity,
        "route": route.name, "groupKey": f"{route.name}:{group.group_key}", "groupLabels": group.group_labels,
        "commonLabels": _common([a.labels for a in firing + resolved]),
        "commonAnnotations": _common([a.annotations or {} for a in firing + resolved]),
        "counts": {"firing": len(firing), "resolved": len(resolved),
                   "acknowledged": sum(1 for a in firing if a.acked)},
        "alerts": alerts[:MAX_ALERTS_PER_NOTIFICATION],
        "truncatedAlerts": max(0, len(alerts) - MAX_ALERTS_PER_NOTIFICATION),
        "externalUrl": external_url, "createdAt": _iso(now),
    }


class _Turn:
    """One dispatcher turn inside one transaction."""

    def __init__(self, conn, now: datetime, external_url: str | None):
        self.conn, self.now, self.external_url = conn, now, external_url
        self.report = DispatchReport()
        self.enabled = {r["id"]: r["name"] for r in rows(conn, "SELECT id, name FROM integrations WHERE enabled")}

    def run(self) -> DispatchReport:
        conn, now = self.conn, self.now
        routes = load_routes(conn)
        by_id = {r.id: r for r in routes}
        firing = _load_alerts(conn, "WHERE state = 'firing'")
        self.report.firing = len(firing)
        groups = _load_groups(conn)
        firing_fps = {a.fingerprint for a in firing}
        wanted = {entry["id"] for g in groups for fp, entry in g.notified.items() if fp not in firing_fps}
        self.tracked = {a.id: a for a in _load_alerts(conn, "WHERE id = ANY(%s)", (sorted(wanted),))} \
            if wanted else {}
        silences = [s for s in live_silences(conn, now) if s.in_force(now)]
        self.muted = mute_reasons(firing, silences, now)
        self.report.muted = len(self.muted)

        members: dict[tuple[int, str], list[AlertRow]] = defaultdict(list)
        labels_of: dict[tuple[int, str], dict[str, str]] = {}
        for alert in firing:
            for route in routes:
                if route.matches(alert.labels, alert.severity):
                    key, group_labels = route.group_of(alert.labels)
                    members[(route.id, key)].append(alert)
                    labels_of[(route.id, key)] = group_labels
                    if not route.continue_matching:
                        break

        existing = {(g.route_id, g.group_key): g for g in groups}
        for key, alerts in members.items():
            if key in existing or all(a.fingerprint in self.muted for a in alerts):
                continue
            route = by_id[key[0]]
            first_flush = now + timedelta(seconds=route.group_wait)
            group_id = scalar(conn, "INSERT INTO notify_groups (route_id, group_key, group_labels, created_at,"
                                    " next_flush_at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                              (route.id, key[1], Jsonb(labels_of[key]), now, first_flush))
            existing[key] = Group(group_id, route.id, key[1], labels_of[key], now, first_flush, None, None, {}, 0)
        self.report.groups = len(existing)

        for key, group in existing.items():
            route = by_id.get(group.route_id)
            if route is None or group.next_flush_at > now:
                continue
            self.flush(route, group, members.get(key, []))
            self.report.flushed += 1
        return self.report

    def flush(self, route: Route, group: Group, current: list[AlertRow]) -> None:
        conn, now, notified = self.conn, self.now, group.notified
        by_fp = {a.fingerprint: a for a in current}
        visible = [a for a in current if a.fingerprint not in self.muted]
        resolved = []
        for fp, entry in notified.items():
            if fp in by_fp:
                continue
            row = self.tracked.get(entry["id"])
            if row is not None and row.state == "resolved":
                resolved.append(row)
        news = [a for a in visible if not a.acked
                and (a.fingerprint not in notified or notified[a.fingerprint].get("muted"))]
        repeat = (group.last_notified_at is not None
                  and now - group.last_notified_at >= timedelta(seconds=route.repeat_interval)
                  and any(not a.acked for a in visible))
        send = bool(news or resolved or repeat)

        if send:
            new_state = {a.fingerprint: {"id": a.id, "acked": a.acked, "muted": False} for a in visible}
            for fp, entry in notified.items():
                if fp in by_fp and fp in self.muted:
                    new_state[fp] = {**entry, "id": by_fp[fp].id, "muted": True}
            self.notify(route, group, visible, resolved)
        else:
            new_state = {fp: {**entry, "muted": bool(entry.get("muted")) or fp in self.muted}
                         for fp, entry in notified.items() if fp in by_fp}

        if not current and not new_state and not send:
            # empty at two flushes in a row: gone. (Kept one interval after its last notification, so an
            # alert that comes straight back joins it and waits group_interval, not group_wait.)
            conn.execute("DELETE FROM notify_groups WHERE id = %s", (group.id,))
            return
        conn.execute(
            "UPDATE notify_groups SET last_flush_at = %s, next_flush_at = %s, notified = %s,"
            " last_notified_at = CASE WHEN %s THEN %s ELSE last_notified_at END,"
            " notifications = notifications + CASE WHEN %s THEN 1 ELSE 0 END WHERE id = %s",
            (now, now + timedelta(seconds=route.group_interval), Jsonb(new_state), send, now, send, group.id))

    def notify(self, route: Route, group: Group, firing: list[AlertRow], resolved: list[AlertRow]) -> None:
        base = build_payload(route, group, firing, resolved, self.now, self.external_url)
        sequence = group.notifications + 1
        fingerprints = sorted({a.fingerprint for a in firing} | {a.fingerprint for a in resolved})
        for integration_id in route.integration_ids:
            name = self.enabled.get(integration_id)
            if name is None:
                continue
            key = f"g{group.id}-n{sequence}-c{integration_id}"
            payload = {**base, "receiver": name, "idempotencyKey": key}
            notification_id = scalar(
                self.conn, "INSERT INTO notifications (idempotency_key, kind, group_id, route_name, integration_id,"
                " integration_name, severity, firing, resolved, fingerprints, payload, created_at)"
                " VALUES (%s, 'alerts', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (key, group.id, route.name, integration_id, name, base["severity"], len(firing), len(resolved),
                 fingerprints, Jsonb(payload), self.now))
            self.report.notifications.append(notification_id)


def dispatch(conn, *, now: datetime | None = None, enqueue: Callable[[list[int]], Any] | None = None,
             external_url: str | None = None) -> DispatchReport:
    """One dispatcher turn at ``now`` (default: the clock). ``enqueue`` gets the new notification ids
    after the commit (None leaves them queued in the table, e.g. for a test that delivers by hand)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    with conn.transaction():
        locked = scalar(conn, "SELECT pg_try_advisory_xact_lock(%s)", (DISPATCH_LOCK_KEY,))
        if not locked:
            return DispatchReport(skipped=True)
        report = _Turn(conn, now, external_url).run()
    if enqueue is not None and report.notifications:
        enqueue(report.notifications)
    report.seconds = time.perf_counter() - started
    if report.notifications:
        log.info("dispatcher: %d firing (%d muted), %d groups, %d flushed, %d notifications queued in %.3f s",
                 report.firing, report.muted, report.groups, report.flushed, len(report.notifications),
                 report.seconds)
    return report
