"""Forms of the notification pages; every POST carries a CSRF token.

Channel forms are built from each channel kind's field list, so a new kind needs no form code.
Dates and times in the silence form are UTC, as the page says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from panel.notify.acks import MAX_SNOOZE_MINUTES
from panel.notify.channels import channel_class
from panel.notify.silences import WEEKDAYS
from panel.notify.store import DEFAULT_TIMINGS, SEVERITIES

DURATIONS = [SelectChoice(v, label) for v, label in (
    ("30", "30 minutes"), ("60", "1 hour"), ("120", "2 hours"), ("240", "4 hours"), ("480", "8 hours"),
    ("720", "12 hours"), ("1440", "1 day"), ("2880", "2 days"), ("10080", "7 days"))]
SNOOZES = [("15", "15 min"), ("60", "1 h"), ("240", "4 h"), ("1440", "1 day")]
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def parse_utc(text: str | None, what: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM`` (a datetime-local input) read as UTC; None when empty."""
    if not text or not text.strip():
        return None
    for fmt in (LOCAL_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{what}: write a UTC date and time as YYYY-MM-DD HH:MM, got {text.strip()!r}")


class SilenceForm(FlaskForm):
    matchers = TextAreaField("Matchers", filters=[_strip], validators=[DataRequired(), Length(max=4000)],
                             render_kw={"rows": 4, "spellcheck": "false",
                                        "placeholder": 'host=pool-1\nalertname=~"Disk.*"'})
    kind = SelectField("When", choices=[SelectChoice("once", "Once"),
                                        SelectChoice("weekly", "Every week (maintenance window)")], default="once")
    starts_at = StringField("Starts (UTC)", filters=[_strip], render_kw={"type": "datetime-local"},
                            description="empty: now")
    duration = SelectField("Lasts", choices=DURATIONS, default="120")
    ends_at = StringField("Or ends (UTC)", filters=[_strip], render_kw={"type": "datetime-local"},
                          description="overrides Lasts")
    weekdays = MultiCheckboxField("Weekdays", choices=[SelectChoice(str(n), name) for n, name in enumerate(WEEKDAYS)],
                                  default=[])
    window_start = StringField("Window starts (UTC)", filters=[_strip], default="03:00",
                               render_kw={"type": "time"})
    window_minutes = IntegerField("Window length (minutes)", default=60,
                                  validators=[Optional(), NumberRange(1, 7 * 24 * 60)])
    until = StringField("Repeat until (UTC)", filters=[_strip], render_kw={"type": "date"},
                        description="empty: until expired")
    comment = StringField("Comment", filters=[_strip], validators=[Length(max=500)],
                          render_kw={"placeholder": "why, e.g. disk replacement on pool-1"})

    def window(self, now: datetime) -> tuple[datetime | None, datetime | None, dict | None]:
        """``(starts_at, ends_at, recurrence)`` from the form; ValueError says what is wrong."""
        starts = parse_utc(self.starts_at.data, "Starts")
        if self.kind.data == "weekly":
            if not self.weekdays.data:
                raise ValueError("Weekdays: choose at least one day")
            until = parse_utc(self.until.data, "Repeat until")
            recurrence = {"weekdays": sorted(int(d) for d in self.weekdays.data),
                          "start": (self.window_start.data or "").strip()[:5],
                          "duration_minutes": self.window_minutes.data or 0}
            return starts, until + timedelta(days=1) if until else None, recurrence
        ends = parse_utc(self.ends_at.data, "Ends")
        if ends is None:
            ends = (starts or now) + timedelta(minutes=int(self.duration.data))
        return starts, ends, None


class EmptyForm(FlaskForm):
    """A one-button form (acknowledge, expire, test, delete): it exists for its CSRF token."""

    next = HiddenField()


class SnoozeForm(FlaskForm):
    minutes = IntegerField("Snooze for (minutes)", validators=[DataRequired(), NumberRange(1, MAX_SNOOZE_MINUTES)])
    next = HiddenField()


def channel_form(kind: str, *, provisioned: bool = False, formdata=None, data: dict | None = None) -> FlaskForm:
    """A form for one channel kind: name, enabled, then the kind's own fields (secrets as password inputs)."""
    cls = channel_class(kind)
    attrs = {
        "name": StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=64)],
                            render_kw={"placeholder": f"e.g. ops-{'mail' if kind == 'email' else kind}"}),
        "enabled": BooleanField("Enabled", default=True),
    }
    for spec in cls.fields:
        kw = {"description": spec.help, "render_kw": {}}
        if spec.secret:
            attrs[spec.key] = PasswordField(spec.label, filters=[_strip], **kw)
        elif spec.kind == "choice":
            attrs[spec.key] = SelectField(spec.label, choices=[SelectChoice(c, c) for c in spec.choices],
                                          default=spec.default, **kw)
        else:
            if spec.kind == "int":
                kw["render_kw"]["inputmode"] = "numeric"
            attrs[spec.key] = StringField(spec.label, filters=[_strip], default=spec.default, **kw)
        if provisioned:
            attrs[spec.key].kwargs["render_kw"]["disabled"] = True
    form_cls = type(f"{kind.capitalize()}ChannelForm", (FlaskForm,), attrs)
    form = form_cls(formdata=formdata, data=data) if formdata is not None or data is not None else form_cls()
    form.channel_fields = cls.fields
    return form


class RouteForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=64)])
    severities = MultiCheckboxField("Severities", choices=[SelectChoice(s, s) for s in SEVERITIES],
                                    default=list(SEVERITIES))
    matchers = TextAreaField("Matchers (all must match)", filters=[_strip], validators=[Length(max=4000)],
                             render_kw={"rows": 3, "spellcheck": "false", "placeholder": "component=pool"})
    integrations = MultiCheckboxField("Channels", choices=[])
    group_by = StringField("Group by labels", filters=[_strip], default="alertname, host",
                           description="comma-separated; ... groups nothing together")
    group_wait = IntegerField("Group wait (s)", default=DEFAULT_TIMINGS["groupWaitSeconds"])
    group_interval = IntegerField("Group interval (s)", default=DEFAULT_TIMINGS["groupIntervalSeconds"])
    repeat_interval = IntegerField("Repeat interval (s)", default=DEFAULT_TIMINGS["repeatIntervalSeconds"])
    continue_matching = BooleanField("Continue to later routes")
    enabled = BooleanField("Enabled", default=True)
