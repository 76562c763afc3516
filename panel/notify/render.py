"""Human-readable forms of a notification payload: the e-mail subject, plain text and HTML.

Rendered in the worker from the stored payload, without a Flask app (the HTML template lives in
``panel/templates/notify/email.html`` and is rendered with its own autoescaping Jinja environment).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
MAX_SUBJECT = 160


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("panel", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def counts_text(payload: dict[str, Any]) -> str:
    counts = payload.get("counts") or {}
    parts = []
    if counts.get("firing"):
        parts.append(f"{counts['firing']} firing")
    if counts.get("resolved"):
        parts.append(f"{counts['resolved']} resolved")
    return ", ".join(parts) or "no alerts"


def title(payload: dict[str, Any]) -> str:
    """What the group is about: its alert name and host when common to all, else the group labels."""
    common = payload.get("commonLabels") or {}
    name = common.get("alertname")
    host = common.get("host")
    if name and host:
        return f"{name} on {host}"
    if name:
        return str(name)
    labels = payload.get("groupLabels") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "alerts"


def subject(payload: dict[str, Any]) -> str:
    if payload.get("kind") == "test":
        return f"[poolwarden] Test notification for {payload.get('receiver', 'this channel')}"
    severity = str(payload.get("severity") or "info").upper()
    state = "RESOLVED" if payload.get("status") == "resolved" else severity
    text = f"[poolwarden] {state}: {counts_text(payload)} - {title(payload)}"
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1] + "…"


def _alert_line(alert: dict[str, Any]) -> list[str]:
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    state = alert.get("status", "firing").upper()
    if alert.get("acknowledged"):
        state += " (acknowledged" + (f" by {alert['acknowledgedBy']}" if alert.get("acknowledgedBy") else "") + ")"
    head = f"[{state}] {labels.get('alertname', '?')}"
    if labels.get("host"):
        head += f" on {labels['host']}"
    lines = [head]
    if annotations.get("summary"):
        lines.append(f"  {annotations['summary']}")
    if annotations.get("description"):
        lines.append(f"  {annotations['description']}")
    if alert.get("value") is not None:
        lines.append(f"  value: {alert['value']:g}" if isinstance(alert["value"], int | float)
                     else f"  value: {alert['value']}")
    when = f"  since {alert.get('startsAt') or '?'}"
    if alert.get("endsAt"):
        when += f", resolved {alert['endsAt']}"
    lines.append(when)
    lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if alert.get("url"):
        lines.append(f"  {alert['url']}")
    return lines


def text(payload: dict[str, Any]) -> str:
    if payload.get("kind") == "test":
        return (f"This is a test notification from poolwarden for the channel {payload.get('receiver')}.\n"
                f"Sent at {payload.get('createdAt')}. If you read this, the channel works.\n")
    lines = [subject(payload).removeprefix("[poolwarden] "), ""]
    for status in ("firing", "resolved"):
        alerts = [a for a in payload.get("alerts", []) if a.get("status") == status]
        if not alerts:
            continue
        lines.append(f"{status.capitalize()} ({len(alerts)}):")
        for alert in alerts:
            lines.extend(_alert_line(alert))
        lines.append("")
    if payload.get("truncatedAlerts"):
        lines.append(f"... and {payload['truncatedAlerts']} more alerts not listed here.")
    if payload.get("externalUrl"):
        lines.append(f"Panel: {payload['externalUrl']}")
    lines.append(f"Route {payload.get('route')}, group {payload.get('groupKey')}.")
    return "\n".join(lines) + "\n"


def html(payload: dict[str, Any]) -> str:
    alerts = payload.get("alerts", [])
    return _env().get_template("notify/email.html").render(
        payload=payload, subject=subject(payload), title=title(payload), counts=counts_text(payload),
        firing=[a for a in alerts if a.get("status") == "firing"],
        resolved=[a for a in alerts if a.get("status") == "resolved"])
