"""The OpenAPI 3.0 document of ``/api``, served at ``/api/openapi.json`` (same authentication as the API).

The document is written by hand next to the routes it describes; ``tests/panel/test_openapi_fuzz.py``
checks that every ``/api`` rule in the URL map is described and fuzzes the API against it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify

from panel.auth.principal import role_required
from panel.hosts.history import RANGES

bp = Blueprint("openapi", __name__, url_prefix="/api")

OPENAPI_VERSION = "3.0.3"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "required": sorted(properties), "properties": properties,
            "additionalProperties": extra}


STRING = {"type": "string"}
NUMBER = {"type": "number"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
N_STRING, N_NUMBER, N_INTEGER, N_BOOLEAN = (_nullable(s) for s in (STRING, NUMBER, INTEGER, BOOLEAN))
TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC, to the second (…Z)"}
N_TIMESTAMP = _nullable(TIMESTAMP)
LEVEL = {"type": "string", "enum": ["ok", "warn", "crit", "unknown"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


HOST_STATUS = {
    "name": STRING,
    "status": {"type": "string", "enum": ["online", "stale"]},
    "last_seen": TIMESTAMP,
    "last_seen_age_seconds": {"type": "integer", "minimum": 0},
    "agent_version": N_STRING,
    "last_batch_ts": N_TIMESTAMP,
    "first_seen": TIMESTAMP,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": True,
        "properties": {"error": {"type": "string", "description": "what went wrong, for a human"}},
    },
    "HostStatus": _object(HOST_STATUS),
    "HostSummary": _object({
        **HOST_STATUS,
        "disk_mount": N_STRING, "disk_percent": N_NUMBER, "disk_level": LEVEL,
        "cpu_percent": N_NUMBER, "memory_percent": N_NUMBER, "load1": N_NUMBER, "pool_hashrate": N_NUMBER,
        "pools": {"type": "array", "items": STRING},
        "node_sync": N_STRING, "node_state": STRING,
        "failing_collectors": {"type": "array", "items": STRING},
    }),
    "HostList": _object({
        "hosts": {"type": "array", "items": _ref("HostSummary")},
        "layout": {"type": "string", "description": "host names joined by commas (the page reloads when it changes)"},
        "stale_after_seconds": NUMBER,
    }),
    "Components": _object({name: N_INTEGER for name in ("postgresql", "ergoNode", "logs", "backups")}),
    "SystemStats": _object({
        "cpu_percent": N_NUMBER, "cpu_level": LEVEL, "cpu_count": N_INTEGER,
        "memory_total": N_NUMBER, "memory_used": N_NUMBER, "memory_percent": N_NUMBER, "memory_level": LEVEL,
        "swap_total": N_NUMBER, "swap_used": N_NUMBER, "load1": N_NUMBER, "load5": N_NUMBER, "load15": N_NUMBER,
    }),
    "Disk": _object({
        "mount": STRING, "device": N_STRING, "fstype": N_STRING,
        "total": N_NUMBER, "used": N_NUMBER, "free": N_NUMBER, "percent": N_NUMBER, "level": LEVEL,
        "ts": {"type": "string", "description": "time of the newest reading (HTTP date)"},
    }),
    "Pool": _object({
        "pool": STRING, "up": N_BOOLEAN, "state": {"type": "string", "enum": ["up", "down", "unknown"]},
        **{name: N_NUMBER for name in ("hashrate", "miners", "shares_per_second", "blocks", "fee_percent",
                                       "last_block_ts", "network_hashrate", "network_difficulty",
                                       "network_height", "network_peers", "effort_percent")},
    }),
    "Node": _nullable(_object({
        "up": N_BOOLEAN, "synced": N_BOOLEAN, "sync_text": STRING,
        "state": {"type": "string", "enum": ["up", "down", "syncing", "unknown"]},
        **{name: N_NUMBER for name in ("full_height", "headers_height", "max_peer_height", "sync_lag", "peers",
                                       "mempool", "difficulty")},
    })),
    "HostOverview": _object({
        "host": _ref("HostStatus"),
        "timestamp": N_TIMESTAMP,
        "layout": STRING,
        "system": _ref("SystemStats"),
        "disks": {"type": "object", "additionalProperties": _ref("Disk"), "description": "by mount point"},
        "main_mount": N_STRING,
        "components": _ref("Components"),
        "pools": {"type": "object", "additionalProperties": _ref("Pool"), "description": "by pool id"},
        "node": _ref("Node"),
        "collectors": {"type": "object", "additionalProperties": _object({"up": BOOLEAN})},
        "failing_collectors": {"type": "array", "items": STRING},
    }),
    "DiskMount": _object({
        "mount": STRING, "device": N_STRING, "fstype": N_STRING,
        "total": N_NUMBER, "used": N_NUMBER, "free": N_NUMBER, "usagePercent": N_NUMBER,
    }),
    "DiskReport": _object({
        "host": STRING, "mount": N_STRING,
        "total": N_NUMBER, "used": N_NUMBER, "free": N_NUMBER, "usagePercent": N_NUMBER,
        "components": _ref("Components"),
        "mounts": {"type": "array", "items": _ref("DiskMount")},
        "timestamp": N_TIMESTAMP,
        "stale": BOOLEAN,
    }),
    "Series": _object({
        "host": STRING,
        "range": {"type": "string", "enum": list(RANGES)},
        "resolution": {"type": "string", "enum": ["raw", "1m", "1h"],
                       "description": "source: raw samples, 1-minute or 1-hour rollups"},
        "step": {"type": "integer", "description": "seconds between points (each point averages its step)"},
        "from": TIMESTAMP, "to": TIMESTAMP,
        "timestamps": {"type": "array", "items": INTEGER, "description": "unix seconds, start of each step"},
        "truncated": {"type": "boolean",
                      "description": "more series matched than a graph shows (48): the busiest are returned"},
        "series": {"type": "array", "items": _object({
            "name": STRING,
            "labels": {"type": "object", "additionalProperties": STRING},
            "values": {"type": "array", "items": N_NUMBER, "description": "one per timestamp; null: no sample"},
        })},
    }),
    "SystemComponents": _object({
        "host": STRING, "timestamp": N_TIMESTAMP, "stale": BOOLEAN,
        "components": _object({
            "postgresql": _object({"total": N_INTEGER, "growth24h": N_NUMBER,
                                   "tables": {"type": "object", "additionalProperties": INTEGER,
                                              "description": "bytes per table (table, indexes, TOAST)"}}),
            "ergoNode": _object({"total": N_INTEGER, "chainData": N_INTEGER, "utxo": N_INTEGER, "other": N_INTEGER,
                                 "growth24h": N_NUMBER}),
            "logs": {**_object({"total": N_INTEGER, "rotationEnabled": N_BOOLEAN, "growth24h": N_NUMBER}),
                     "additionalProperties": INTEGER,
                     "description": "plus bytes of active log files per service (miningcore, nginx, ...)"},
            "backups": _object({"total": N_INTEGER, "files": N_INTEGER, "newestAgeSeconds": N_NUMBER,
                                "growth24h": N_NUMBER}),
            "docker": _object({"images": N_INTEGER, "containers": N_INTEGER, "volumes": N_INTEGER,
                               "buildCache": N_INTEGER}),
        }),
    }),
    "SystemPerformance": _object({
        "host": STRING, "timestamp": N_TIMESTAMP, "stale": BOOLEAN,
        "cpu": _object({"usage": N_NUMBER, "iowait": N_NUMBER, "count": N_INTEGER,
                        "cores": {"type": "array", "items": NUMBER, "description": "percent busy per core"},
                        "containers": {"type": "object", "additionalProperties": NUMBER,
                                       "description": "percent per container, 100 = one core"}}),
        "memory": _object({"total": N_INTEGER, "used": N_INTEGER, "available": N_INTEGER, "usagePercent": N_NUMBER,
                           "swapTotal": N_INTEGER, "swapUsed": N_INTEGER,
                           "containers": {"type": "object", "additionalProperties": NUMBER,
                                          "description": "bytes per container"}}),
        "network": _object({"inbound": N_NUMBER, "outbound": N_NUMBER,
                            "interfaces": {"type": "object", "additionalProperties": _object(
                                {"inbound": N_NUMBER, "outbound": N_NUMBER})}}),
        "disk": _object({"read": N_NUMBER, "write": N_NUMBER,
                         "devices": {"type": "object", "additionalProperties": _object(
                             {"read": N_NUMBER, "write": N_NUMBER, "busyPercent": N_NUMBER})}}),
        "load": _object({"1min": N_NUMBER, "5min": N_NUMBER, "15min": N_NUMBER}),
    }),
    "SystemDocker": _object({
        "host": STRING, "timestamp": N_TIMESTAMP, "stale": BOOLEAN,
        "containers": {"type": "array", "items": _object({
            "name": STRING, "status": N_STRING, "health": N_STRING, "image": N_STRING, "running": N_BOOLEAN,
            "oomKilled": N_BOOLEAN,
            **{name: N_NUMBER for name in ("cpu", "memory", "memoryLimit", "netIn", "netOut", "restarts",
                                           "restartsObserved", "uptime")},
        })},
    }),
    "SeveralHosts": {
        "type": "object", "required": ["error", "hosts"], "additionalProperties": False,
        "properties": {"error": STRING, "hosts": {"type": "array", "items": STRING}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


COMMON_RESPONSES = {
    "401": _error("No valid credentials: missing, unknown, expired or revoked token"),
    "403": _error("The token's (or user's) role is too low for this route"),
    "429": {**_error("Too many requests with this token; wait Retry-After seconds"),
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}},
    "503": _error("The panel database is unreachable or not migrated"),
}


def _operation(summary: str, operation_id: str, responses: dict[str, Any], role: str = "viewer",
               parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op = {
        "summary": summary, "operationId": operation_id, "tags": ["monitoring"],
        "description": f"Needs the {role} role.", "x-required-role": role,
        "responses": {**responses, **COMMON_RESPONSES},
    }
    if parameters:
        op["parameters"] = parameters
    return op


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call)."""
    from panel.alerts import openapi as alerts_openapi
    from panel.maintenance import openapi as maintenance_openapi
    from panel.notify import openapi as notify_openapi

    host_name = {"name": "name", "in": "path", "required": True, "description": "host name as its agent reports it",
                 "schema": {"type": "string", "minLength": 1}}
    host_query = {"name": "host", "in": "query", "required": False,
                  "description": "host name; optional when only one host reports", "schema": {"type": "string"}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "poolwarden panel API",
            "version": "1",
            "description": "Read-only monitoring API of the poolwarden panel. Authenticate with an API token "
                           "created on the panel's Tokens page: `Authorization: Bearer pw_<id>_<secret>`. "
                           "Requests are limited per token (600 a minute by default). Errors are JSON "
                           "`{\"error\": \"...\"}`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/openapi.json": {"get": _operation(
                "This document", "getOpenAPI",
                {"200": {"description": "OpenAPI document",
                         "content": {"application/json": {"schema": {"type": "object"}}}}})},
            "/api/hosts": {"get": _operation(
                "Every host with its headline figures", "listHosts", {"200": _ok("Hosts, by name", "HostList")})},
            "/api/hosts/{name}/overview": {"get": _operation(
                "One host's overview: system, disks, components, pools, node, collectors", "getHostOverview",
                {"200": _ok("The overview", "HostOverview"), "404": _error("No host of that name")},
                parameters=[host_name])},
            "/api/admin/system/disk": {"get": _operation(
                "Disk usage of one host in bytes (the shape of the dashboard poolwarden replaces)",
                "getSystemDisk",
                {"200": _ok("Disk usage", "DiskReport"),
                 "400": {"description": "Several hosts report and no ?host= was given",
                         "content": {"application/json": {"schema": _ref("SeveralHosts")}}},
                 "404": _error("No such host, or no host has reported yet")},
                parameters=[host_query])},
            "/api/hosts/{name}/series": {"get": _operation(
                "History of one host's metrics for graphs: about 700 points whatever the range",
                "getHostSeries",
                {"200": _ok("Points aligned on one time axis", "Series"),
                 "400": _error("Bad range, no name, too many names or matching series"),
                 "404": _error("No host of that name")},
                parameters=[host_name,
                            {"name": "name", "in": "query", "required": True, "style": "form", "explode": True,
                             "description": "metric name (repeat for several, up to 8)",
                             "schema": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                            {"name": "labels", "in": "query", "required": False,
                             "description": "label filter: key=value, several with commas, alternatives with | "
                                            "(component=postgresql|logs)", "schema": {"type": "string"}},
                            {"name": "range", "in": "query", "required": False,
                             "schema": {"type": "string", "enum": list(RANGES), "default": "24h"}}])},
            **{f"/api/admin/system/{part}": {"get": _operation(
                summary, f"getSystem{part.capitalize()}",
                {"200": _ok(summary, schema),
                 "400": {"description": "Several hosts report and no ?host= was given",
                         "content": {"application/json": {"schema": _ref("SeveralHosts")}}},
                 "404": _error("No such host, or no host has reported yet")},
                parameters=[host_query])}
               for part, schema, summary in [
                   ("components", "SystemComponents",
                    "Sizes in bytes of PostgreSQL (per table), Ergo node data, logs, backups and Docker, "
                    "with growth over 24 h"),
                   ("performance", "SystemPerformance",
                    "CPU (per core, per container), memory, network and disk I/O in bytes/s, load"),
                   ("docker", "SystemDocker", "Containers: state, health, CPU %, memory bytes, restarts, uptime"),
               ]},
            **maintenance_openapi.paths(),
            **alerts_openapi.paths(),
            **notify_openapi.paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "pw_<id>_<secret>"},
            },
            "schemas": {**SCHEMAS, **maintenance_openapi.schemas(), **alerts_openapi.schemas(),
                        **notify_openapi.schemas()},
        },
    }


def with_live_roles(doc: dict[str, Any], app: Flask) -> dict[str, Any]:
    """Fill each operation's ``x-required-role`` from the role its view declares (``role_required``)."""
    for rule in app.url_map.iter_rules():
        path = _openapi_path(rule.rule)
        view = app.view_functions.get(rule.endpoint)
        role = getattr(view, "required_role", None)
        for method, op in doc["paths"].get(path, {}).items():
            if role and method.upper() in (rule.methods or ()):
                op["x-required-role"] = role
                op["description"] = f"Needs the {role} role."
    return doc


def _openapi_path(rule: str) -> str:
    """``/api/hosts/<name>/overview`` -> ``/api/hosts/{name}/overview`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@bp.get("/openapi.json")
@role_required("viewer")
def openapi_json():
    return jsonify(with_live_roles(document(), current_app))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
