"""The allowlist editor."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import Length


class AllowlistForm(FlaskForm):
    entries = TextAreaField("Allowed networks", validators=[Length(max=20_000)],
                            render_kw={"rows": 12, "spellcheck": "false"})
    submit = SubmitField("Save allowlist")
