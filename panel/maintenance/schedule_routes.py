"""Schedule pages: the list (with the provisioning state), and the editor (admins). Provisioned
schedules are shown read-only: their file is the place to change them."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from wtforms.fields.choices import SelectChoice

from agent.contract import ACTIONS
from panel.auth.principal import role_required
from panel.auth.stepup import step_up_required, stepped_up_recently
from panel.db import get_db
from panel.maintenance import schedules, store, web
from panel.maintenance.dispatch import MaintenanceRefused
from panel.maintenance.forms import ButtonForm, ScheduleForm, param_inputs, params_from_form
from panel.maintenance.routes import bp

SCHEDULABLE = [a for a in ACTIONS.values() if a.scheduled]


def _last_jobs(conn, rows) -> dict:
    ids = [r["last_job_id"] for r in rows if r["last_job_id"]]
    if not ids:
        return {}
    return {j["id"]: j for j in (store.get_job(conn, str(i)) for i in ids) if j}


@bp.get("/maintenance/schedules")
@role_required("viewer")
def schedule_list():
    conn = get_db()
    rows = schedules.list_schedules(conn)
    return render_template("maintenance/schedules.html", rows=rows, last_jobs=_last_jobs(conn, rows),
                           state=schedules.provisioning_state(conn), configured=web.settings().config_path,
                           actions=ACTIONS, schedulable=SCHEDULABLE, hosts=web.known_hosts(), button=ButtonForm())


def _form(row=None) -> ScheduleForm:
    form = ScheduleForm(data=None if row is None else {
        "name": row["name"], "host": row["host"], "action": row["action"], "cadence": row["cadence"],
        "enabled": row["enabled"]}) if request.method == "GET" else ScheduleForm()
    form.host.choices = [SelectChoice(h, h) for h in web.known_hosts()]
    return form


def _editor(form: ScheduleForm, action, values, row=None, status: int = 200, error_field: str | None = None):
    return render_template("maintenance/schedule_edit.html", form=form, action=action, row=row,
                           inputs=param_inputs(action, values), error_field=error_field,
                           stepped_up=stepped_up_recently(), button=ButtonForm()), status


def _save(row=None):
    form = _form(row)
    action = ACTIONS.get(form.action.data or "")
    if action is None or not action.scheduled:
        abort(400, description="Choose an action that can be scheduled.")
    if not form.validate_on_submit():
        return _editor(form, action, None, row, 400)
    try:
        raw = params_from_form(action, request.form)
        spec = schedules.check_spec({"name": form.name.data.strip(), "host": form.host.data, "action": action.name,
                                     "params": raw, "cadence": form.cadence.data, "enabled": bool(form.enabled.data)})
    except MaintenanceRefused as exc:
        return _editor(form, action, None, row, 400, error_field=f"params.{exc.field}: {exc.message}")
    except schedules.ScheduleError as exc:
        field = getattr(form, exc.field, None) if "." not in exc.field else None
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, exc.reason]
            return _editor(form, action, None, row, 400)
        return _editor(form, action, None, row, 400, error_field=str(exc))
    if spec.host not in web.known_hosts():
        form.host.errors = [*form.host.errors, f"unknown host {spec.host!r}"]
        return _editor(form, action, spec.params, row, 400)
    if action.is_destructive(spec.params) and not stepped_up_recently():
        return step_up_required(lambda: None)()
    try:
        saved = schedules.save_schedule(get_db(), spec, by=web.actor(), schedule_id=row["id"] if row else None)
    except schedules.ScheduleError as exc:
        field = getattr(form, exc.field, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, exc.reason]
            return _editor(form, action, spec.params, row, 400)
        return _editor(form, action, spec.params, row, 400, error_field=str(exc))
    flash(f"Schedule {saved['name']} saved: {saved['cadence']} (UTC).", "ok")
    return redirect(url_for("maintenance.schedule_list") + f"#schedule-{saved['id']}")


@bp.route("/maintenance/schedules/new", methods=["GET", "POST"])
@role_required("admin")
def schedule_new():
    if request.method == "POST":
        return _save()
    action = ACTIONS.get(request.args.get("action", ""))
    if action is None or not action.scheduled:
        return render_template("maintenance/schedule_pick.html", schedulable=SCHEDULABLE, hosts=web.known_hosts(),
                               host=request.args.get("host", ""))
    form = _form()
    form.action.data = action.name
    if request.args.get("host") in web.known_hosts():
        form.host.data = request.args["host"]
    return _editor(form, action, None)


def _row_or_404(schedule_id: int):
    row = schedules.get_schedule(get_db(), schedule_id)
    if row is None:
        abort(404, description=f"No schedule {schedule_id}.")
    return row


@bp.route("/maintenance/schedules/<int:schedule_id>", methods=["GET", "POST"])
@role_required("admin")
def schedule_edit(schedule_id: int):
    row = _row_or_404(schedule_id)
    action = ACTIONS.get(row["action"])
    if action is None:
        abort(404, description=f"Schedule {row['name']} names an unknown action {row['action']!r}.")
    if request.method == "POST":
        if row["provisioned"]:
            abort(409, description="This schedule comes from the configuration file: change it there.")
        return _save(row)
    form = _form(row)
    return _editor(form, action, row["params"], row)


@bp.post("/maintenance/schedules/<int:schedule_id>/delete")
@role_required("admin")
def schedule_delete(schedule_id: int):
    row = _row_or_404(schedule_id)
    if not ButtonForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        schedules.delete_schedule(get_db(), row["id"], by=web.actor())
        flash(f"Schedule {row['name']} deleted.", "ok")
    except schedules.ScheduleError as exc:
        flash(exc.reason, "crit")
    return redirect(url_for("maintenance.schedule_list"))


