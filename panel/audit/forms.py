"""Audit page forms: the filters (a GET form, no CSRF needed) and the "verify now" button."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, StringField
from wtforms.validators import NumberRange, Optional, ValidationError


class AuditFilterForm(FlaskForm):
    """Read from the query string; every field optional."""

    class Meta:
        csrf = False

    actor = StringField("Actor", validators=[Optional()], description="part of the actor, e.g. alice")
    action = StringField("Action", validators=[Optional()], description="exact, or a prefix like user")
    object_type = StringField("Object type", validators=[Optional()])
    object_id = StringField("Object id", validators=[Optional()])
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])
    page = IntegerField("Page", default=1, validators=[Optional(), NumberRange(min=1, max=100_000)])

    def validate_until(self, field):
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("'To' is before 'From'.")

    def filters(self) -> dict:
        """The filter values the query uses (blank fields left out)."""
        names = ("actor", "action", "object_type", "object_id", "since", "until")
        found = {}
        for name in names:
            value = getattr(self, name).data
            if isinstance(value, str):
                value = value.strip()
            if value:
                found[name] = value
        return found


class VerifyForm(FlaskForm):
    """One button: verify the chain now (POST, so it carries a CSRF token)."""
