"""``GET /metrics``: every host's latest values in the Prometheus text format (version 0.0.4).

Each series of the ``latest`` table becomes one line with a ``host`` label added (a series label
already called ``host`` is kept as ``exported_host``); HELP and TYPE come from the agent's metric
catalogue (``agent.contract.METRICS``): names ending in ``_total`` are counters, the rest gauges.
Series a host stopped sending (a mount that went away) are left out as on the overview page, and
``poolwarden_panel_host_online{host}`` tells whether each host is still reporting.

Like every route it needs a login: a session (a person in a browser) or an API token sent as
``Authorization: Bearer`` (Prometheus, ``authorization: credentials_file``); see docs/dashboards.md.
"""

from __future__ import annotations

import math
from collections import defaultdict

from flask import Blueprint, Response, current_app

from agent.contract import METRICS
from panel.auth.principal import role_required
from panel.db import get_db
from panel.hosts.overview import list_hosts, load_readings

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HOST_ONLINE = "poolwarden_panel_host_online"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def series_line(name: str, labels: dict[str, str], value: float) -> str:
    pairs = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
    return f"{name}{{{pairs}}} {format_value(value)}"


def exposition(conn, stale_after: float) -> str:
    hosts = list_hosts(conn, stale_after)
    readings = load_readings(conn, [h["id"] for h in hosts], stale_after)
    families: dict[str, list[str]] = defaultdict(list)
    for host in hosts:
        families[HOST_ONLINE].append(series_line(HOST_ONLINE, {"host": host["name"]},
                                                 1.0 if host["status"] == "online" else 0.0))
        for r in sorted(readings[host["id"]].items, key=lambda r: (r.name, sorted(r.labels.items()))):
            labels = {"host": host["name"]}
            labels.update({("exported_host" if k == "host" else k): v for k, v in sorted(r.labels.items())})
            families[r.name].append(series_line(r.name, labels, r.value))
    out = []
    for name in sorted(families):
        if name == HOST_ONLINE:
            help_text = "1 if the host's agent sent a batch within the panel's stale interval"
        else:
            unit, _labels, help_text = METRICS.get(name, ("", (), "reported by the agent (not in the catalogue)"))
            help_text = f"{help_text} ({unit})" if unit else help_text
        kind = "counter" if name.endswith("_total") else "gauge"
        out.append(f"# HELP {name} {escape_help(help_text)}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(families[name])
    return "\n".join(out) + "\n"


@bp.get("/metrics")
@role_required("viewer")
def metrics():
    body = exposition(get_db(), current_app.config["STALE_AFTER_SECONDS"])
    return Response(body, content_type=CONTENT_TYPE)
