"""Host pages: the list of hosts and one host's overview."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from panel.auth.principal import role_required
from panel.db import get_db
from panel.hosts.formatting import register_filters
from panel.hosts.overview import all_summaries, overview_of

bp = Blueprint("hosts", __name__)
register_filters(bp)


@bp.get("/")
@role_required("viewer")
def index():
    stale_after = current_app.config["STALE_AFTER_SECONDS"]
    hosts = all_summaries(get_db(), stale_after)
    return render_template("hosts/index.html", hosts=hosts, stale_after=stale_after)


@bp.get("/hosts/<name>")
@role_required("viewer")
def overview(name: str):
    data = overview_of(get_db(), name, current_app.config["STALE_AFTER_SECONDS"])
    if data is None:
        abort(404, f"No host named {name!r} has reported to this panel.")
    return render_template("hosts/overview.html", ov=data, stale_after=current_app.config["STALE_AFTER_SECONDS"])
