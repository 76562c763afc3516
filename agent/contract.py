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
    "payment_failed": "a payout failed (data: pool, error; from Miningcore's log)",
    "block_submission_failed": "the node rejected a pool block (data: pool, height, error; from Miningcore's log)",
    "shares_lost": "Miningcore could not store shares and dropped them (data: pool, error; from Miningcore's log)",
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


# --- Maintenance: the catalogue of actions, their parameters, and signed job envelopes ----------
#
# The panel enqueues a maintenance job on the RQ queue ``maint:<host>`` as a call of
# ``agent.worker.run_job(envelope, signature)`` with RQ's JSON serializer. The envelope names a
# catalogue action and its parameters; the signature is HMAC-SHA256 over the envelope's canonical
# JSON with the host's job key (shared by the panel and that host's agent only). The worker runs
# nothing else: not a function outside ``run_job``, not an action outside ``ACTIONS``, not a
# parameter that ``validate_params`` refuses, not an envelope that is unsigned, for another host,
# or expired. Both sides validate parameters with the same code (this module).

MAINT_QUEUE_PREFIX = "maint:"
MAINT_JOB_FUNCTION = "agent.worker.run_job"
MAINT_JOB_ID_PREFIX = "mj-"  # RQ job ids: [A-Za-z0-9_-]+; the rest is the panel's job uuid (hex)
ENVELOPE_VERSION = 1
SERVICES = ("miningcore", "ergo_node", "nginx", "postgresql")
MININGCORE_TABLES = ("shares", "blocks", "payments", "balances", "balance_changes", "minerstats",
                     "poolstats", "miner_settings")


def maint_queue(host: str) -> str:
    return MAINT_QUEUE_PREFIX + host


def maint_job_id(job_uuid: str) -> str:
    return MAINT_JOB_ID_PREFIX + job_uuid.replace("-", "")


class ParamError(ValueError):
    """A parameter was refused: ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "bool" | "int" | "choice" | "choices" (a list of choices) | "json_text"
    help: str
    default: Any = None
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None  # json_text: bytes

    def check(self, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(self.name, f"must be true or false, got {value!r}")
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(self.name, f"must be a whole number, got {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise ParamError(self.name, f"must be at least {self.minimum}, got {value}")
            if self.maximum is not None and value > self.maximum:
                raise ParamError(self.name, f"must be at most {self.maximum}, got {value}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ParamError(self.name, f"must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if self.kind == "choices":
            if not isinstance(value, list) or not value:
                raise ParamError(self.name, f"must be a non-empty list of {', '.join(self.choices)}")
            bad = [v for v in value if v not in self.choices]
            if bad:
                raise ParamError(self.name, f"unknown {bad[0]!r}; choose from {', '.join(self.choices)}")
            return sorted(set(value), key=self.choices.index)
        if self.kind == "json_text":
            if not isinstance(value, str):
                raise ParamError(self.name, "must be a JSON document as text")
            if self.max_length is not None and len(value.encode()) > self.max_length:
                raise ParamError(self.name, f"is larger than {self.max_length} bytes")
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                reason = f"is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
                raise ParamError(self.name, reason) from None
            if not isinstance(parsed, dict):
                raise ParamError(self.name, "must be a JSON object")
            return value
        raise AssertionError(f"unknown parameter kind {self.kind}")

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "help": self.help,
                               "required": self.required, "default": self.default}
        for key in ("minimum", "maximum", "max_length"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class Action:
    name: str
    title: str
    explains: str  # what will happen, shown in the confirmation; "{param}" fields are filled in
    params: tuple[Param, ...] = ()
    destructive: bool = False  # admin + fresh TOTP; refused in safe mode
    safe_when: str | None = None  # a bool parameter that, when true, makes the action non-destructive
    timeout_seconds: int = 600
    silences: tuple[str, ...] = ()  # alert components held back while the action runs
    scheduled: bool = False  # may be put on a schedule

    def is_destructive(self, params: dict[str, Any]) -> bool:
        if not self.destructive:
            return False
        return not (self.safe_when and params.get(self.safe_when) is True)

    def minimum_role(self, params: dict[str, Any]) -> str:
        return "admin" if self.is_destructive(params) else "operator"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "explains": self.explains, "destructive": self.destructive,
                "safe_when": self.safe_when, "timeout_seconds": self.timeout_seconds,
                "silences": list(self.silences), "scheduled": self.scheduled,
                "params": [p.describe() for p in self.params]}


_SERVICE = Param("service", "choice", "the service to act on", required=True, choices=SERVICES)

ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("backup", "Back up a database",
           "pg_dump -Fc of the {database} database into the backup directory (temporary name, fsync, rename), "
           "checksum, pg_restore --list check, then retention: keep {keep_daily} daily and {keep_weekly} "
           "weekly backups and always the newest verified one. Refused if free space is short.",
           (Param("database", "choice", "which database", default="miningcore", choices=("miningcore", "panel")),
            Param("keep_daily", "int", "daily backups kept", default=7, minimum=1, maximum=365),
            Param("keep_weekly", "int", "weekly backups kept", default=4, minimum=0, maximum=520)),
           timeout_seconds=6 * 3600, scheduled=True),
    Action("test_restore", "Test-restore the newest backup",
           "Restore the newest verified backup of {database} into a scratch database, compare its row "
           "counts with the backup's manifest, then drop the scratch database.",
           (Param("database", "choice", "which database", default="miningcore", choices=("miningcore", "panel")),),
           timeout_seconds=6 * 3600, scheduled=True),
    Action("vacuum", "Vacuum and analyze tables",
           "VACUUM (ANALYZE) on {tables}: reports dead tuples before and after and the time taken. "
           "Does not lock the tables against reads or writes.",
           (Param("tables", "choices", "tables to vacuum", default=list(MININGCORE_TABLES),
                  choices=MININGCORE_TABLES),),
           timeout_seconds=6 * 3600, silences=("postgresql",), scheduled=True),
    Action("vacuum_full", "VACUUM FULL (locks tables)",
           "VACUUM FULL on {tables}: rewrites each table to give space back to the disk. Each table is "
           "LOCKED against reads and writes while it is rewritten; Miningcore cannot record shares into "
           "a locked table.",
           (Param("tables", "choices", "tables to rewrite", required=True, choices=MININGCORE_TABLES),),
           destructive=True, timeout_seconds=12 * 3600, silences=("postgresql", "miningcore")),
    Action("rotate_logs", "Rotate logs",
           "logrotate with poolwarden's configuration for the configured log directories (by size and age, "
           "compressed, copytruncate for Miningcore); reports what rotated and the bytes freed.",
           (Param("force", "bool", "rotate even files below the size and age limits", default=False),),
           timeout_seconds=1800, scheduled=True),
    Action("cleanup", "Clean up old data",
           "Delete poolstats and minerstats older than {stats_retention_days} days and, if chosen, shares "
           "older than {shares_retention_days} days that no pending or unpaid block can still need, in "
           "batches of {batch_size}. Dry run: {dry_run} (a dry run only counts).",
           (Param("dry_run", "bool", "only count what would go", default=True),
            Param("stats_retention_days", "int", "keep statistics this many days", default=90, minimum=7,
                  maximum=3650),
            Param("include_shares", "bool", "also delete shares no block can still need", default=False),
            Param("shares_retention_days", "int", "never delete shares younger than this", default=30,
                  minimum=7, maximum=3650),
            Param("batch_size", "int", "rows per delete batch", default=10000, minimum=100, maximum=1_000_000)),
           destructive=True, safe_when="dry_run", timeout_seconds=6 * 3600, silences=("postgresql",),
           scheduled=True),
    Action("restart", "Restart a service",
           "Restart {service}, then wait until it is healthy again (API answers, node syncing, database "
           "accepting connections). Miners lose their connection while the pool restarts.",
           (_SERVICE,), destructive=True, timeout_seconds=900, silences=("{service}",)),
    Action("start", "Start a service", "Start {service}, then wait until it is healthy.",
           (_SERVICE,), timeout_seconds=900, silences=("{service}",)),
    Action("stop", "Stop a service",
           "Stop {service}. It stays down until started again: a stopped pool pays nobody and accepts no shares.",
           (_SERVICE,), destructive=True, timeout_seconds=600, silences=("{service}",)),
    Action("health_check", "Health check",
           "Check container health and restart loops, the stratum and API ports, the node and the database; "
           "changes nothing.", (), timeout_seconds=120),
    Action("update_miningcore_config", "Update Miningcore's config.json",
           "Replace Miningcore's config.json (the previous file is kept), restart Miningcore, and roll back "
           "to the previous file automatically if the pool is not healthy within {rollback_after_seconds} s.",
           (Param("config", "json_text", "the new config.json", required=True, max_length=1_000_000),
            Param("rollback_after_seconds", "int", "how long the pool has to become healthy", default=120,
                  minimum=10, maximum=1500)),
           destructive=True, timeout_seconds=3600, silences=("miningcore",)),
)}


def validate_params(action_name: str, params: Any) -> dict[str, Any]:
    """The action's parameters with defaults filled in; ``ParamError`` names the first bad one."""
    action = ACTIONS.get(action_name)
    if action is None:
        raise ParamError("action", f"unknown action {action_name!r}; known: {', '.join(ACTIONS)}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ParamError("params", "must be a JSON object")
    known = {p.name for p in action.params}
    for key in params:
        if key not in known:
            raise ParamError(key, f"is not a parameter of {action_name}" +
                             (f" (it takes {', '.join(sorted(known))})" if known else " (it takes none)"))
    out: dict[str, Any] = {}
    for p in action.params:
        if p.name in params and params[p.name] is not None:
            out[p.name] = p.check(params[p.name])
        elif p.required:
            raise ParamError(p.name, "is required")
        else:
            out[p.name] = p.default
    return out


def explain(action_name: str, params: dict[str, Any]) -> str:
    """The confirmation text with the parameters filled in."""
    action = ACTIONS[action_name]
    shown = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in params.items()}
    shown = {k: ("(new file)" if k == "config" else v) for k, v in shown.items()}
    try:
        return action.explains.format(**shown)
    except (KeyError, IndexError):
        return action.explains


def silenced_components(action_name: str, params: dict[str, Any]) -> list[str]:
    return [c.format(**params) for c in ACTIONS[action_name].silences]


class EnvelopeRejected(ValueError):
    """A job the worker must not run; the message says why (it becomes the job's result)."""


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def make_envelope(*, job_uuid: str, host: str, action: str, params: dict[str, Any], requested_by: str,
                  safe_mode: bool, issued_at: float | None = None, ttl_seconds: float = 3600) -> dict[str, Any]:
    issued = time.time() if issued_at is None else issued_at
    return {"v": ENVELOPE_VERSION, "job": job_uuid, "host": host, "action": action,
            "params": validate_params(action, params), "requested_by": requested_by, "safe_mode": bool(safe_mode),
            "issued_at": round(issued, 3), "expires_at": round(issued + ttl_seconds, 3)}


def sign_envelope(key: bytes, envelope: dict[str, Any]) -> str:
    import hashlib
    import hmac

    return hmac.new(key, canonical_json(envelope), hashlib.sha256).hexdigest()


def verify_envelope(key: bytes, envelope: Any, signature: Any, *, host: str, now_ts: float | None = None
                    ) -> dict[str, Any]:
    """Check a job before running it; returns the validated parameters or raises ``EnvelopeRejected``."""
    import hmac

    if not isinstance(envelope, dict) or not isinstance(signature, str):
        raise EnvelopeRejected("not a poolwarden job envelope")
    if not hmac.compare_digest(sign_envelope(key, envelope), signature):
        raise EnvelopeRejected("bad signature: the job was not signed with this host's job key")
    if envelope.get("v") != ENVELOPE_VERSION:
        raise EnvelopeRejected(f"unsupported envelope version {envelope.get('v')!r}")
    if envelope.get("host") != host:
        raise EnvelopeRejected(f"the job is for host {envelope.get('host')!r}, this is {host!r}")
    current = time.time() if now_ts is None else now_ts
    expires = envelope.get("expires_at")
    if not isinstance(expires, int | float) or current > expires:
        raise EnvelopeRejected("the job expired before a worker took it")
    try:
        params = validate_params(str(envelope.get("action")), envelope.get("params"))
    except ParamError as exc:
        raise EnvelopeRejected(f"invalid parameters: {exc}") from None
    action = ACTIONS[envelope["action"]]
    if envelope.get("safe_mode") and action.is_destructive(params):
        raise EnvelopeRejected("safe mode is on for this host: destructive actions are refused")
    return params


def agent_redis_acl_rules(host: str) -> list[str]:
    """The Redis ACL rules of a pool host's agent user: XADD to its own sample stream, and what an RQ
    worker on its own queue ``maint:<host>`` needs — found key by key against Redis 7 and rq 3.

    Job hashes (``rq:job:mj-*``) are shared by all agents: RQ job ids cannot carry a host name
    (dots are not allowed in them). A job's payload is signed with its host's key, so one agent
    cannot make another run anything; it could at worst overwrite another host's job result.
    The Ansible inventories carry the same list (tests/deploy checks they match).
    """
    q = maint_queue(host)
    return [f"~pw:samples:{host}", f"~rq:queue:{q}", f"~rq:queue:{q}:*", f"~rq:*:{q}", "~rq:job:mj-*",
            "~rq:job::mj-*", "~rq:results:mj-*", "~rq:execution:mj-*", "~rq:executions:mj-*",
            f"~rq:worker:{host}.*", "~rq:workers", f"~rq:workers:{q}", "~rq:queues", "~rq:clean_groups",
            "~rq:groups", "%R~rq:suspended", "%R~rq:rl-keys", f"&rq:pubsub:{host}.*", "+@all", "-@dangerous",
            "+info"]
