"""JSON API: hosts, one host's overview (polled by the overview page), disk usage."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from panel.api.disk import disk_report
from panel.auth.principal import role_required
from panel.db import get_db
from panel.hosts.overview import all_summaries, find_host, list_hosts, load_readings, overview_of

bp = Blueprint("api", __name__, url_prefix="/api")


def _stale_after() -> float:
    return current_app.config["STALE_AFTER_SECONDS"]


@bp.get("/hosts")
@role_required("viewer")
def hosts():
    summaries = all_summaries(get_db(), _stale_after())
    return jsonify(hosts=summaries, layout=",".join(h["name"] for h in summaries),
                   stale_after_seconds=_stale_after())


@bp.get("/hosts/<name>/overview")
@role_required("viewer")
def host_overview(name: str):
    data = overview_of(get_db(), name, _stale_after())
    if data is None:
        abort(404, f"unknown host {name!r}")
    return jsonify(data)


@bp.get("/admin/system/disk")
@role_required("viewer")
def system_disk():
    """Disk usage of ``?host=NAME``; without it, of the only host (400 when there are several)."""
    conn = get_db()
    name = request.args.get("host", "").strip()
    if name:
        host = find_host(conn, name, _stale_after())
        if host is None:
            abort(404, f"unknown host {name!r}")
    else:
        known = list_hosts(conn, _stale_after())
        if not known:
            abort(404, "no host has reported yet")
        if len(known) > 1:
            names = [h["name"] for h in known]
            return jsonify(error=f"several hosts report: choose one with ?host=NAME ({', '.join(names)})",
                           hosts=names), 400
        host = known[0]
    readings = load_readings(conn, [host["id"]], _stale_after())[host["id"]]
    return jsonify(disk_report(host, readings))
