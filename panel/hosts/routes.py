"""Host pages: the list of hosts, one host's overview, its pools and its Ergo node."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from panel.api.system import components_report, container_rows
from panel.auth.principal import role_required
from panel.db import get_db
from panel.hosts.formatting import register_filters
from panel.hosts.history import RANGES
from panel.hosts.overview import all_summaries, build_overview, find_host, load_readings
from panel.hosts.pool import recent_blocks, recent_payments

bp = Blueprint("hosts", __name__)
register_filters(bp)


def _stale_after() -> float:
    return current_app.config["STALE_AFTER_SECONDS"]


def _host_or_404(name: str):
    conn = get_db()
    host = find_host(conn, name, _stale_after())
    if host is None:
        abort(404, f"No host named {name!r} has reported to this panel.")
    readings = load_readings(conn, [host["id"]], _stale_after())[host["id"]]
    return host, readings


@bp.get("/")
@role_required("viewer")
def index():
    hosts = all_summaries(get_db(), _stale_after())
    return render_template("hosts/index.html", hosts=hosts, stale_after=_stale_after())


@bp.get("/hosts/<name>")
@role_required("viewer")
def overview(name: str):
    host, readings = _host_or_404(name)
    return render_template("hosts/overview.html", ov=build_overview(host, readings), stale_after=_stale_after(),
                           containers=container_rows(readings), ranges=RANGES,
                           components=components_report(get_db(), host, readings)["components"])


@bp.get("/hosts/<name>/pools/<pool>")
@role_required("viewer")
def pool(name: str, pool: str):
    host, readings = _host_or_404(name)
    ov = build_overview(host, readings)
    if pool not in ov["pools"]:
        abort(404, f"{name} reports no pool named {pool!r}.")
    conn = get_db()
    return render_template("hosts/pool.html", ov=ov, pool=ov["pools"][pool], pool_id=pool, ranges=RANGES,
                           blocks=recent_blocks(conn, host["id"], pool),
                           payments=recent_payments(conn, host["id"], pool), stale_after=_stale_after())


@bp.get("/hosts/<name>/node")
@role_required("viewer")
def node(name: str):
    host, readings = _host_or_404(name)
    ov = build_overview(host, readings)
    tip_age = readings.one("poolwarden_node_tip_age_seconds")
    return render_template("hosts/node.html", ov=ov, node=ov["node"], tip_age=tip_age, ranges=RANGES,
                           stale_after=_stale_after())
