"""JSON API: hosts, one host's overview (polled by the overview page), graph series, and the
``/api/admin/system/*`` reports in the seed dashboard's shapes."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request

from panel.api.disk import disk_report
from panel.api.system import components_report, docker_report, performance_report
from panel.auth.principal import role_required
from panel.db import get_db
from panel.engine.rollups import Retention
from panel.hosts.history import DEFAULT_RANGE, BadQuery, parse_labels, series_history
from panel.hosts.overview import all_summaries, find_host, list_hosts, load_readings, overview_of

bp = Blueprint("api", __name__, url_prefix="/api")


def _stale_after() -> float:
    return current_app.config["STALE_AFTER_SECONDS"]


class SeveralHosts(Exception):
    def __init__(self, names: list[str]):
        self.names = names


@bp.errorhandler(SeveralHosts)
def _several_hosts(exc: SeveralHosts):
    return jsonify(error=f"several hosts report: choose one with ?host=NAME ({', '.join(exc.names)})",
                   hosts=exc.names), 400


@bp.errorhandler(BadQuery)
def _bad_query(exc: BadQuery):
    return jsonify(error=str(exc)), 400


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


@bp.get("/hosts/<name>/series")
@role_required("viewer")
def host_series(name: str):
    """``?name=METRIC`` (repeatable) ``&labels=k=v,k2=a|b&range=1h|24h|7d|30d``: points for graphs."""
    conn = get_db()
    host = find_host(conn, name, _stale_after())
    if host is None:
        abort(404, f"unknown host {name!r}")
    names = [n for n in request.args.getlist("name") if n]
    data = series_history(conn, host["id"], names, parse_labels(request.args.get("labels", "")),
                          request.args.get("range", DEFAULT_RANGE), Retention.from_config(current_app.config))
    return jsonify(host=host["name"], **data)


def _chosen_host():
    """``?host=NAME``; without it the only host (SeveralHosts when there are more)."""
    conn = get_db()
    name = request.args.get("host", "").strip()
    if name:
        host = find_host(conn, name, _stale_after())
        if host is None:
            abort(404, f"unknown host {name!r}")
        return host
    known = list_hosts(conn, _stale_after())
    if not known:
        abort(404, "no host has reported yet")
    if len(known) > 1:
        raise SeveralHosts([h["name"] for h in known])
    return known[0]


def _readings(host):
    return load_readings(get_db(), [host["id"]], _stale_after())[host["id"]]


@bp.get("/admin/system/disk")
@role_required("viewer")
def system_disk():
    """Disk usage of ``?host=NAME``; without it, of the only host (400 when there are several)."""
    host = _chosen_host()
    return jsonify(disk_report(host, _readings(host)))


@bp.get("/admin/system/components")
@role_required("viewer")
def system_components():
    """Sizes of PostgreSQL (per table), the Ergo node's data, logs, backups and Docker, with 24 h growth."""
    host = _chosen_host()
    return jsonify(components_report(get_db(), host, _readings(host)))


@bp.get("/admin/system/performance")
@role_required("viewer")
def system_performance():
    """CPU (per core, per container), memory, network and disk I/O rates, load."""
    host = _chosen_host()
    return jsonify(performance_report(host, _readings(host)))


@bp.get("/admin/system/docker")
@role_required("viewer")
def system_docker():
    """The host's containers: state, health, CPU, memory, restarts, uptime."""
    host = _chosen_host()
    return jsonify(docker_report(host, _readings(host)))
