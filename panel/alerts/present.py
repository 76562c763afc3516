"""How an alert reads: its value in the rule type's unit, and the rule's annotation templates."""

from __future__ import annotations

import re
from typing import Any

from panel.hosts.formatting import human_bytes, human_count, human_hashrate, human_percent, human_seconds

DASH = "—"
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def value_text(value: float | None, unit: str) -> str:
    """``83.2`` in percent -> "83.2 %"; days -> "3.2 days"; bytes/h -> "120.0 MiB/h"."""
    if value is None:
        return DASH
    if unit == "percent":
        return human_percent(value)
    if unit == "bytes":
        return human_bytes(value)
    if unit == "bytes/h":
        return human_bytes(value) + "/h"
    if unit == "seconds":
        return human_seconds(value)
    if unit == "hashrate":
        return human_hashrate(value)
    if unit == "days":
        return f"{value:.1f} days"
    if unit == "hours":
        return f"{value:.1f} h"
    if unit == "blocks":
        return f"{human_count(value)} blocks"
    if unit == "count":
        return human_count(value)
    if unit == "updown":
        return "up" if value >= 1 else "down"
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def render(template: str, fields: dict[str, Any]) -> str:
    """``"{mount} on {host} at {value}"`` with the alert's fields; an unknown ``{name}`` stays as written."""
    return _FIELD.sub(lambda m: str(fields[m[1]]) if m[1] in fields else m[0], template)


def annotations(rule_annotations: dict[str, str], summary: str, description: str, labels: dict[str, str],
                value: float | None, unit: str) -> dict[str, str]:
    """The type's summary and description, or the rule's templates filled with labels, value and those texts."""
    fields = {**labels, "value": value_text(value, unit), "raw_value": "" if value is None else f"{value:g}",
              "type_summary": summary, "type_description": description}
    out = {"summary": summary, "description": description}
    for key, template in rule_annotations.items():
        out[key] = render(template, fields)
    return out
