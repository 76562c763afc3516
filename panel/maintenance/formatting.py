"""Template filters of the maintenance pages (times are shown in UTC, like the rest of the panel)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint
from markupsafe import Markup, escape

from panel.hosts.formatting import human_age
from panel.maintenance.store import duration_seconds

DASH = "\u2014"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def maint_time(value: Any) -> str:
    ts = _as_datetime(value)
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else DASH


def maint_age(value: Any) -> str:
    ts = _as_datetime(value)
    if ts is None:
        return "never"
    return human_age((datetime.now(UTC) - ts).total_seconds())


def maint_wait(job: dict[str, Any]) -> float | None:
    if job.get("started_at") and job.get("requested_at"):
        return max(0.0, (job["started_at"] - job["requested_at"]).total_seconds())
    return None


def maint_placeholders(text: str) -> Markup:
    """A catalogue ``explains`` text with its ``{param}`` fields shown as the parameter's name."""
    parts = _PLACEHOLDER.split(text)
    out = [escape(part) if i % 2 == 0 else Markup("<i>") + escape(part.replace("_", " ")) + Markup("</i>")
           for i, part in enumerate(parts)]
    return Markup("").join(out)


def register_filters(bp: Blueprint) -> None:
    bp.add_app_template_filter(maint_time, "maint_time")
    bp.add_app_template_filter(maint_age, "maint_age")
    bp.add_app_template_filter(duration_seconds, "maint_duration")
    bp.add_app_template_filter(maint_wait, "maint_wait")
    bp.add_app_template_filter(maint_placeholders, "maint_placeholders")
