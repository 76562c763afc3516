"""``/api/admin/alerts``: open alerts, history, one alert with its timeline and graph data, the rules,
export and configure (admin). Reading needs the viewer role; changing rules the admin role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, current_app, jsonify, request

from panel.alerts import queries
from panel.alerts.config import ConfigInvalid, export_document, parse_document
from panel.alerts.queries import BadFilter, Filters, alert_json, transition_json
from panel.alerts.store import RuleRefused, configure, load_rules, provisioning_status
from panel.audit import current_actor
from panel.auth.principal import role_required
from panel.db import get_db
from panel.engine.rollups import Retention, floor_to
from panel.hosts.history import RANGES, BadQuery, choose_range, parse_labels, series_history
from panel.hosts.overview import find_host

bp = Blueprint("alerts_api", __name__, url_prefix="/api/admin/alerts")
DEFAULT_LIMIT = 500
ORIGINS = ("all", "provisioned", "ui")


@bp.errorhandler(BadFilter)
@bp.errorhandler(BadQuery)
def _bad_request(exc: Exception):
    return jsonify(error=str(exc)), 400


@bp.errorhandler(ConfigInvalid)
def _refused(exc: ConfigInvalid):
    return jsonify(error=str(exc), problems=exc.as_list()), 400


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadFilter(f"{name}: a whole number from {low} to {high}, not {raw!r}") from None
    if not low <= value <= high:
        raise BadFilter(f"{name}: a whole number from {low} to {high}, not {value}")
    return value


@bp.get("")
@role_required("viewer")
def active_alerts():
    """Open alerts (pending and firing): firing first, by severity; ``?limit=&offset=`` pages them."""
    filters = Filters.from_args(request.args, allow_resolved=False)
    limit = _int_arg("limit", DEFAULT_LIMIT, 0, queries.MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, 10_000_000)
    conn = get_db()
    found, total = queries.active(conn, filters, limit, offset)
    return jsonify(alerts=[alert_json(row) for row in found], total=total, limit=limit, offset=offset,
                   **queries.counts(conn))


@bp.get("/history")
@role_required("viewer")
def alert_history():
    """Alerts of every state, newest first, with the page's filters; ``?page=`` from 1."""
    filters = Filters.from_args(request.args)
    page = _int_arg("page", 1, 1, 100_000)
    found, has_next = queries.history(get_db(), filters, page)
    return jsonify(alerts=[alert_json(row) for row in found], page=page, has_next=has_next)


@bp.get("/<int:alert_id>")
@role_required("viewer")
def alert_detail(alert_id: int):
    conn = get_db()
    row = queries.one(conn, alert_id)
    if row is None:
        abort(404, f"no alert {alert_id}")
    return jsonify(alert=alert_json(row), transitions=[transition_json(t) for t in queries.timeline(conn, alert_id)])


def graph_window(row: dict, range_name: str, now: datetime) -> datetime:
    """Where a graph of ``range_name`` around the alert ends: the episode in the middle when it fits."""
    span = RANGES[range_name].span
    start, end = row["active_since"], row["resolved_at"] or now
    margin = max(timedelta(0), span - (end - start)) / 2
    return min(now, end + margin)


def auto_range(row: dict, now: datetime) -> str:
    """The shortest graph range that shows the whole episode with room around it."""
    episode = (row["resolved_at"] or now) - row["active_since"]
    for name, graph in RANGES.items():
        if graph.span >= episode + max(timedelta(minutes=10), episode * 0.2):
            return name
    return list(RANGES)[-1]


def graph_spans(row: dict, retention: Retention, now: datetime) -> dict[str, list[float]]:
    """Per range, the [from, to] (unix seconds) the alert's graph covers: where the page marks the episode."""
    spans = {}
    for name in RANGES:
        graph = choose_range(name, retention)
        end = floor_to(graph_window(row, name, now), graph.step) + graph.step
        spans[name] = [(end - graph.span).timestamp(), end.timestamp()]
    return spans


@bp.get("/<int:alert_id>/series")
@role_required("viewer")
def alert_series(alert_id: int):
    """The host's series around the alert: ``?name=METRIC&labels=k=v&range=1h|24h|7d|30d`` (the
    episode in the middle of the range when it fits)."""
    conn = get_db()
    row = queries.one(conn, alert_id)
    if row is None:
        abort(404, f"no alert {alert_id}")
    host = find_host(conn, row["labels"].get("host", ""), current_app.config["STALE_AFTER_SECONDS"])
    if host is None:
        abort(404, f"the alert's host {row['labels'].get('host')!r} has no data")
    range_name = request.args.get("range", "") or auto_range(row, datetime.now(UTC))
    if range_name not in RANGES:
        raise BadQuery(f"range must be one of {', '.join(RANGES)}, not {range_name!r}")
    names = [n for n in request.args.getlist("name") if n]
    data = series_history(conn, host["id"], names, parse_labels(request.args.get("labels", "")), range_name,
                          Retention.from_config(current_app.config), now=graph_window(row, range_name,
                                                                                      datetime.now(UTC)))
    return jsonify(host=host["name"], **data)


def rule_json(rule, open_count: int) -> dict:
    return {"id": rule.id, "name": rule.name, "type": rule.type, "provisioned": rule.provisioned,
            "enabled": rule.enabled, "open_alerts": open_count, "last_error": rule.last_error,
            "updated_at": queries.iso(rule.updated_at), "updated_by": rule.updated_by, "config": rule.as_config()}


@bp.get("/rules")
@role_required("viewer")
def rules():
    """Every rule with its configuration (as alerts.json writes it) and its open alerts."""
    conn = get_db()
    counts = {r["rule_id"]: r["n"] for r in conn.execute(
        "SELECT rule_id, count(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY rule_id")}
    status = provisioning_status(conn)
    return jsonify(rules=[rule_json(r, counts.get(r.id, 0)) for r in load_rules(conn)],
                   provisioning=None if status is None else {
                       "path": status["path"], "applied_at": queries.iso(status["applied_at"]),
                       "checked_at": queries.iso(status["checked_at"]), "error": status["error"]})


@bp.get("/export")
@role_required("viewer")
def export():
    """The rules as alerts.json (``?origin=provisioned|ui``: only those from the file, or made in the UI/API)."""
    origin = request.args.get("origin", "all")
    if origin not in ORIGINS:
        raise BadFilter(f"origin: one of {', '.join(ORIGINS)}, not {origin!r}")
    chosen = [r for r in load_rules(get_db())
              if origin == "all" or r.provisioned == (origin == "provisioned")]
    return jsonify(export_document(chosen))


@bp.post("/configure")
@role_required("admin")
def configure_rules():
    """Rules in alerts.json's shape become the rules made outside the file; ``?mode=merge`` keeps the
    others, ``replace`` (the default) removes those not named. Refused whole when anything is wrong."""
    mode = request.args.get("mode", "replace")
    if mode not in ("replace", "merge"):
        raise BadFilter(f"mode: replace or merge, not {mode!r}")
    document = request.get_json(silent=True)
    if document is None:
        raise ConfigInvalid([("(body)", "must be a JSON document (Content-Type: application/json)")])
    wanted = parse_document(document)
    try:
        report = configure(get_db(), wanted, actor=current_actor(), replace=mode == "replace")
    except RuleRefused as exc:
        raise ConfigInvalid([("alerts", str(exc))]) from None
    return jsonify(mode=mode, **report.as_dict())
