"""The rule editor's preview: how often a rule, as edited, would have fired over the last days.

Threshold-like types replay their state machine over the 1-minute rollups (see ``replay``); event
types count their events; the others say why they cannot be previewed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from panel.alerts.identity import alert_labels
from panel.alerts.matchers import all_match
from panel.alerts.replay import replay
from panel.alerts.rules import Rule
from panel.hosts.formatting import human_seconds

PREVIEW_DAYS = 7
SHOWN_LABEL_SETS = 8


def preview(conn: psycopg.Connection, rule: Rule, *, days: int = PREVIEW_DAYS, now: datetime | None = None
            ) -> dict[str, Any]:
    """``{"supported": bool, "text": "...", "fired": n, ...}`` for the page and the API."""
    kind = rule.kind
    end = now or datetime.now(UTC)
    start = end - timedelta(days=days)
    span = f"the last {days} days"
    if kind.history is None:
        return {"supported": False, "text": f"No preview for {kind.title.lower()}. {kind.limits}".strip()}
    found = kind.history(conn, rule, start, end)
    if found is None:
        return {"supported": False, "text": "No preview: the data this rule reads does not exist here yet."}
    if isinstance(found, int):
        return {"supported": True, "fired": found, "series": None, "days": days,
                "text": f"Would have fired {found} time{'s' * (found != 1)} in {span} (from the stored history)."}
    if kind.judge is None:
        return {"supported": False, "text": f"No preview for {kind.title.lower()}."}

    def watched(labels: dict[str, str]) -> bool:
        return all_match(rule.parsed_matchers, alert_labels(rule, labels))

    result = replay(found, kind.judge, rule.params, rule.for_seconds, rule.keep_firing_seconds, watched)
    if result.series == 0:
        return {"supported": True, "fired": 0, "series": 0, "days": days,
                "text": f"No history in {span} for what this rule watches: nothing to replay."}
    text = (f"Would have fired {result.fired} time{'s' * (result.fired != 1)} in {span} on "
            f"{result.series} label set{'s' * (result.series != 1)}")
    if result.fired:
        text += f", firing {human_seconds(result.firing_seconds)} in all"
    text += f"; {result.firing_now} firing at the end." if result.firing_now else "."
    return {
        "supported": True, "fired": result.fired, "series": result.series, "days": days,
        "firing_seconds": result.firing_seconds, "firing_now": result.firing_now, "text": text,
        "by_labels": [{"labels": item["labels"], "fired": item["fired"],
                       "firing_seconds": round(item["firing_seconds"])}
                      for item in result.by_labels[:SHOWN_LABEL_SETS]],
    }
