"""The contract between the agent and the panel.

This is the only agent module the panel imports. It fixes:

* the record shapes that travel over Redis (samples, events, batches),
* the Redis key names,
* the metric names every collector may emit, with their unit and meaning.

Keep it dependency-free (standard library only) so both sides can import it cheaply.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CONTRACT_VERSION = 1

# --- Redis keys -------------------------------------------------------------------------------

STREAM_PREFIX = "pw:samples:"
"""Each agent appends its batches to ``pw:samples:<host>``; the host is part of the key, so the
panel learns a batch's host from where it was written, never from the payload."""

ENGINE_GROUP = "pw-engine"
"""Consumer group the panel's engine reads the sample streams with."""

STREAM_MAXLEN = 100_000
"""Approximate cap on a host's stream, so a stopped engine cannot fill Redis."""


def stream_key(host: str) -> str:
    return STREAM_PREFIX + host


def host_from_stream_key(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.decode()
    if not key.startswith(STREAM_PREFIX):
        raise ValueError(f"not a sample stream key: {key!r}")
    return key[len(STREAM_PREFIX):]


HOST_NAME_RULE = "1-63 characters: letters, digits, '-', '_' or '.'"


def valid_host_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name or ""))


# --- Records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement: ``{name, labels, value, ts}``; the host is implied by the stream."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    ts: float = 0.0  # unix seconds; 0 means "the batch's ts"

    def to_wire(self) -> list[Any]:
        return [self.name, self.labels, self.value, self.ts]

    @classmethod
    def from_wire(cls, item: list[Any]) -> Sample:
        name, labels, value, ts = item
        return cls(name=str(name), value=float(value), labels=dict(labels or {}), ts=float(ts))


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened once. ``id`` is stable so that replays are idempotent."""

    id: str
    kind: str
    ts: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "ts": self.ts, "data": self.data}

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> Event:
        return cls(id=str(item["id"]), kind=str(item["kind"]), ts=float(item["ts"]), data=dict(item.get("data") or {}))


EVENT_KINDS = {
    "agent_started": "the agent process started (data: version, pid, config summary)",
    "block_found": "a pool block appeared (data: pool, height, miner)",
    "block_confirmed": "a pool block became confirmed",
    "block_orphaned": "a pool block was orphaned",
    "payment_sent": "a payout transaction was recorded",
    "payment_failed": "a payout failed",
    "container_restarted": "a watched container restarted",
}


@dataclass(slots=True)
class Batch:
    """What one collection cycle sends: one Redis stream entry.

    ``id`` is chosen by the agent and is unique per batch; the engine stores it, so a batch that
    arrives twice (a spool replay, a retried XADD) is ingested once.
    """

    ts: float
    samples: list[Sample]
    events: list[Event] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    agent_version: str = ""

    def to_fields(self) -> dict[str, str]:
        body = {
            "v": CONTRACT_VERSION,
            "id": self.id,
            "seq": self.seq,
            "ts": self.ts,
            "agent": self.agent_version,
            "samples": [s.to_wire() for s in self.samples],
            "events": [e.to_wire() for e in self.events],
        }
        return {"batch": json.dumps(body, separators=(",", ":"), allow_nan=False)}

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Batch:
        raw = fields.get("batch", fields.get(b"batch"))
        if raw is None:
            raise ValueError("stream entry has no 'batch' field")
        body = json.loads(raw)
        if body.get("v") != CONTRACT_VERSION:
            raise ValueError(f"unsupported batch version {body.get('v')!r}")
        return cls(
            id=str(body["id"]),
            seq=int(body.get("seq", 0)),
            ts=float(body["ts"]),
            agent_version=str(body.get("agent", "")),
            samples=[Sample.from_wire(s) for s in body.get("samples", [])],
            events=[Event.from_wire(e) for e in body.get("events", [])],
        )


def now() -> float:
    return time.time()


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# --- Metric catalogue -------------------------------------------------------------------------
# name -> (unit, labels, help). Collectors declare which of these they emit; tests assert the
# exact sets. The panel uses the catalogue to label and format values.

METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    # agent itself
    "poolwarden_collector_up": ("bool", ("collector",), "1 if the collector's last run succeeded"),
    "poolwarden_collector_duration_seconds": ("seconds", ("collector",), "time the collector's last run took"),
    "poolwarden_agent_info": ("info", ("version",), "always 1; labels carry the agent version"),
    "poolwarden_spool_batches": ("count", (), "batches waiting in the agent's on-disk spool (Redis unreachable)"),
    "poolwarden_spool_dropped_total": (
        "count", (), "batches the agent dropped from a full spool since it started (oldest first)"),
    # host: disk
    "poolwarden_disk_total_bytes": ("bytes", ("mount", "device", "fstype"), "filesystem size"),
    "poolwarden_disk_used_bytes": ("bytes", ("mount", "device", "fstype"), "bytes in use"),
    "poolwarden_disk_free_bytes": ("bytes", ("mount", "device", "fstype"), "bytes available to unprivileged users"),
    # host: components
    "poolwarden_component_size_bytes": ("bytes", ("component", "path"), "size of a pool component on disk"),
    # host: cpu, memory, load
    "poolwarden_cpu_usage_percent": ("percent", (), "CPU busy over the last interval, all cores"),
    "poolwarden_cpu_count": ("count", (), "logical CPUs"),
    "poolwarden_memory_total_bytes": ("bytes", (), "physical memory"),
    "poolwarden_memory_used_bytes": ("bytes", (), "memory in use (total - available)"),
    "poolwarden_memory_available_bytes": ("bytes", (), "memory available for new work"),
    "poolwarden_swap_total_bytes": ("bytes", (), "swap size"),
    "poolwarden_swap_used_bytes": ("bytes", (), "swap in use"),
    "poolwarden_load1": ("load", (), "1-minute load average"),
    "poolwarden_load5": ("load", (), "5-minute load average"),
    "poolwarden_load15": ("load", (), "15-minute load average"),
    # Miningcore
    "poolwarden_pool_up": ("bool", ("pool",), "1 if Miningcore's API answered for this pool"),
    "poolwarden_pool_api_response_seconds": ("seconds", (), "time Miningcore's /api/pools took to answer"),
    "poolwarden_pool_hashrate_hps": ("H/s", ("pool",), "pool hashrate (latest poolstats row)"),
    "poolwarden_pool_miners": ("count", ("pool",), "miners with shares in the hashrate window"),
    "poolwarden_pool_shares_per_second": ("shares/s", ("pool",), "shares per second (Miningcore truncates)"),
    "poolwarden_pool_effort_ratio": ("ratio", ("pool",), "current round effort, 1.0 = 100 %"),
    "poolwarden_pool_blocks_total": ("count", ("pool",), "blocks found, all states"),
    "poolwarden_pool_paid_total": ("coins", ("pool",), "sum of all payments"),
    "poolwarden_pool_fee_percent": ("percent", ("pool",), "pool fee"),
    "poolwarden_pool_last_block_timestamp_seconds": ("unix time", ("pool",), "when the pool last found a block"),
    "poolwarden_network_hashrate_hps": ("H/s", ("pool",), "network hashrate as Miningcore reports it"),
    "poolwarden_network_difficulty": ("difficulty", ("pool",), "network difficulty"),
    "poolwarden_network_height": ("blocks", ("pool",), "block height Miningcore works on"),
    "poolwarden_network_peers": ("count", ("pool",), "node peers as Miningcore reports them"),
    "poolwarden_network_last_block_timestamp_seconds": (
        "unix time", ("pool",), "when Miningcore last saw a new network block"),
    # Ergo node
    "poolwarden_node_up": ("bool", (), "1 if the Ergo node's /info answered"),
    "poolwarden_node_response_seconds": ("seconds", (), "time /info took to answer"),
    "poolwarden_node_full_height": ("blocks", (), "height of the best full block"),
    "poolwarden_node_headers_height": ("blocks", (), "height of the best header"),
    "poolwarden_node_max_peer_height": ("blocks", (), "highest height reported by peers"),
    "poolwarden_node_sync_lag_blocks": ("blocks", (), "max(headers, peers) height minus full height"),
    "poolwarden_node_peers": ("count", (), "connected peers"),
    "poolwarden_node_mempool_transactions": ("count", (), "unconfirmed transactions"),
    "poolwarden_node_difficulty": ("difficulty", (), "difficulty of the best full block"),
    "poolwarden_node_is_mining": ("bool", (), "1 if the node has mining enabled"),
    "poolwarden_node_last_message_age_seconds": ("seconds", (), "time since the last P2P message"),
    "poolwarden_node_tip_timestamp_seconds": ("unix time", (), "timestamp of the node's newest header"),
    "poolwarden_node_tip_age_seconds": ("seconds", (), "age of the node's newest header (chain tip)"),
    # agent itself: heartbeat and its own cost
    "poolwarden_agent_heartbeat_timestamp_seconds": (
        "unix time", (), "when this batch was built; sent every cycle even if every collector fails"),
    "poolwarden_agent_cycle_seconds": ("seconds", (), "wall time the last collection cycle took"),
    "poolwarden_agent_resident_memory_bytes": ("bytes", (), "the agent's resident memory (RSS)"),
    "poolwarden_agent_cpu_seconds_total": ("seconds", (), "CPU time the agent used since it started"),
    # host: disk percent, where each component lives
    "poolwarden_disk_used_percent": (
        "percent", ("mount", "device", "fstype"), "used / (used + available) * 100, as df shows it"),
    "poolwarden_component_mount_info": (
        "info", ("component", "path", "mount"), "always 1; the mount point a component's directory lives on"),
    # host: per core CPU, network and disk I/O rates
    "poolwarden_cpu_core_usage_percent": ("percent", ("core",), "CPU busy over the last interval, one core"),
    "poolwarden_cpu_iowait_percent": ("percent", (), "CPU time waiting for I/O over the last interval, all cores"),
    "poolwarden_memory_used_percent": ("percent", (), "memory in use, (total - available) / total * 100"),
    "poolwarden_net_receive_bytes_per_second": ("bytes/s", ("interface",), "bytes received per second"),
    "poolwarden_net_transmit_bytes_per_second": ("bytes/s", ("interface",), "bytes sent per second"),
    "poolwarden_net_errors_per_second": (
        "errors/s", ("interface",), "receive + transmit errors and drops per second"),
    "poolwarden_diskio_read_bytes_per_second": ("bytes/s", ("device",), "bytes read per second"),
    "poolwarden_diskio_write_bytes_per_second": ("bytes/s", ("device",), "bytes written per second"),
    "poolwarden_diskio_reads_per_second": ("IOPS", ("device",), "read operations per second"),
    "poolwarden_diskio_writes_per_second": ("IOPS", ("device",), "write operations per second"),
    "poolwarden_diskio_busy_percent": ("percent", ("device",), "time the device was busy with I/O"),
    # components: Ergo data split, logs, backups
    "poolwarden_log_file_size_bytes": ("bytes", ("path", "file"), "size of an active (not rotated) log file"),
    "poolwarden_log_rotated_files": ("count", ("path",), "rotated log files in a log directory"),
    "poolwarden_log_newest_rotated_age_seconds": (
        "seconds", ("path",), "age of the newest rotated log file (absent when none)"),
    "poolwarden_log_rotation_configured": (
        "bool", ("path",), "1 if rotated files exist or a logrotate configuration names the directory"),
    "poolwarden_backup_files": ("count", ("path",), "files in the backup directory"),
    "poolwarden_backup_newest_age_seconds": ("seconds", ("path",), "age of the newest file in the backup directory"),
    # Miningcore /metrics
    "poolwarden_pool_valid_shares_per_second": (
        "shares/s", ("pool",), "valid shares per second, from miningcore_valid_shares_total"),
    "poolwarden_pool_invalid_shares_per_second": (
        "shares/s", ("pool",), "invalid shares per second, from miningcore_invalid_shares_total"),
    "poolwarden_pool_invalid_share_ratio": (
        "ratio", ("pool",), "invalid / all shares over the last interval (absent when no share arrived)"),
    "poolwarden_pool_valid_shares_total": ("count", ("pool",), "Miningcore's valid share counter (resets on restart)"),
    "poolwarden_pool_invalid_shares_total": (
        "count", ("pool",), "Miningcore's invalid share counter (resets on restart)"),
    "poolwarden_pool_connections": ("count", ("pool",), "open stratum connections"),
    "poolwarden_pool_submit_seconds": (
        "seconds", ("pool",), "mean mining.submit handling time over the last interval"),
    "poolwarden_miningcore_start_time_seconds": ("unix time", (), "when the Miningcore process started"),
    "poolwarden_miningcore_resident_memory_bytes": ("bytes", (), "Miningcore's working set"),
    "poolwarden_miningcore_metrics_response_seconds": ("seconds", (), "time Miningcore's /metrics took to answer"),
    # pool events reader
    "poolwarden_pool_events_read_total": (
        "count", ("pool", "kind"), "block/payment events the agent emitted since it started"),
    "poolwarden_pool_pending_blocks": ("count", ("pool",), "pool blocks still pending confirmation"),
    # PostgreSQL (Miningcore's database)
    "poolwarden_postgres_up": ("bool", (), "1 if Miningcore's PostgreSQL answered"),
    "poolwarden_postgres_response_seconds": ("seconds", (), "time the health queries took"),
    "poolwarden_postgres_connections": ("count", (), "client connections to the server"),
    "poolwarden_postgres_max_connections": ("count", (), "the server's max_connections"),
    "poolwarden_postgres_longest_query_seconds": ("seconds", (), "age of the longest running active query (0: none)"),
    "poolwarden_postgres_longest_transaction_seconds": (
        "seconds", (), "age of the oldest open transaction (blocks vacuum; 0: none)"),
    "poolwarden_postgres_database_size_bytes": ("bytes", ("database",), "pg_database_size of Miningcore's database"),
    "poolwarden_postgres_table_size_bytes": (
        "bytes", ("table",), "pg_total_relation_size: table, indexes and TOAST"),
    "poolwarden_postgres_table_live_rows": ("count", ("table",), "estimated live rows (n_live_tup)"),
    "poolwarden_postgres_table_dead_rows": ("count", ("table",), "dead rows waiting for vacuum (n_dead_tup)"),
    "poolwarden_postgres_table_last_vacuum_timestamp_seconds": (
        "unix time", ("table",), "last vacuum or autovacuum of the table (absent: never)"),
    # Docker containers
    "poolwarden_container_running": ("bool", ("container",), "1 if the container is running"),
    "poolwarden_container_status_info": (
        "info", ("container", "state", "health", "image"), "always 1; labels carry state and health"),
    "poolwarden_container_healthy": ("bool", ("container",), "1 healthy, 0 otherwise (only with a healthcheck)"),
    "poolwarden_container_cpu_percent": ("percent", ("container",), "CPU use over the last interval, 100 = one core"),
    "poolwarden_container_memory_usage_bytes": ("bytes", ("container",), "memory in use minus page cache"),
    "poolwarden_container_memory_limit_bytes": ("bytes", ("container",), "memory limit (host memory when none)"),
    "poolwarden_container_network_receive_bytes_per_second": ("bytes/s", ("container",), "bytes received per second"),
    "poolwarden_container_network_transmit_bytes_per_second": ("bytes/s", ("container",), "bytes sent per second"),
    "poolwarden_container_blkio_read_bytes_per_second": ("bytes/s", ("container",), "block device reads per second"),
    "poolwarden_container_blkio_write_bytes_per_second": (
        "bytes/s", ("container",), "block device writes per second"),
    "poolwarden_container_restart_count": (
        "count", ("container",), "Docker's RestartCount: restart-policy restarts since creation"),
    "poolwarden_container_restarts_observed_total": (
        "count", ("container",), "(re)starts the agent saw since it started, manual restarts included"),
    "poolwarden_container_oom_killed": ("bool", ("container",), "1 if the container's last exit was an OOM kill"),
    "poolwarden_container_oom_kills_observed_total": (
        "count", ("container",), "OOM kills the agent saw since it started"),
    "poolwarden_container_uptime_seconds": ("seconds", ("container",), "time since the container (re)started"),
    # Docker disk usage
    "poolwarden_docker_images_size_bytes": ("bytes", (), "all images on disk (shared layers counted once)"),
    "poolwarden_docker_images": ("count", (), "images on disk"),
    "poolwarden_container_rw_size_bytes": ("bytes", ("container",), "the container's writable layer"),
    "poolwarden_docker_volume_size_bytes": ("bytes", ("volume",), "a local volume's size"),
    "poolwarden_docker_build_cache_bytes": ("bytes", (), "build cache on disk"),
}


def metric_unit(name: str) -> str:
    return METRICS.get(name, ("", (), ""))[0]
