"""Alert page forms: the rule editor (common settings here, the type's parameters read beside them),
the JSON import, one-button posts, and the filters of the lists (GET forms, no CSRF)."""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from panel.alerts.durations import format_duration
from panel.alerts.rules import Rule
from panel.alerts.types.base import SEVERITIES, RuleType

PARAM_PREFIX = "p_"
# Where a problem of parse_rule ("rule.<key>...") is shown in the form.
COMMON_FIELDS = {"for": "pending", "keepFiringFor": "keep", "severity": "severity", "enabled": "enabled",
                 "labels": "labels", "matchers": "matchers", "type": "type", "summary": "summary",
                 "description": "description", "runbook": "runbook"}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class RuleForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=64)],
                       description="letters, digits, _ . - (it becomes the alertname label)")
    severity = SelectField("Severity", choices=[SelectChoice(s, s) for s in SEVERITIES], default="warning")
    pending = StringField("Pending for", filters=[_strip], default="0s",
                          description="how long the condition must hold before the alert fires (for)")
    keep = StringField("Keep firing for", filters=[_strip], default="0s",
                       description="how long a firing alert stays after its condition cleared")
    enabled = BooleanField("Enabled", default=True)
    matchers = TextAreaField("Label matchers", filters=[_strip], validators=[Length(max=4000)],
                             description='one per line: mount!~"/boot.*", host=pool-1 (=, !=, =~, !~)')
    labels = TextAreaField("Extra labels", filters=[_strip], validators=[Length(max=4000)],
                           description="one per line: team=ops (added to every alert of the rule)")
    summary = StringField("Summary", filters=[_strip], validators=[Length(max=2000)],
                          description="leave empty for the type's; {host}, {mount}, {value}... are filled in")
    description = TextAreaField("Description", filters=[_strip], validators=[Length(max=2000)])
    runbook = StringField("Runbook link", filters=[_strip], validators=[Length(max=2000)])

    def body(self, kind: RuleType, formdata: MultiDict) -> dict[str, Any]:
        """The rule as an alerts.json object, from the form and the type's parameter inputs."""
        body: dict[str, Any] = {"type": kind.name, "severity": self.severity.data, "for": self.pending.data or "0s",
                                "keepFiringFor": self.keep.data or "0s", "enabled": bool(self.enabled.data)}
        for param in kind.params:
            value = param_value(param, formdata)
            if value is not _MISSING:
                body[param.name] = value
        body["matchers"] = [line.strip() for line in (self.matchers.data or "").splitlines() if line.strip()]
        labels: dict[str, Any] = {}
        for line in (self.labels.data or "").splitlines():
            if line.strip():
                key, sep, value = line.partition("=")
                labels[key.strip()] = value.strip() if sep else None   # None: the parser says what is wrong
        body["labels"] = labels
        body["annotations"] = {k: getattr(self, k).data for k in ("summary", "description", "runbook")
                               if getattr(self, k).data}
        return body

    def fill(self, rule: Rule) -> None:
        self.name.data = rule.name
        self.severity.data = rule.severity
        self.pending.data = format_duration(rule.for_seconds)
        self.keep.data = format_duration(rule.keep_firing_seconds)
        self.enabled.data = rule.enabled
        self.matchers.data = "\n".join(rule.matchers)
        self.labels.data = "\n".join(f"{k}={v}" for k, v in rule.labels.items())
        for key in ("summary", "description", "runbook"):
            getattr(self, key).data = rule.annotations.get(key, "")


_MISSING = object()


def param_value(param, formdata: MultiDict) -> Any:
    """A parameter's JSON value from its input; _MISSING when left empty (the default applies)."""
    key = PARAM_PREFIX + param.name
    if param.kind == "bool":
        return key in formdata
    if param.kind == "choices":
        return formdata.getlist(key)
    raw = (formdata.get(key) or "").strip()
    if raw == "":
        return None if param.optional else _MISSING
    if param.kind in ("number", "integer"):
        try:
            number = float(raw)
        except ValueError:
            return raw   # the parser explains what a number is
        return int(number) if number.is_integer() and re.fullmatch(r"-?\d+(\.0*)?", raw) else number
    return raw


def param_text(param, value: Any) -> Any:
    """What a parameter's input shows for a value."""
    if value is None:
        return ""
    if param.kind == "duration" and isinstance(value, int | float):
        return format_duration(value)
    return value


def problems_by_field(problems: list[tuple[str, str]], kind: RuleType | None) -> dict[str, list[str]]:
    """parse_rule's problems ("rule.warningPercent") keyed by the form field that shows them."""
    params = {p.name for p in kind.params} if kind else set()
    out: dict[str, list[str]] = {}
    for field, reason in problems:
        key = field.split(".", 1)[1] if "." in field else "name"
        head = re.split(r"[.\[]", key, maxsplit=1)[0]
        if head in params:
            target = PARAM_PREFIX + head
        elif head in COMMON_FIELDS:
            target = COMMON_FIELDS[head]
        elif head == "annotations":
            target = key.split(".", 1)[1] if "." in key else "summary"
        else:
            target = "name" if field == "rule" else "_form"
        out.setdefault(target, []).append(reason if target != "_form" else f"{key}: {reason}")
    return out


class ImportForm(FlaskForm):
    document = TextAreaField("Rules (alerts.json)", filters=[_strip], validators=[DataRequired(),
                                                                               Length(max=1_000_000)])
    mode = SelectField("Mode", choices=[SelectChoice("merge", "Add and update these rules"),
                                        SelectChoice("replace", "Replace every rule made in the UI")], default="merge")


class EmptyForm(FlaskForm):
    """A one-button form (delete): it exists for its CSRF token."""
