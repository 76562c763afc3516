"""Forms of the users page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Regexp

from panel.auth.principal import ROLES
from panel.auth.users import USERNAME, USERNAME_RULE

ROLE_CHOICES = [SelectChoice(role) for role in ROLES]


class InviteForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64),
                                                   Regexp(USERNAME, message=f"Usernames are {USERNAME_RULE}.")])
    role = SelectField("Role", choices=ROLE_CHOICES, default="viewer")
    submit = SubmitField("Invite")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")
