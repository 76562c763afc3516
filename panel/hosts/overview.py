"""What the overview shows for a host, assembled from the ``latest`` table.

The page (server-rendered) and ``/api/hosts/<name>/overview`` (polled by the page's script) share
this one structure, so the numbers the script writes are the numbers the page was rendered with.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from agent.contract import valid_host_name

DISK_WARNING_PERCENT = 80
DISK_CRITICAL_PERCENT = 90
# Ergo's headers run ahead of full blocks for a moment after each block: one block is not "behind".
SYNCED_MAX_LAG_BLOCKS = 1
COMPONENT_KEYS = {"postgresql": "postgresql", "ergonode": "ergoNode", "logs": "logs", "backups": "backups"}


@dataclass(frozen=True, slots=True)
class Reading:
    name: str
    labels: dict[str, str]
    ts: datetime
    value: float


class Readings:
    """The current latest values of one host's series, with lookups by metric and label."""

    def __init__(self, readings: list[Reading], stale_after: float):
        # A series whose newest value is much older than its siblings' (a mount that went away,
        # a pool no longer configured) is history, not the present: leave it out.
        newest_by_name: dict[str, datetime] = {}
        for r in readings:
            newest_by_name[r.name] = max(r.ts, newest_by_name.get(r.name, r.ts))
        grace = timedelta(seconds=stale_after)
        self.items = [r for r in readings if r.ts >= newest_by_name[r.name] - grace]

    def one(self, name: str) -> float | None:
        found = [r for r in self.items if r.name == name]
        return max(found, key=lambda r: r.ts).value if found else None

    def by_label(self, name: str, label: str) -> dict[str, Reading]:
        return {r.labels.get(label, ""): r for r in self.items if r.name == name}

    def newest(self, names: set[str] | None = None) -> datetime | None:
        stamps = [r.ts for r in self.items if names is None or r.name in names]
        return max(stamps) if stamps else None


# -- queries ------------------------------------------------------------------------------------

HOST_COLUMNS = (
    "id, name, first_seen, last_seen, agent_version, last_batch_ts, "
    "EXTRACT(EPOCH FROM now() - last_seen)::float8 AS age_seconds"
)


def list_hosts(conn: psycopg.Connection, stale_after: float) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {HOST_COLUMNS} FROM hosts ORDER BY name").fetchall()
    return [host_status(row, stale_after) for row in rows]


def find_host(conn: psycopg.Connection, name: str, stale_after: float) -> dict[str, Any] | None:
    if not valid_host_name(name):  # the engine never stores another name (and PostgreSQL refuses NUL)
        return None
    row = conn.execute(f"SELECT {HOST_COLUMNS} FROM hosts WHERE name = %s", (name,)).fetchone()
    return host_status(row, stale_after) if row else None


def load_readings(conn: psycopg.Connection, host_ids: list[int], stale_after: float) -> dict[int, Readings]:
    rows = conn.execute(
        "SELECT s.host_id, s.name, s.labels, l.ts, l.value FROM latest l "
        "JOIN series s ON s.id = l.series_id WHERE s.host_id = ANY(%s)",
        (host_ids,),
    ).fetchall()
    grouped: dict[int, list[Reading]] = defaultdict(list)
    for row in rows:
        grouped[row["host_id"]].append(Reading(row["name"], row["labels"], row["ts"], row["value"]))
    return {host_id: Readings(grouped.get(host_id, []), stale_after) for host_id in host_ids}


def host_status(row: dict[str, Any], stale_after: float) -> dict[str, Any]:
    """Online while the engine received an entry from the host within ``stale_after`` seconds.

    Judged on the panel database's clock (``last_seen``), so a skewed agent clock cannot make a
    host look alive or dead.
    """
    age = max(0.0, row["age_seconds"])
    return {
        "id": row["id"],
        "name": row["name"],
        "status": "online" if age <= stale_after else "stale",
        "last_seen": iso(row["last_seen"]),
        "last_seen_age_seconds": round(age),
        "agent_version": row["agent_version"] or None,
        "last_batch_ts": iso(row["last_batch_ts"]),
        "first_seen": iso(row["first_seen"]),
    }


def public_host(host: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in host.items() if k != "id"}


# -- assembly -----------------------------------------------------------------------------------


def build_overview(host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    disks = disk_mounts(readings)
    pools = pool_stats(readings)
    node = node_stats(readings)
    collector_up = readings.by_label("poolwarden_collector_up", "collector")
    collectors = {name: {"up": bool(r.value)} for name, r in sorted(collector_up.items())}
    layout = "|".join([",".join(disks), ",".join(pools), "node" if node else "", ",".join(collectors)])
    return {
        "host": public_host(host),
        "timestamp": iso(readings.newest()),
        "layout": layout,
        "system": system_stats(readings),
        "disks": disks,
        "main_mount": main_mount(disks),
        "components": component_sizes(readings),
        "pools": pools,
        "node": node,
        "collectors": collectors,
        "failing_collectors": [name for name, c in collectors.items() if not c["up"]],
    }


def host_summary(host: dict[str, Any], readings: Readings) -> dict[str, Any]:
    """The few numbers of the hosts list."""
    overview = build_overview(host, readings)
    disk = overview["disks"].get(overview["main_mount"] or "", {})
    hashrates = [p["hashrate"] for p in overview["pools"].values() if p["hashrate"] is not None]
    node = overview["node"] or {}
    return {
        **overview["host"],
        "disk_mount": overview["main_mount"],
        "disk_percent": disk.get("percent"),
        "disk_level": disk.get("level", "unknown"),
        "cpu_percent": overview["system"]["cpu_percent"],
        "memory_percent": overview["system"]["memory_percent"],
        "load1": overview["system"]["load1"],
        "pool_hashrate": sum(hashrates) if hashrates else None,
        "pools": list(overview["pools"]),
        "node_sync": node.get("sync_text"),
        "node_state": node.get("state", "unknown"),
        "failing_collectors": overview["failing_collectors"],
    }


def system_stats(readings: Readings) -> dict[str, Any]:
    total = readings.one("poolwarden_memory_total_bytes")
    used = readings.one("poolwarden_memory_used_bytes")
    cpu = readings.one("poolwarden_cpu_usage_percent")
    memory_percent = percent(used, total)
    return {
        "cpu_percent": round(cpu, 1) if cpu is not None else None,
        "cpu_level": level(cpu),
        "cpu_count": number(readings.one("poolwarden_cpu_count")),
        "memory_total": number(total),
        "memory_used": number(used),
        "memory_percent": memory_percent,
        "memory_level": level(memory_percent),
        "swap_total": number(readings.one("poolwarden_swap_total_bytes")),
        "swap_used": number(readings.one("poolwarden_swap_used_bytes")),
        "load1": readings.one("poolwarden_load1"),
        "load5": readings.one("poolwarden_load5"),
        "load15": readings.one("poolwarden_load15"),
    }


def disk_mounts(readings: Readings) -> dict[str, dict[str, Any]]:
    """Per mount: device, fstype and sizes in bytes; "/" first, then by mount point."""
    metrics = {"total": "poolwarden_disk_total_bytes", "used": "poolwarden_disk_used_bytes",
               "free": "poolwarden_disk_free_bytes"}
    mounts: dict[str, dict[str, Any]] = {}
    for field, metric in metrics.items():
        for mount, r in readings.by_label(metric, "mount").items():
            disk = mounts.setdefault(mount, {"mount": mount, "device": None, "fstype": None, "total": None,
                                             "used": None, "free": None, "ts": r.ts})
            disk[field] = number(r.value)
            disk["device"] = disk["device"] or r.labels.get("device")
            disk["fstype"] = disk["fstype"] or r.labels.get("fstype")
            disk["ts"] = max(disk["ts"], r.ts)
    for disk in mounts.values():
        disk["percent"] = disk_percent(disk["used"], disk["free"], disk["total"])
        disk["level"] = level(disk["percent"])
    return dict(sorted(mounts.items(), key=lambda item: (item[0] != "/", item[0])))


def disk_percent(used: float | None, free: float | None, total: float | None) -> float | None:
    """Use as ``df`` shows it: used / (used + available). Blocks reserved for root are not available
    to the pool's processes, so this reaches 100 % exactly when their writes start failing."""
    if used is not None and free is not None and total:
        return percent(used, used + free)
    return percent(used, total)


def main_mount(disks: dict[str, dict[str, Any]]) -> str | None:
    """The mount the headline figure describes: "/" when reported, else the largest."""
    if "/" in disks:
        return "/"
    if not disks:
        return None
    return max(disks.values(), key=lambda d: (d["total"] or 0, d["mount"]))["mount"]


def component_sizes(readings: Readings) -> dict[str, int | None]:
    """Bytes per pool component (several paths of one component add up); None when not measured."""
    sizes: dict[str, int | None] = dict.fromkeys(COMPONENT_KEYS.values())
    for r in readings.items:
        if r.name != "poolwarden_component_size_bytes":
            continue
        raw = r.labels.get("component", "")
        key = COMPONENT_KEYS.get(raw.lower().replace("_", "").replace("-", ""))
        if key:
            sizes[key] = (sizes[key] or 0) + number(r.value)
    return sizes


def component_timestamp(readings: Readings) -> datetime | None:
    return readings.newest({"poolwarden_component_size_bytes"})


POOL_METRICS = {
    "up": "poolwarden_pool_up",
    "hashrate": "poolwarden_pool_hashrate_hps",
    "miners": "poolwarden_pool_miners",
    "shares_per_second": "poolwarden_pool_shares_per_second",
    "effort_ratio": "poolwarden_pool_effort_ratio",
    "blocks": "poolwarden_pool_blocks_total",
    "fee_percent": "poolwarden_pool_fee_percent",
    "last_block_ts": "poolwarden_pool_last_block_timestamp_seconds",
    "network_hashrate": "poolwarden_network_hashrate_hps",
    "network_difficulty": "poolwarden_network_difficulty",
    "network_height": "poolwarden_network_height",
    "network_peers": "poolwarden_network_peers",
}


def pool_stats(readings: Readings) -> dict[str, dict[str, Any]]:
    pools: dict[str, dict[str, Any]] = {}
    for field, metric in POOL_METRICS.items():
        for pool, r in readings.by_label(metric, "pool").items():
            pools.setdefault(pool, {"pool": pool, **dict.fromkeys(POOL_METRICS)})[field] = number(r.value)
    for pool in pools.values():
        ratio = pool.pop("effort_ratio")
        pool["effort_percent"] = round(ratio * 100, 1) if ratio is not None else None
        pool["up"] = None if pool["up"] is None else bool(pool["up"])
        pool["state"] = {True: "up", False: "down", None: "unknown"}[pool["up"]]
    return dict(sorted(pools.items()))


def node_stats(readings: Readings) -> dict[str, Any] | None:
    fields = {
        "up": "poolwarden_node_up",
        "full_height": "poolwarden_node_full_height",
        "headers_height": "poolwarden_node_headers_height",
        "max_peer_height": "poolwarden_node_max_peer_height",
        "sync_lag": "poolwarden_node_sync_lag_blocks",
        "peers": "poolwarden_node_peers",
        "mempool": "poolwarden_node_mempool_transactions",
        "difficulty": "poolwarden_node_difficulty",
    }
    node = {field: number(readings.one(metric)) for field, metric in fields.items()}
    if all(v is None for v in node.values()):
        return None
    if node["sync_lag"] is None and node["full_height"] is not None:
        heights = (node["headers_height"], node["max_peer_height"], node["full_height"])
        reference = max(h for h in heights if h is not None)
        node["sync_lag"] = reference - node["full_height"]
    node["up"] = None if node["up"] is None else bool(node["up"])
    lag = node["sync_lag"]
    node["synced"] = None if lag is None else lag <= SYNCED_MAX_LAG_BLOCKS
    node["sync_text"] = "unknown" if lag is None else "synced" if node["synced"] else f"{lag:,} blocks behind"
    if node["up"] is False:
        node["state"] = "down"
    elif node["synced"] is False:
        node["state"] = "syncing"
    else:
        node["state"] = "up" if node["up"] else "unknown"
    return node


# -- small conversions ----------------------------------------------------------------------------


def number(value: float | None) -> int | float | None:
    """Whole numbers as int (bytes, heights, counts), others unchanged."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def percent(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None:
        return None
    if whole <= 0:
        return 0.0
    return round(part / whole * 100, 1)


def level(pct: float | None) -> str:
    if pct is None:
        return "unknown"
    if pct >= DISK_CRITICAL_PERCENT:
        return "crit"
    if pct >= DISK_WARNING_PERCENT:
        return "warn"
    return "ok"


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, to the second."""
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- entry points for the pages and the API ---------------------------------------------------------


def all_summaries(conn: psycopg.Connection, stale_after: float) -> list[dict[str, Any]]:
    hosts = list_hosts(conn, stale_after)
    readings = load_readings(conn, [h["id"] for h in hosts], stale_after)
    return [host_summary(h, readings[h["id"]]) for h in hosts]


def overview_of(conn: psycopg.Connection, name: str, stale_after: float) -> dict[str, Any] | None:
    host = find_host(conn, name, stale_after)
    if host is None:
        return None
    return build_overview(host, load_readings(conn, [host["id"]], stale_after)[host["id"]])
