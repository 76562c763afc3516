"""The /tokens page: list API tokens with their last use, create one (shown once), revoke one."""

from __future__ import annotations

from flask import Blueprint, abort, g, make_response, redirect, render_template, url_for

from panel.auth.principal import role_required
from panel.db import get_db
from panel.tokens.forms import CreateTokenForm, RevokeTokenForm
from panel.tokens.store import TokenError, create_token, list_tokens, revoke_token

bp = Blueprint("tokens", __name__)


def _page(form: CreateTokenForm, created=None, status: int = 200):
    response = make_response(render_template(
        "tokens/index.html", form=form, tokens=list_tokens(get_db()), created=created,
        revoke_form=RevokeTokenForm()), status)
    response.headers["Cache-Control"] = "no-store"  # the page may show a token once
    return response


@bp.get("/tokens")
@role_required("admin")
def index():
    return _page(CreateTokenForm(g.principal.role))


@bp.post("/tokens")
@role_required("admin")
def create():
    form = CreateTokenForm(g.principal.role)
    if not form.validate_on_submit():
        return _page(form, status=400)
    try:
        created = create_token(get_db(), name=form.name.data, role=form.role.data, owner=g.principal,
                               expires_in_days=form.expiry_days)
    except TokenError as exc:
        form.name.errors = [*form.name.errors, str(exc)]
        return _page(form, status=400)
    return _page(CreateTokenForm(g.principal.role, formdata=None), created=created, status=201)


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("admin")
def revoke(token_id: int):
    form = RevokeTokenForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    if revoke_token(get_db(), token_id) is None:
        abort(404, description=f"No API token {token_id}.")
    return redirect(url_for("tokens.index"))
