"""Maintenance forms: parameter inputs generated from the catalogue's ``Param`` specs, and the
Flask-WTF forms every state-changing button posts (so each carries a CSRF token)."""

from __future__ import annotations

import json
from typing import Any

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, HiddenField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from agent.contract import ACTIONS, Action, Param
from panel.maintenance.dispatch import MaintenanceRefused
from panel.maintenance.store import STATUSES

TRUE_WORDS = {"true", "on", "1", "yes"}
FALSE_WORDS = {"false", "off", "0", "no", ""}


def param_inputs(action: Action, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What the template needs to draw each parameter's input, filled with ``values`` or the defaults."""
    values = values or {}
    out = []
    for p in action.params:
        value = values.get(p.name, p.default)
        item = {"name": p.name, "kind": p.kind, "help": p.help, "required": p.required, "value": value,
                "minimum": p.minimum, "maximum": p.maximum, "choices": list(p.choices),
                "label": p.name.replace("_", " ").capitalize()}
        if p.kind == "choices":
            item["checked"] = set(value or [])
        out.append(item)
    return out


def _one(p: Param, form: MultiDict) -> Any:
    if p.name not in form:
        return None  # not sent: the default applies
    values = form.getlist(p.name)
    if p.kind == "bool":
        word = (values[-1] or "").strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise MaintenanceRefused(400, f"{p.name}: must be true or false, got {values[-1]!r}", p.name)
    if p.kind == "int":
        text = (values[-1] or "").strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise MaintenanceRefused(400, f"{p.name}: must be a whole number, got {text!r}", p.name) from None
    if p.kind == "choices":
        return [v for v in values if v]  # an empty marker comes first so that "none ticked" is seen
    text = values[-1]
    return text if text != "" else None


def params_from_form(action: Action, form: MultiDict) -> dict[str, Any]:
    """Typed (not yet validated) parameters from a form or query string: bools from checkboxes
    (a hidden "false" before each), lists from repeated names, numbers from text."""
    return {p.name: value for p in action.params if (value := _one(p, form)) is not None}


def params_to_query(params: dict[str, Any]) -> list[tuple[str, str]]:
    """The confirmation page's query string for ``params`` (the inverse of ``params_from_form``)."""
    pairs = []
    for name, value in params.items():
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, list):
            pairs.append((name, ""))
            pairs.extend((name, str(v)) for v in value)
        else:
            pairs.append((name, str(value)))
    return pairs


def needs_post(action: Action) -> bool:
    """A parameter too large for a link (a whole config.json) makes the form a POST."""
    return any(p.kind == "json_text" for p in action.params)


class RunForm(FlaskForm):
    """The confirmation's button: the parameters travel as the JSON the confirmation showed."""

    params = HiddenField(validators=[DataRequired()])

    def parsed(self) -> Any:
        try:
            return json.loads(self.params.data or "")
        except json.JSONDecodeError:
            raise MaintenanceRefused(400, "params: the confirmation form was damaged; start again", "params") from None


class ButtonForm(FlaskForm):
    """A one-button form (cancel, delete): only the CSRF token."""


class SafeModeForm(FlaskForm):
    state = HiddenField(validators=[DataRequired()])
    reason = StringField("Reason", validators=[DataRequired(message="Say why: it is shown to everyone."),
                                               Length(max=200)],
                         description="e.g. incident: database restore in progress")


class ScheduleForm(FlaskForm):
    """Name, host, cadence, enabled; the action's parameters are drawn from ``param_inputs``."""

    name = StringField("Name", validators=[DataRequired(), Length(max=80)], description="e.g. nightly-backup")
    host = SelectField("Host", choices=[], validate_choice=False)
    action = HiddenField(validators=[DataRequired()])
    cadence = StringField("When (UTC)", validators=[DataRequired(), Length(max=60)],
                          description="daily at 03:00 · weekly on sunday at 04:30 · every 6 hours")
    enabled = BooleanField("Enabled", default=True)


class JobFilterForm(FlaskForm):
    """History filters (GET, no CSRF)."""

    class Meta:
        csrf = False

    action = SelectField("Action", choices=[SelectChoice("", "any")] + [SelectChoice(a.name, a.title)
                                                                         for a in ACTIONS.values()],
                         validators=[Optional()])
    status = SelectField("Status", choices=[SelectChoice("", "any")] + [SelectChoice(s, s) for s in STATUSES],
                         validators=[Optional()])
