"""Acknowledge and snooze an alert (the ``acknowledged_*`` and ``snoozed_*`` columns of ``alerts``).

Acknowledging says "someone is on it": the alert no longer triggers notifications nor repeats,
and its resolution is still sent. Snoozing mutes it for a number of minutes; if it still fires
when the snooze ends it is notified again. Both are audited and only apply to an open alert.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from panel.notify.store import rows

MAX_SNOOZE_MINUTES = 7 * 24 * 60


class AlertActionError(Exception):
    """The action cannot be done; ``status`` is the HTTP answer (404 or 409 or 400)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _alert(conn, alert_id: int) -> dict[str, Any]:
    if not 0 < alert_id < 2**63:
        raise AlertActionError(f"no alert {alert_id}", 404)
    found = rows(conn, "SELECT id, state, labels, acknowledged_at, acknowledged_by, snoozed_until, snoozed_by"
                       " FROM alerts WHERE id = %s FOR UPDATE", (alert_id,))
    if not found:
        raise AlertActionError(f"no alert {alert_id}", 404)
    if found[0]["state"] == "resolved":
        raise AlertActionError(f"alert {alert_id} is resolved already: nothing to quiet", 409)
    return found[0]


def view(row: dict[str, Any]) -> dict[str, Any]:
    def iso(value):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    return {"id": row["id"], "state": row["state"], "acknowledgedAt": iso(row["acknowledged_at"]),
            "acknowledgedBy": row["acknowledged_by"], "snoozedUntil": iso(row["snoozed_until"]),
            "snoozedBy": row["snoozed_by"]}


def acknowledge(conn, alert_id: int, by: str) -> dict[str, Any]:
    """Mark an open alert acknowledged (again is harmless: the first acknowledgement is kept)."""
    from panel.audit import record_event

    with conn.transaction():
        alert = _alert(conn, alert_id)
        if alert["acknowledged_at"] is None:
            alert = rows(conn, "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = %s WHERE id = %s"
                               " RETURNING id, state, acknowledged_at, acknowledged_by, snoozed_until, snoozed_by",
                         (by, alert_id))[0]
            record_event("alert.acknowledge", "alert", str(alert_id), conn=conn, actor=by)
    return view(alert)


def snooze(conn, alert_id: int, minutes: object, by: str) -> dict[str, Any]:
    """Mute an open alert for ``minutes`` (1 to 7 days) from now."""
    from panel.audit import record_event

    try:
        minutes = int(str(minutes).strip())
    except ValueError:
        raise AlertActionError(f"minutes must be a whole number, got {minutes!r}", 400) from None
    if not 1 <= minutes <= MAX_SNOOZE_MINUTES:
        raise AlertActionError(f"minutes must be between 1 and {MAX_SNOOZE_MINUTES} (7 days), got {minutes}", 400)
    until = datetime.now(UTC) + timedelta(minutes=minutes)
    with conn.transaction():
        _alert(conn, alert_id)
        alert = rows(conn, "UPDATE alerts SET snoozed_until = %s, snoozed_by = %s WHERE id = %s"
                           " RETURNING id, state, acknowledged_at, acknowledged_by, snoozed_until, snoozed_by",
                     (until, by, alert_id))[0]
        record_event("alert.snooze", "alert", str(alert_id), conn=conn, actor=by, minutes=minutes,
                     until=until.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return view(alert)
