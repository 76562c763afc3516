"""Alert pages: the open alerts, the history with filters, one alert with its timeline and graph,
the rules and the rule editor with its preview. Viewers read; admins change rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from agent.contract import METRICS
from panel.alerts import queries
from panel.alerts.api import auto_range, graph_spans
from panel.alerts.config import ConfigInvalid, dumps, export_document, parse_document, parse_rule
from panel.alerts.forms import EmptyForm, ImportForm, RuleForm, param_text, problems_by_field
from panel.alerts.present import value_text
from panel.alerts.preview import preview
from panel.alerts.queries import BadFilter, Filters
from panel.alerts.store import RuleRefused, configure, delete_rule, get_rule, load_rules, provisioning_status, save_rule
from panel.alerts.types import TYPES
from panel.audit import current_actor
from panel.auth.principal import current_principal, has_role, role_required
from panel.auth.stepup import step_up_required
from panel.db import get_db
from panel.engine.rollups import Retention
from panel.hosts.history import RANGES

bp = Blueprint("alerts", __name__)
ACTIVE_SHOWN = 300


@bp.app_context_processor
def alert_helpers():
    """What the alert templates share: whether the notifier's buttons exist, and who may press them."""
    def can(role: str) -> bool:
        return has_role(current_principal(), role)

    def alert_value(value, rule_type: str) -> str:
        return value_text(value, TYPES[rule_type].unit if rule_type in TYPES else "")

    return {"alerts_can": can, "notify_ready": "notify.acknowledge" in current_app.view_functions,
            "alert_types": TYPES, "value_text": alert_value, "metric_names": sorted(METRICS)}


def _filters(allow_resolved: bool = True) -> tuple[Filters, str | None]:
    try:
        return Filters.from_args(request.args, allow_resolved=allow_resolved), None
    except BadFilter as exc:
        return Filters(), str(exc)


@bp.get("/alerts")
@role_required("viewer")
def index():
    filters, problem = _filters(allow_resolved=False)
    conn = get_db()
    found, total = queries.active(conn, filters, ACTIVE_SHOWN)
    counts = queries.counts(conn)
    return render_template("alerts/index.html", alerts=found, total=total, counts=counts, filters=filters,
                           problem=problem, shown=ACTIVE_SHOWN, hosts=_hosts(conn), now=datetime.now(UTC))


def _hosts(conn) -> list[str]:
    return [row["name"] for row in conn.execute("SELECT name FROM hosts ORDER BY name")]


@bp.get("/alerts/history")
@role_required("viewer")
def history():
    filters, problem = _filters()
    try:
        page = max(1, min(100_000, int(request.args.get("page") or 1)))
    except ValueError:
        page = 1
    conn = get_db()
    found, has_next = queries.history(conn, filters, page)
    return render_template("alerts/history.html", alerts=found, filters=filters, problem=problem, page=page,
                           has_next=has_next, hosts=_hosts(conn), rules=[r.name for r in load_rules(conn)],
                           now=datetime.now(UTC))


@bp.get("/alerts/<int:alert_id>")
@role_required("viewer")
def detail(alert_id: int):
    conn = get_db()
    alert = queries.one(conn, alert_id)
    if alert is None:
        abort(404, f"There is no alert {alert_id}: it may belong to a rule that was deleted.")
    if request.args.get("range") not in RANGES:
        # The graph's range goes in the URL (charts.js reads it there): the shortest that shows the episode.
        return redirect(url_for("alerts.detail", alert_id=alert_id, range=auto_range(alert, datetime.now(UTC))))
    rule = get_rule(conn, alert["rule_id"])
    graph = rule.kind.graph(rule, alert["labels"]) if rule and rule.kind.graph else None
    now = datetime.now(UTC)
    return render_template("alerts/detail.html", alert=alert, rule=rule, graph=graph,
                           timeline=queries.timeline(conn, alert_id), others=queries.earlier_episodes(conn, alert),
                           ranges=RANGES, now=now,
                           spans=graph_spans(alert, Retention.from_config(current_app.config), now))


# -- rules ---------------------------------------------------------------------------------------


@bp.get("/alerts/rules")
@role_required("viewer")
def rules():
    conn = get_db()
    open_counts = {r["rule_id"]: r["n"] for r in conn.execute(
        "SELECT rule_id, count(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY rule_id")}
    return render_template("alerts/rules.html", rules=load_rules(conn), open_counts=open_counts,
                           provisioning=provisioning_status(conn), import_form=ImportForm())


@bp.get("/alerts/rules.json")
@role_required("viewer")
def rules_json():
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(dumps(export_document(load_rules(get_db()))), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="poolwarden-alerts-{stamp}.json"'})


@bp.post("/alerts/rules/import")
@role_required("admin")
def import_rules():
    form = ImportForm()
    conn = get_db()
    error = None
    if form.validate_on_submit():
        try:
            wanted = parse_document(json.loads(form.document.data), "the pasted rules")
            report = configure(conn, wanted, actor=current_actor(), replace=form.mode.data == "replace")
            flash(f"Rules imported: {report.line()}.", "ok")
            return redirect(url_for("alerts.rules"))
        except json.JSONDecodeError as exc:
            error = f"The pasted text is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        except ConfigInvalid as exc:
            error = str(exc)
    else:
        error = "; ".join(e for errors in form.errors.values() for e in errors)
    open_counts: dict[int, int] = {}
    return render_template("alerts/rules.html", rules=load_rules(conn), open_counts=open_counts,
                           provisioning=provisioning_status(conn), import_form=form, import_error=error), 400


def _editor(kind, form: RuleForm, *, rule=None, params=None, errors=None, result=None, editable=True, status=200):
    values = {p.name: param_text(p, (params or {}).get(p.name, p.default)) for p in kind.params}
    return render_template("alerts/rule.html", kind=kind, form=form, rule=rule, values=values, errors=errors or {},
                           preview=result, editable=editable, delete_form=EmptyForm()), status


def _submitted(kind, form: RuleForm):
    """(rule, problems by field) from a posted editor."""
    body = form.body(kind, request.form)
    if not form.validate():
        return None, body, {name: list(errs) for name, errs in form.errors.items()}
    rule, problems = parse_rule(form.name.data, body, "rule")
    return rule, body, problems_by_field(problems, kind)


@bp.route("/alerts/rules/new", methods=["GET", "POST"])
@role_required("admin")
def new_rule():
    conn = get_db()
    source = get_rule(conn, int(request.args["from"])) if (request.args.get("from") or "").isdigit() else None
    type_name = request.values.get("type") or (source.type if source else None)
    if type_name not in TYPES:
        return render_template("alerts/choose_type.html")
    kind = TYPES[type_name]
    form = RuleForm()
    if request.method == "GET":
        params = {}
        if source is not None and source.type == type_name:
            form.fill(source)
            form.name.data = f"{source.name}Copy"
            params = source.params
        return _editor(kind, form, params=params)
    rule, body, errors = _submitted(kind, form)
    if errors or rule is None:
        return _editor(kind, form, params=_raw_params(kind, body), errors=errors, status=400)
    if request.form.get("action") == "preview":
        return _editor(kind, form, params=rule.params, result=preview(conn, rule))
    try:
        rule_id = save_rule(conn, rule, actor=current_actor())
    except RuleRefused as exc:
        return _editor(kind, form, params=rule.params, errors={"name": [str(exc)]}, status=400)
    flash(f"Rule {rule.name} created: it is evaluated from now on.", "ok")
    return redirect(url_for("alerts.rule", rule_id=rule_id))


def _raw_params(kind, body):
    return {p.name: body.get(p.name) for p in kind.params if p.name in body}


@bp.get("/alerts/rules/<int:rule_id>", endpoint="rule")
@role_required("viewer")
def show_rule(rule_id: int):
    conn = get_db()
    found = get_rule(conn, rule_id)
    if found is None:
        abort(404, f"There is no rule {rule_id}.")
    form = RuleForm(formdata=None)
    form.fill(found)
    editable = has_role(current_principal(), "admin") and not found.provisioned
    result = preview(conn, found) if request.args.get("preview") else None
    return _editor(found.kind, form, rule=found, params=found.params, editable=editable, result=result)


@bp.post("/alerts/rules/<int:rule_id>")
@role_required("admin")
def update_rule(rule_id: int):
    conn = get_db()
    found = get_rule(conn, rule_id)
    if found is None:
        abort(404, f"There is no rule {rule_id}.")
    form = RuleForm()
    if found.provisioned:
        flash(f"{found.name} is provisioned from the configuration file: change it there.", "warn")
        return redirect(url_for("alerts.rule", rule_id=rule_id))
    rule, body, errors = _submitted(found.kind, form)
    if errors or rule is None:
        return _editor(found.kind, form, rule=found, params=_raw_params(found.kind, body), errors=errors, status=400)
    if request.form.get("action") == "preview":
        return _editor(found.kind, form, rule=found, params=rule.params, result=preview(conn, rule))
    try:
        save_rule(conn, rule, actor=current_actor(), rule_id=rule_id)
    except RuleRefused as exc:
        return _editor(found.kind, form, rule=found, params=rule.params, errors={"name": [str(exc)]}, status=400)
    flash(f"Rule {rule.name} saved.", "ok")
    return redirect(url_for("alerts.rule", rule_id=rule_id))


@bp.post("/alerts/rules/<int:rule_id>/delete")
@role_required("admin")
@step_up_required
def remove_rule(rule_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    try:
        gone = delete_rule(get_db(), rule_id, actor=current_actor())
    except RuleRefused as exc:
        flash(str(exc), "warn")
        return redirect(url_for("alerts.rules"))
    flash(f"Rule {gone.name} deleted with its alerts.", "ok")
    return redirect(url_for("alerts.rules"))
