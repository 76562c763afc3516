"""``/api/admin/system/components|performance|docker`` in the seed dashboard's shapes, numbers in bytes.

The seed printed strings ("12.3 GB") from shell commands run per request; these are built from the
agent's latest samples (``latest``), so a request costs one query, whatever the number of tabs open.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from panel.hosts.history import growth_24h
from panel.hosts.overview import Readings, component_sizes, iso, number

TOP_COMPONENTS = ["postgresql", "ergoNode", "logs", "backups"]
GENERIC_LOG_FILES = {"access", "error", "stdout", "stderr", "debug", "info", "log", "current", "output", "app",
                     "main", "server", "daemon"}


def _meta(host: dict[str, Any], readings: Readings, names: set[str]) -> dict[str, Any]:
    return {"host": host["name"], "timestamp": iso(readings.newest(names)), "stale": host["status"] != "online"}


def _sum(readings: Readings, name: str) -> float | None:
    values = [r.value for r in readings.items if r.name == name]
    return number(sum(values)) if values else None


def _by(readings: Readings, name: str, label: str) -> dict[str, float]:
    return {key: number(r.value) for key, r in sorted(readings.by_label(name, label).items())}


def log_group(path: str, file: str) -> str:
    """Which service a log file belongs to: the file name's first word (``miningcore-solo.log`` ->
    ``miningcore``), or its directory's name when the file's is generic (``nginx/access.log`` -> ``nginx``)."""
    word = re.split(r"[-_.]", file, maxsplit=1)[0].lower()
    if word and word not in GENERIC_LOG_FILES:
        return word
    return path.rstrip("/").rsplit("/", 1)[-1].lower() or word or file


def components_report(conn: psycopg.Connection, host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    sizes = component_sizes(readings)
    growth = growth_24h(conn, host["id"], "poolwarden_component_size_bytes", "component",
                        ["postgresql", "ergoNode", "ergo_node", "logs", "backups"])
    growth["ergoNode"] = growth.get("ergoNode") if growth.get("ergoNode") is not None else growth.get("ergo_node")
    parts = {r.labels.get("component", ""): number(r.value) for r in readings.items
             if r.name == "poolwarden_component_size_bytes" and r.labels.get("component", "").startswith("ergoNode.")}
    logs: dict[str, Any] = {}
    for r in readings.items:
        if r.name == "poolwarden_log_file_size_bytes":
            key = log_group(r.labels.get("path", ""), r.labels.get("file", ""))
            logs[key] = logs.get(key, 0) + number(r.value)
    rotation = [bool(r.value) for r in readings.items if r.name == "poolwarden_log_rotation_configured"]
    database_size = _sum(readings, "poolwarden_postgres_database_size_bytes")
    backup_ages = [r.value for r in readings.items if r.name == "poolwarden_backup_newest_age_seconds"]
    names = {"poolwarden_component_size_bytes", "poolwarden_postgres_table_size_bytes",
             "poolwarden_log_file_size_bytes", "poolwarden_docker_images_size_bytes"}
    return {
        **_meta(host, readings, names),
        "components": {
            "postgresql": {
                "total": sizes["postgresql"] if sizes["postgresql"] is not None else database_size,
                "tables": dict(sorted(_by(readings, "poolwarden_postgres_table_size_bytes", "table").items(),
                                      key=lambda item: -item[1])),
                "growth24h": number(growth.get("postgresql")),
            },
            "ergoNode": {
                "total": sizes["ergoNode"],
                "chainData": parts.get("ergoNode.history"),
                "utxo": parts.get("ergoNode.state"),
                "other": parts.get("ergoNode.other"),
                "growth24h": number(growth.get("ergoNode")),
            },
            "logs": {
                **logs,
                "total": sizes["logs"],
                "rotationEnabled": all(rotation) if rotation else None,
                "growth24h": number(growth.get("logs")),
            },
            "backups": {
                "total": sizes["backups"],
                "files": _sum(readings, "poolwarden_backup_files"),
                "newestAgeSeconds": number(min(backup_ages)) if backup_ages else None,
                "growth24h": number(growth.get("backups")),
            },
            "docker": {
                "images": _sum(readings, "poolwarden_docker_images_size_bytes"),
                "containers": _sum(readings, "poolwarden_container_rw_size_bytes"),
                "volumes": _sum(readings, "poolwarden_docker_volume_size_bytes"),
                "buildCache": _sum(readings, "poolwarden_docker_build_cache_bytes"),
            },
        },
    }


def performance_report(host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    total = readings.one("poolwarden_memory_total_bytes")
    used = readings.one("poolwarden_memory_used_bytes")
    cores = readings.by_label("poolwarden_cpu_core_usage_percent", "core")
    rx = _by(readings, "poolwarden_net_receive_bytes_per_second", "interface")
    tx = _by(readings, "poolwarden_net_transmit_bytes_per_second", "interface")
    reads = _by(readings, "poolwarden_diskio_read_bytes_per_second", "device")
    writes = _by(readings, "poolwarden_diskio_write_bytes_per_second", "device")
    busy = _by(readings, "poolwarden_diskio_busy_percent", "device")
    names = {"poolwarden_cpu_usage_percent", "poolwarden_memory_used_bytes", "poolwarden_load1"}
    return {
        **_meta(host, readings, names),
        "cpu": {
            "usage": number(readings.one("poolwarden_cpu_usage_percent")),
            "iowait": number(readings.one("poolwarden_cpu_iowait_percent")),
            "count": number(readings.one("poolwarden_cpu_count")),
            "cores": [number(cores[k].value) for k in sorted(cores, key=lambda c: (len(c), c))],
            "containers": _by(readings, "poolwarden_container_cpu_percent", "container"),
        },
        "memory": {
            "total": number(total),
            "used": number(used),
            "available": number(readings.one("poolwarden_memory_available_bytes")),
            "usagePercent": round(used / total * 100, 1) if used is not None and total else None,
            "swapTotal": number(readings.one("poolwarden_swap_total_bytes")),
            "swapUsed": number(readings.one("poolwarden_swap_used_bytes")),
            "containers": _by(readings, "poolwarden_container_memory_usage_bytes", "container"),
        },
        "network": {
            "inbound": number(sum(rx.values())) if rx else None,
            "outbound": number(sum(tx.values())) if tx else None,
            "interfaces": {name: {"inbound": rx.get(name), "outbound": tx.get(name)} for name in sorted({*rx, *tx})},
        },
        "disk": {
            "read": number(sum(reads.values())) if reads else None,
            "write": number(sum(writes.values())) if writes else None,
            "devices": {dev: {"read": reads.get(dev), "write": writes.get(dev), "busyPercent": busy.get(dev)}
                        for dev in sorted({*reads, *writes})},
        },
        "load": {
            "1min": readings.one("poolwarden_load1"),
            "5min": readings.one("poolwarden_load5"),
            "15min": readings.one("poolwarden_load15"),
        },
    }


CONTAINER_FIELDS = {
    "running": "poolwarden_container_running",
    "cpu": "poolwarden_container_cpu_percent",
    "memory": "poolwarden_container_memory_usage_bytes",
    "memoryLimit": "poolwarden_container_memory_limit_bytes",
    "netIn": "poolwarden_container_network_receive_bytes_per_second",
    "netOut": "poolwarden_container_network_transmit_bytes_per_second",
    "restarts": "poolwarden_container_restart_count",
    "restartsObserved": "poolwarden_container_restarts_observed_total",
    "oomKilled": "poolwarden_container_oom_killed",
    "uptime": "poolwarden_container_uptime_seconds",
}


def container_rows(readings: Readings) -> list[dict[str, Any]]:
    """One row per container the agent reports, by name."""
    info = readings.by_label("poolwarden_container_status_info", "container")
    found = {name: {} for name in info}
    for field, metric in CONTAINER_FIELDS.items():
        for name, r in readings.by_label(metric, "container").items():
            found.setdefault(name, {})[field] = number(r.value)
    rows = []
    for name in sorted(found):
        values = found[name]
        labels = info[name].labels if name in info else {}
        row = {"name": name, "status": labels.get("state") or None, "health": labels.get("health") or None,
               "image": labels.get("image") or None}
        row.update({field: values.get(field) for field in CONTAINER_FIELDS})
        row["running"] = None if row["running"] is None else bool(row["running"])
        row["oomKilled"] = None if row["oomKilled"] is None else bool(row["oomKilled"])
        rows.append(row)
    return rows


def docker_report(host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    return {**_meta(host, readings, set(CONTAINER_FIELDS.values())), "containers": container_rows(readings)}
