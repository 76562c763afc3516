"""Pages: silences (list, create, expire), acknowledge and snooze an alert.

The channel and route pages are in ``integration_routes`` (same blueprint). Operators may
silence, acknowledge and snooze; viewers see the silences.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from panel.auth.principal import has_role, role_required
from panel.auth.stepup import is_local_target
from panel.db import get_db
from panel.notify.acks import AlertActionError, acknowledge, snooze
from panel.notify.forms import SNOOZES, EmptyForm, SilenceForm, SnoozeForm
from panel.notify.matchers import MatcherError, as_text, parse_lines
from panel.notify.silences import SilenceError, create_silence, expire_silence, list_silences

bp = Blueprint("notify", __name__)


def actor() -> str:
    return f"{g.principal.kind}:{g.principal.name}"


def back(default: str) -> str:
    """The form's local ``next``, else the page it was posted from (same host), else ``default``."""
    target = request.form.get("next") or ""
    if is_local_target(target):
        return target
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        path = referrer.path + (f"?{referrer.query}" if referrer.query else "")
        if is_local_target(path):
            return path
    return default


def _silences_page(form: SilenceForm, status: int = 200, error: str | None = None):
    now = datetime.now(UTC)
    silences = list_silences(get_db(), now, limit=50)
    return render_template("notify/silences.html", form=form, silences=silences, now=now, error=error,
                           expire_form=EmptyForm(), can_edit=has_role(g.principal, "operator"),
                           as_text=as_text), status


@bp.get("/silences")
@role_required("viewer")
def silences():
    form = SilenceForm(formdata=None)
    prefill = request.args.getlist("matcher")
    if prefill:
        form.matchers.data = "\n".join(m for m in prefill if len(m) < 500)
    if request.args.get("comment"):
        form.comment.data = request.args["comment"][:500]
    return _silences_page(form)


@bp.post("/silences")
@role_required("operator")
def create():
    form = SilenceForm()
    if not form.validate_on_submit():
        return _silences_page(form, 400)
    try:
        matchers = [m.as_dict() for m in parse_lines(form.matchers.data)]
        starts, ends, recurrence = form.window(datetime.now(UTC))
        silence_id = create_silence(get_db(), matchers=matchers, starts_at=starts, ends_at=ends, created_by=actor(),
                                    comment=form.comment.data or "", source="user", recurrence=recurrence)
    except (MatcherError, SilenceError, ValueError) as exc:
        return _silences_page(form, 400, error=str(exc))
    flash(f"Silence {silence_id} created.", "ok")
    return redirect(url_for("notify.silences"))


@bp.post("/silences/<int:silence_id>/expire")
@role_required("operator")
def expire(silence_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        expired = expire_silence(get_db(), silence_id, actor())
    except SilenceError:
        abort(404, description=f"No silence {silence_id}.")
    flash(f"Silence {silence_id} expired: what it held back and still fires is notified now." if expired
          else f"Silence {silence_id} had already ended.", "ok" if expired else "warn")
    return redirect(url_for("notify.silences"))


@bp.post("/alerts/<int:alert_id>/acknowledge", endpoint="acknowledge")
@role_required("operator")
def acknowledge_alert(alert_id: int):
    if not EmptyForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    try:
        acknowledge(get_db(), alert_id, actor())
    except AlertActionError as exc:
        abort(exc.status, description=str(exc))
    flash(f"Alert {alert_id} acknowledged: no more repeats; its resolution will still be sent.", "ok")
    return redirect(back("/"))


@bp.post("/alerts/<int:alert_id>/snooze", endpoint="snooze")
@role_required("operator")
def snooze_alert(alert_id: int):
    form = SnoozeForm()
    if not form.validate_on_submit():
        problems = "; ".join(e for errors in form.errors.values() for e in errors)
        abort(400, description=f"Snooze not accepted: {problems}")
    try:
        result = snooze(get_db(), alert_id, form.minutes.data, actor())
    except AlertActionError as exc:
        abort(exc.status, description=str(exc))
    flash(f"Alert {alert_id} snoozed until {result['snoozedUntil'].replace('T', ' ').rstrip('Z')} UTC.", "ok")
    return redirect(back("/"))


@bp.app_context_processor
def notify_template_helpers():
    """For the alert pages that post to ``notify.acknowledge`` / ``notify.snooze``: the usual snooze lengths."""
    return {"snooze_choices": SNOOZES}


from panel.notify import integration_routes  # noqa: E402,F401 - the channel pages on this blueprint
