"""Disk rules: usage per mount (warning, then critical), the "full in under N days" forecast naming
the component that grows fastest, and components growing far above their own recent rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from panel.alerts.types.base import (
    Graph,
    Observation,
    Param,
    RuleType,
    order_problem,
    register,
    rising,
)
from panel.hosts.formatting import human_bytes, human_seconds

DAY = 86400


# -- usage ----------------------------------------------------------------------------------------


def _usage_judge(value: float, params: dict[str, Any], severity: str | None) -> tuple[bool, bool, str | None]:
    breach, held = rising(value, params["warningPercent"], params["clearPercent"])
    margin = params["warningPercent"] - params["clearPercent"]
    critical_clear = params["criticalPercent"] - margin if severity == "critical" else None
    critical = rising(value, params["criticalPercent"], critical_clear)[1 if severity == "critical" else 0]
    return breach, held, "critical" if critical else None


def _mount_percents(data) -> dict[tuple[str, str], tuple[Any, float]]:
    """(host, mount) -> (point, percent used as df shows it)."""
    out: dict[tuple[str, str], tuple[Any, float]] = {}
    for key, point in data.by_label("poolwarden_disk_used_percent", "mount").items():
        out[key] = (point, point.value)
    used = data.by_label("poolwarden_disk_used_bytes", "mount")
    free = data.by_label("poolwarden_disk_free_bytes", "mount")
    total = data.by_label("poolwarden_disk_total_bytes", "mount")
    for key, point in used.items():
        if key in out:
            continue
        # As df counts it: used / (used + available); the size only when "available" is not reported.
        if key in free and point.value + free[key].value > 0:
            out[key] = (point, point.value / (point.value + free[key].value) * 100)
        elif key in total and total[key].value > 0:
            out[key] = (point, point.value / total[key].value * 100)
    return out


def _disk_usage(data, rule) -> list[Observation]:
    p = rule.params
    free = data.by_label("poolwarden_disk_free_bytes", "mount")
    out = []
    for (host, mount), (_point, percent) in sorted(_mount_percents(data).items()):
        labels = {"host": host, "mount": mount}
        breach, held, severity = _usage_judge(percent, p, data.open_severity(rule, labels))
        left = f" ({human_bytes(free[(host, mount)].value)} free)" if (host, mount) in free else ""
        out.append(Observation(
            labels, round(percent, 1), breach, held, severity=severity,
            summary=f"Disk {mount} on {host} is {percent:.0f} % full{left}",
            description=f"Warning at {p['warningPercent']} %, critical at {p['criticalPercent']} %. When the disk "
                        "fills, PostgreSQL stops accepting writes and the node stops syncing. See the host page for "
                        "what grows (database, node data, logs, backups); rotate logs, prune old backups, vacuum."))
    return out


def _usage_history(conn, _rule, start, end):
    from panel.alerts.replay import metric_minutes

    return metric_minutes(conn, "poolwarden_disk_used_percent", start, end, ("mount",))


register(RuleType(
    name="disk_usage", title="Disk space per mount", component="disk", unit="percent",
    description="Fires at warningPercent of a mount's space (as df counts it: used / (used + available)) with the "
                "rule's severity, and raises the alert to critical at criticalPercent; clears under clearPercent. "
                "Critical drops back to warning under criticalPercent minus the same margin.",
    params=(Param("warningPercent", "number", 80, "fire at this usage", minimum=1, maximum=100, unit="%"),
            Param("criticalPercent", "number", 90, "critical from this usage", minimum=1, maximum=100, unit="%"),
            Param("clearPercent", "number", 75, "clear under this usage", minimum=0, maximum=100, unit="%")),
    metrics=("poolwarden_disk_used_percent", "poolwarden_disk_used_bytes", "poolwarden_disk_free_bytes",
             "poolwarden_disk_total_bytes"),
    default_for=120, defaults=({"name": "diskSpace"},), observe=_disk_usage,
    check=lambda p: order_problem(p, "clearPercent", "warningPercent", strict=True)
    + order_problem(p, "warningPercent", "criticalPercent"),
    judge=_usage_judge,
    graph=lambda _r, labels: Graph(("poolwarden_disk_used_percent",), f"mount={labels.get('mount', '')}", "percent"),
    history=_usage_history,
))


# -- full forecast --------------------------------------------------------------------------------


def _component_mounts(data, host: str, mounts: list[str]) -> dict[tuple[str, str], str]:
    """(component, path) -> mount, from poolwarden_component_mount_info, else the longest mount prefix of the path."""
    known = {(p.labels.get("component", ""), p.labels.get("path", "")): p.labels.get("mount", "")
             for p in data.latest("poolwarden_component_mount_info") if p.host == host}
    out = {}
    for point in data.latest("poolwarden_component_size_bytes"):
        if point.host != host:
            continue
        key = (point.labels.get("component", ""), point.labels.get("path", ""))
        if key in known:
            out[key] = known[key]
            continue
        path = key[1]
        candidates = [m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")]
        if candidates:
            out[key] = max(candidates, key=len)
    return out


def fastest_component(data, host: str, mount: str, mounts: list[str], window: float) -> tuple[str, float] | None:
    """The component on ``mount`` whose size grows fastest (bytes per second), from the same window."""
    placed = _component_mounts(data, host, mounts)
    fits = data.regression("poolwarden_component_size_bytes", window, restart_on_drop=True)
    growth: dict[str, float] = {}
    for point in data.latest("poolwarden_component_size_bytes"):
        key = (point.labels.get("component", ""), point.labels.get("path", ""))
        fit = fits.get(point.series_id)
        # ergoNode.history/.state/.other split ergoNode: the component is the whole.
        if point.host != host or placed.get(key) != mount or "." in key[0] or not fit or fit.slope is None:
            continue
        growth[key[0]] = growth.get(key[0], 0.0) + fit.slope
    if not growth:
        return None
    name, slope = max(growth.items(), key=lambda item: item[1])
    return (name, slope) if slope > 0 else None


def judged_after(window: float) -> float:
    """A line is drawn once half its window of samples (since a clean-up, if there was one) is there."""
    return window / 2


def _forecast(data, rule) -> list[Observation]:
    p = rule.params
    window = p["window"]
    fits = data.regression("poolwarden_disk_used_bytes", window, restart_on_drop=True)
    free = data.by_label("poolwarden_disk_free_bytes", "mount")
    used = data.by_label("poolwarden_disk_used_bytes", "mount")
    mounts_of: dict[str, list[str]] = {}
    for host, mount in used:
        mounts_of.setdefault(host, []).append(mount)
    out = []
    for (host, mount), point in sorted(used.items()):
        fit = fits.get(point.series_id)
        if (host, mount) not in free or fit is None:
            continue
        if fit.restarted is not None and (fit.slope is None or fit.span_seconds < judged_after(window)):
            out.append(Observation(
                {"host": host, "mount": mount}, None, False, False,
                summary=f"Disk {mount} on {host}: space was freed, the forecast starts again",
                description=f"Used space fell at {fit.restarted.astimezone(UTC):%H:%M} UTC (a clean-up). The line "
                            f"is drawn from there on, once {human_seconds(judged_after(window))} of usage follow."))
            continue
        if fit.slope is None or fit.span_seconds < judged_after(window):
            continue  # too little history to draw a line
        per_day = fit.slope * DAY
        left = free[(host, mount)].value
        days = left / per_day if per_day > 0 else None
        breach = days is not None and days * DAY < p["fullWithin"]
        held = days is not None and days * DAY < p["clearAbove"]
        critical = p["criticalWithin"] is not None and days is not None and days * DAY < p["criticalWithin"]
        grower = fastest_component(data, host, mount, mounts_of[host], window)
        culprit = (f"; fastest growing: {grower[0]} (+{human_bytes(grower[1] * DAY)}/day)" if grower
                   else "; no measured component on it grows")
        value = round(days, 2) if days is not None else None
        out.append(Observation(
            {"host": host, "mount": mount}, value, breach, held, severity="critical" if critical else None,
            summary=(f"Disk {mount} on {host} will be full in {days:.1f} days" if days is not None
                     else f"Disk {mount} on {host} is not growing") + culprit,
            description=f"{human_bytes(left)} free, growing {human_bytes(per_day)}/day (a straight line through the "
                        f"last {human_seconds(window)} of usage){culprit}. Free space before it runs out: rotate or "
                        "compress logs, prune backups, vacuum the database, or grow the filesystem."))
    return out


register(RuleType(
    name="disk_full_forecast", title="Disk full forecast", component="disk", unit="days",
    description="Draws a straight line (least squares) through a mount's used bytes over the window and fires "
                "when the free space runs out within fullWithin; names the component on that mount that grows "
                "fastest. Clears when the forecast is beyond clearAbove; critical under criticalWithin."
                " A clean-up (used bytes falling by more than 1 % and 1 MiB at once) starts the line again: the "
                "alert resolves at once and the forecast is judged again once half the window follows.",
    params=(Param("fullWithin", "duration", 7 * DAY, "fire when the disk is full within this", minimum=3600,
                  maximum=365 * DAY),
            Param("clearAbove", "duration", 10 * DAY, "clear when the forecast is beyond this", minimum=3600,
                  maximum=365 * DAY),
            Param("criticalWithin", "duration", DAY, "critical when full within this; null: never critical",
                  minimum=600, maximum=365 * DAY, optional=True),
            Param("window", "duration", 6 * 3600, "the history the line is drawn through", minimum=1800,
                  maximum=7 * DAY)),
    metrics=("poolwarden_disk_used_bytes", "poolwarden_disk_free_bytes", "poolwarden_component_size_bytes",
             "poolwarden_component_mount_info"),
    every_seconds=60, defaults=({"name": "diskFullForecast"},), observe=_forecast,
    check=lambda p: order_problem(p, "fullWithin", "clearAbove") + order_problem(p, "criticalWithin", "fullWithin"),
    graph=lambda _r, labels: Graph(("poolwarden_disk_used_bytes", "poolwarden_disk_total_bytes"),
                                   f"mount={labels.get('mount', '')}", "bytes"),
    limits="Needs half the window of history. The preview is not available.",
))


# -- growth anomaly -------------------------------------------------------------------------------

GROWTH_SOURCES = {
    # source: (metric, its label naming the thing, the alert's label for it, the alert's component)
    "components": ("poolwarden_component_size_bytes", "component", "target", "disk"),
    "tables": ("poolwarden_postgres_table_size_bytes", "table", "table", "database"),
}


def _growth(data, rule) -> list[Observation]:
    p = rule.params
    window, baseline = p["window"], p["baseline"]
    base_start, base_end = data.now - timedelta(seconds=baseline + window), data.now - timedelta(seconds=window)
    min_rate = p["minBytesPerHour"] / 3600
    out = []
    for source in p["include"]:
        metric, label, alert_label, component = GROWTH_SOURCES[source]
        recent = data.regression(metric, window, restart_on_drop=True)
        before = data.rollup_regression(metric, base_start, base_end)
        totals: dict[tuple[str, str], list[float]] = {}
        cleaned: dict[tuple[str, str], datetime] = {}
        for point in data.latest(metric):
            name = point.labels.get(label, "")
            now_fit, base_fit = recent.get(point.series_id), before.get(point.series_id)
            if "." in name or not now_fit or not base_fit or base_fit.slope is None:
                continue
            if base_fit.span_seconds < min(baseline / 2, DAY):
                continue  # not enough history before the window
            restarted = now_fit.restarted is not None
            if now_fit.slope is None or now_fit.span_seconds < judged_after(window):
                if restarted:
                    cleaned[(point.host, name)] = now_fit.restarted
                continue  # not enough history in the window (since the clean-up)
            sums = totals.setdefault((point.host, name), [0.0, 0.0])
            sums[0] += now_fit.slope
            sums[1] += base_fit.slope
        for (host, name), at in sorted(cleaned.items()):
            if (host, name) in totals:
                continue
            what = f"table {name}" if label == "table" else name
            out.append(Observation(
                {"host": host, alert_label: name, "component": component}, None, False, False,
                summary=f"{what} on {host} shrank: its growth is measured again from there",
                description=f"It fell at {at.astimezone(UTC):%H:%M} UTC (a clean-up, a rotation). Its growth is "
                            f"judged again once {human_seconds(judged_after(window))} of samples follow."))
        for (host, name), (rate, usual) in sorted(totals.items()):
            fire = max(min_rate, p["factor"] * max(usual, 0.0))
            breach, held = rising(rate, fire, fire / 2)
            what = f"table {name}" if label == "table" else name
            out.append(Observation(
                {"host": host, alert_label: name, "component": component}, round(rate * 3600), breach, held,
                summary=f"{what} on {host} grows {human_bytes(rate * 3600)}/h, "
                        + (f"{rate / usual:.0f}x its usual rate" if usual > 0 else "from a flat baseline"),
                description=f"Over the last {human_seconds(window)} it grew {human_bytes(rate * 3600)}/h; over the "
                            f"{human_seconds(baseline)} before, {human_bytes(max(usual, 0) * 3600)}/h. A log in a "
                            "loop, a stuck share cleanup or a runaway backup grows like this."))
    return out


register(RuleType(
    name="component_growth", title="Component growth anomaly", component="disk", unit="bytes/h",
    description="Compares each component's (and, with include tables, each Miningcore table's) growth over the "
                "window with its own growth over the baseline before it; fires when it grows at least factor "
                "times faster and at least minBytesPerHour; clears under half of that."
                " A component that shrinks (a clean-up, a rotation: more than 1 % and 1 MiB at once) is measured "
                "from there on: a runaway that was cleaned up resolves at once.",
    params=(Param("factor", "number", 5, "fire at this many times the usual growth", minimum=1.5, maximum=1000),
            Param("minBytesPerHour", "number", 100 * 2**20, "never fire under this growth", minimum=0,
                  unit="bytes/h"),
            Param("window", "duration", 3600, "the recent stretch measured", minimum=900, maximum=DAY),
            Param("baseline", "duration", 7 * DAY, "the stretch before it that sets the usual rate", minimum=6 * 3600,
                  maximum=30 * DAY),
            Param("include", "choices", ["components", "tables"], "what is watched", choices=tuple(GROWTH_SOURCES))),
    latest_for=lambda p: {GROWTH_SOURCES[s][0] for s in p["include"]},
    every_seconds=60, defaults=({"name": "componentGrowth"},), observe=_growth,
    graph=lambda _r, labels: (Graph(("poolwarden_postgres_table_size_bytes",), f"table={labels['table']}", "bytes")
                              if "table" in labels else
                              Graph(("poolwarden_component_size_bytes",), f"component={labels.get('target', '')}",
                                    "bytes")),
    limits="Needs a day of baseline history. The preview is not available.",
))
