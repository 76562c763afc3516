"""Channel (integration) and route pages, admin only: list, create, edit, test, delete, delivery log.

Setting or changing a secret (a webhook URL, a signing secret, an SMTP password) needs a fresh
TOTP code; other edits do not. Provisioned entries (integrations.json) are shown read-only.
"""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from panel.auth.principal import role_required
from panel.auth.stepup import step_up_required, stepped_up_recently
from panel.db import get_db
from panel.notify.channels import REGISTRY
from panel.notify.forms import EmptyForm, RouteForm, channel_form
from panel.notify.jobs import send_test
from panel.notify.matchers import MatcherError, as_text, parse_lines
from panel.notify.provisioning import provisioning_status
from panel.notify.routes import actor, bp
from panel.notify.settings import Settings
from panel.notify.store import (
    StoreError,
    delete_integration,
    delete_route,
    delivery_summary,
    get_integration,
    list_deliveries,
    list_integrations,
    load_routes,
    route_spec,
    save_integration,
    save_route,
    secrets_would_change,
)


def _integration(integration_id: int):
    found = get_integration(get_db(), integration_id)
    if found is None:
        abort(404, description=f"No channel {integration_id}.")
    return found


@bp.get("/integrations")
@role_required("admin")
def integrations():
    conn = get_db()
    channels = [i.view() for i in list_integrations(conn)]
    routes = load_routes(conn, enabled_only=False)
    routed = {name for r in routes if r.enabled for name in r.integration_names}
    return render_template("notify/integrations.html", channels=channels, routes=routes, routed=routed,
                           summary=delivery_summary(conn), provisioning=provisioning_status(conn),
                           deliveries=list_deliveries(conn, limit=20), kinds=REGISTRY, button=EmptyForm(),
                           as_text=as_text)


def _values(form) -> dict:
    return {spec.key: form[spec.key].data for spec in form.channel_fields}


def _needs_step_up(existing, kind: str, values: dict) -> bool:
    return secrets_would_change(existing, kind, values) and not stepped_up_recently()


def _step_up(back_to: str):
    flash("Setting a secret needs a fresh authentication code: confirm it, then submit the form again.", "warn")
    return redirect(url_for("auth.step_up", next=back_to))


def _channel_page(form, kind: str, integration=None, status: int = 200, error: str | None = None):
    deliveries = list_deliveries(get_db(), integration_id=integration.id, limit=50) if integration else []
    return render_template("notify/integration.html", form=form, kind=kind, title=REGISTRY[kind].title,
                           integration=integration.view() if integration else None, deliveries=deliveries,
                           button=EmptyForm(), error=error), status


def _save(form, kind: str, integration=None):
    try:
        saved = save_integration(get_db(), name=form.name.data, kind=kind, values=_values(form),
                                 enabled=bool(form.enabled.data), by=actor(),
                                 integration_id=integration.id if integration else None)
    except StoreError as exc:
        if exc.field and exc.field in form:
            form[exc.field].errors = [*form[exc.field].errors, str(exc).split(": ", 1)[-1]]
            return _channel_page(form, kind, integration, 400)
        return _channel_page(form, kind, integration, 400, error=str(exc))
    flash(f"Channel {saved.name} saved. Use “Send test” to check it.", "ok")
    return redirect(url_for("notify.integration", integration_id=saved.id))


@bp.route("/integrations/new", methods=["GET", "POST"])
@role_required("admin")
def new_integration():
    kind = request.args.get("type", "webhook")
    if kind not in REGISTRY:
        abort(404, description=f"No channel type {kind!r}: choose one of {', '.join(sorted(REGISTRY))}.")
    if request.method == "GET":
        return _channel_page(channel_form(kind), kind)
    form = channel_form(kind, formdata=request.form)
    if not form.validate_on_submit():
        return _channel_page(form, kind, status=400)
    if _needs_step_up(None, kind, _values(form)):
        return _step_up(url_for("notify.new_integration", type=kind))
    return _save(form, kind)


@bp.route("/integrations/<int:integration_id>", methods=["GET", "POST"])
@role_required("admin")
def integration(integration_id: int):
    found = _integration(integration_id)
    if request.method == "GET":
        data = {"name": found.name, "enabled": found.enabled,
                **{k: (", ".join(v) if isinstance(v, list) else v) for k, v in found.settings.items()}}
        return _channel_page(channel_form(found.kind, data=data), found.kind, found)
    if found.provisioned:
        abort(409, description=f"{found.name} comes from integrations.json: change it there.")
    form = channel_form(found.kind, formdata=request.form)
    if not form.validate_on_submit():
        return _channel_page(form, found.kind, found, 400)
    if _needs_step_up(found, found.kind, _values(form)):
        return _step_up(url_for("notify.integration", integration_id=integration_id))
    return _save(form, found.kind, found)


@bp.post("/integrations/<int:integration_id>/test")
@role_required("admin")
def test_integration(integration_id: int):
    found = _integration(integration_id)
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    settings = Settings.from_config(current_app.config)
    result = send_test(get_db(), found.id, by=actor(), external_url=settings.external_url)
    if result["status"] == "sent":
        code = f" ({result['code']})" if result.get("code") else ""
        flash(f"Test notification sent to {found.name}{code} in {result['duration_ms']:.0f} ms.", "ok")
    else:
        flash(f"Test notification to {found.name} failed: {result['error']}", "crit")
    return redirect(url_for("notify.integration", integration_id=found.id))


@bp.post("/integrations/<int:integration_id>/delete")
@role_required("admin")
@step_up_required
def delete(integration_id: int):
    found = _integration(integration_id)
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    if found.provisioned:
        abort(409, description=f"{found.name} comes from integrations.json: remove it there.")
    delete_integration(get_db(), integration_id, actor())
    flash(f"Channel {found.name} deleted.", "ok")
    return redirect(url_for("notify.integrations"))


# -- routes ------------------------------------------------------------------------------------------

def _route_form(formdata=None, data=None) -> RouteForm:
    form = RouteForm(formdata=formdata, data=data) if (formdata is not None or data is not None) else RouteForm()
    form.integrations.choices = [SelectChoice(i.name, i.name) for i in list_integrations(get_db())]
    return form


def _route_page(form, route=None, status: int = 200, error: str | None = None):
    return render_template("notify/route.html", form=form, route=route, error=error, button=EmptyForm(),
                           as_text=as_text), status


def _find_route(route_id: int):
    for route in load_routes(get_db(), enabled_only=False):
        if route.id == route_id:
            return route
    abort(404, description=f"No route {route_id}.")


def _save_route(form, route=None):
    try:
        raw = {"name": form.name.data, "severities": form.severities.data or [],
               "matchers": [m.as_dict() for m in parse_lines(form.matchers.data or "", allow_empty=True)],
               "integrations": form.integrations.data or [],
               "groupBy": [g.strip() for g in (form.group_by.data or "").split(",") if g.strip()],
               "groupWaitSeconds": form.group_wait.data, "groupIntervalSeconds": form.group_interval.data,
               "repeatIntervalSeconds": form.repeat_interval.data, "continue": bool(form.continue_matching.data),
               "enabled": bool(form.enabled.data)}
        route_id = save_route(get_db(), route_spec(raw), by=actor(), route_id=route.id if route else None)
    except (StoreError, MatcherError) as exc:
        return _route_page(form, route, 400, error=str(exc))
    flash(f"Route {form.name.data} saved.", "ok")
    return redirect(url_for("notify.integrations", _anchor=f"route-{route_id}"))


@bp.route("/integrations/routes/new", methods=["GET", "POST"])
@role_required("admin")
def new_route():
    if request.method == "GET":
        return _route_page(_route_form())
    form = _route_form(formdata=request.form)
    if not form.validate_on_submit():
        return _route_page(form, status=400)
    return _save_route(form)


@bp.route("/integrations/routes/<int:route_id>", methods=["GET", "POST"])
@role_required("admin")
def route(route_id: int):
    found = _find_route(route_id)
    if request.method == "GET":
        return _route_page(_route_form(data={
            "name": found.name, "severities": sorted(found.severities), "matchers": "\n".join(
                str(m) for m in found.matchers), "integrations": list(found.integration_names),
            "group_by": ", ".join(found.group_by), "group_wait": found.group_wait,
            "group_interval": found.group_interval, "repeat_interval": found.repeat_interval,
            "continue_matching": found.continue_matching, "enabled": found.enabled}), found)
    if found.provisioned:
        abort(409, description=f"Route {found.name} comes from integrations.json: change it there.")
    form = _route_form(formdata=request.form)
    if not form.validate_on_submit():
        return _route_page(form, found, 400)
    return _save_route(form, found)


@bp.post("/integrations/routes/<int:route_id>/delete")
@role_required("admin")
def remove_route(route_id: int):
    found = _find_route(route_id)
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    if found.provisioned:
        abort(409, description=f"Route {found.name} comes from integrations.json: remove it there.")
    delete_route(get_db(), route_id, actor())
    flash(f"Route {found.name} deleted.", "ok")
    return redirect(url_for("notify.integrations"))
