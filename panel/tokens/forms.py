"""Forms of the /tokens page: create a token, revoke one (every POST carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp

from panel.auth.principal import ROLES, role_rank

EXPIRY_CHOICES = [SelectChoice(value, label) for value, label in (
    ("", "never"), ("1", "1 day"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year"))]


class CreateTokenForm(FlaskForm):
    name = StringField("Name", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                       validators=[DataRequired(), Length(max=80),
                                   Regexp(r"^[\w .:@/-]+$", message="letters, digits, space and . : @ / - _ only")],
                       description="what uses it, e.g. grafana")
    role = SelectField("Role", choices=[])
    expires_in_days = SelectField("Expires", choices=EXPIRY_CHOICES, default="90")

    def __init__(self, creator_role: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a token never gets more than its creator's role
        self.role.choices = [SelectChoice(r) for r in ROLES if role_rank(r) <= role_rank(creator_role)]

    @property
    def expiry_days(self) -> int | None:
        return int(self.expires_in_days.data) if self.expires_in_days.data else None


class RevokeTokenForm(FlaskForm):
    """One button per token."""
