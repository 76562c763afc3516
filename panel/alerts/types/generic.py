"""The generic threshold rule: any metric, label matchers (the rule's ``matchers``), a comparison,
an optional clear threshold and an optional averaging window."""

from __future__ import annotations

import operator
from typing import Any

from panel.alerts.types.base import COMPONENTS, Graph, Observation, Param, RuleType, register

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}
# Series labels that would shadow an alert's own labels are kept as exported_<name>, as Prometheus does.
SHADOWED = ("alertname", "rule_type", "severity", "host", "component", "service")


def judge(value: float, params: dict[str, Any], _severity: str | None) -> tuple[bool, bool, str | None]:
    compare = OPS[params["op"]]
    breach = compare(value, params["threshold"])
    clear = params.get("clear")
    if clear is None or params["op"] in ("==", "!="):
        return breach, breach, None
    # Held while the value is still beyond the clear threshold, on the side the comparison fires.
    held = value > clear if params["op"] in (">", ">=") else value < clear
    return breach, breach or held, None


def _check(params: dict[str, Any]) -> list[tuple[str, str]]:
    clear, op, threshold = params.get("clear"), params.get("op"), params.get("threshold")
    if clear is None or threshold is None:
        return []
    if op in ("==", "!="):
        return [("clear", f"has no meaning with op {op}: leave it null")]
    if op in (">", ">=") and clear > threshold:
        return [("clear", f"must be at most threshold ({threshold}) with op {op}, got {clear}")]
    if op in ("<", "<=") and clear < threshold:
        return [("clear", f"must be at least threshold ({threshold}) with op {op}, got {clear}")]
    return []


def series_labels(labels: dict[str, str]) -> dict[str, str]:
    return {(f"exported_{k}" if k in SHADOWED else k): str(v) for k, v in labels.items()}


def _threshold(data, rule) -> list[Observation]:
    p = rule.params
    metric = p["metric"]
    averages = data.window_avg(metric, p["window"]) if p["window"] else {}
    out = []
    for point in data.latest(metric):
        value = averages.get(point.series_id, point.value)
        breach, held, _ = judge(value, p, None)
        labels = {"host": point.host, "component": p["component"], **series_labels(point.labels)}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(point.labels.items()))
        out.append(Observation(
            labels, value, breach, held,
            summary=f"{metric}{'{' + shown + '}' if shown else ''} on {point.host} is {value:g} "
                    f"({p['op']} {p['threshold']:g})",
            description=f"The rule {rule.name} fires when {metric} {p['op']} {p['threshold']:g}"
                        + (f" (averaged over {p['window']} s)" if p["window"] else "")
                        + (f" and clears beyond {p['clear']:g}." if p.get("clear") is not None else ".")))
    return out


def _graph(rule, labels: dict[str, str]) -> Graph:
    own = {k[len("exported_"):] if k.startswith("exported_") else k: v for k, v in labels.items()
           if k not in ("alertname", "rule_type", "severity", "host", "component", "service")
           and k not in rule.labels}
    return Graph((rule.params["metric"],), ",".join(f"{k}={v}" for k, v in sorted(own.items())), "decimal")


def _history(conn, rule, start, end):
    from panel.alerts.replay import metric_minutes
    from panel.alerts.types.base import PreviewSeries

    return [PreviewSeries({"host": one.labels["host"], "component": rule.params["component"],
                           **series_labels({k: v for k, v in one.labels.items() if k != "host"})}, one.points)
            for one in metric_minutes(conn, rule.params["metric"], start, end, None)]


register(RuleType(
    name="threshold", title="Threshold on any metric", component="system", unit="decimal",
    description="Compares the newest value of every series of a metric (or its average over window) with "
                "threshold using op; the rule's matchers choose the series (mount!~\"/boot.*\"). With clear, an "
                "open alert stays until the value is back beyond clear.",
    params=(Param("metric", "metric", None, "the metric's name, as in docs/metrics.md", required=True),
            Param("op", "choice", ">", "how the value is compared with threshold", choices=tuple(OPS)),
            Param("threshold", "number", None, "the value compared against", required=True),
            Param("clear", "number", None, "clear only once the value is back beyond this; null: at the threshold",
                  optional=True),
            Param("window", "duration", None, "compare the average over this window instead of the newest value",
                  minimum=30, maximum=86400, optional=True),
            Param("component", "choice", "system", "the component label of its alerts", choices=COMPONENTS)),
    latest_for=lambda p: {p["metric"]}, defaults=(
        {"name": "backupTooOld", "metric": "poolwarden_backup_newest_age_seconds", "op": ">", "threshold": 172800,
         "component": "database", "for": "10m"},
    ),
    observe=_threshold, check=_check, judge=judge, graph=_graph, history=_history,
))
