"""The agent's collectors and the one place that builds them from the configuration."""

from __future__ import annotations

import psutil
import requests

from agent.collectors.base import (
    BackgroundCollector,
    Collector,
    CollectorFailed,
    CollectorResult,
    run_collector,
)
from agent.collectors.components import ComponentSizeCollector
from agent.collectors.containers import ContainerCollector, DockerDiskCollector
from agent.collectors.ergo_node import ErgoNodeCollector
from agent.collectors.host import (
    CpuCollector,
    DiskCollector,
    DiskIoCollector,
    LoadCollector,
    MemoryCollector,
    NetworkCollector,
)
from agent.collectors.miningcore import MiningcoreCollector
from agent.collectors.miningcore_log import DEFAULT_FILE_NAME, MiningcoreLogCollector
from agent.collectors.miningcore_metrics import MiningcoreMetricsCollector
from agent.collectors.pool_events import PoolEventsCollector
from agent.collectors.postgresql import PostgresHealthCollector, PostgresTablesCollector
from agent.config import Config

__all__ = [
    "BackgroundCollector", "Collector", "CollectorFailed", "CollectorResult", "ComponentSizeCollector",
    "ContainerCollector", "CpuCollector", "DiskCollector", "DiskIoCollector", "DockerDiskCollector",
    "ErgoNodeCollector", "LoadCollector", "MemoryCollector", "MiningcoreCollector", "MiningcoreLogCollector",
    "MiningcoreMetricsCollector", "NetworkCollector", "PoolEventsCollector", "PostgresHealthCollector",
    "PostgresTablesCollector", "build_collectors", "run_collector",
]


def _session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.trust_env = False  # local APIs: never route them through an environment proxy
    return session


def build_collectors(config: Config, user_agent: str = "poolwarden-agent") -> tuple[list[Collector], list[Collector]]:
    """(fast collectors, run by the cycle's scheduler; slow ones, run in background threads).

    A collector whose source is not configured is not built (no database DSN: no PostgreSQL
    collectors; no ``metricsUrl``: no share rates; no ``logDir``: no Miningcore log events;
    ``docker.enabled`` false: no Docker), and one
    switched off in monitoring.json's ``collectors`` is left out."""
    pool, mon = config.pool, config.monitoring
    mc, node = pool.miningcore, pool.ergo_node
    miningcore = MiningcoreCollector(_session(user_agent), mc.api_url, mc.pool_ids, timeout=mc.timeout_seconds)
    fast: list[Collector] = [
        DiskCollector(psutil, include=mon.mounts.include, exclude_fs_types=mon.mounts.exclude_fs_types),
        CpuCollector(psutil),
        MemoryCollector(psutil),
        LoadCollector(),
        NetworkCollector(psutil, exclude=mon.host.exclude_interfaces),
        DiskIoCollector(psutil, exclude=mon.host.exclude_disk_devices),
        miningcore,
        PoolEventsCollector(_session(user_agent), mc.api_url, mon.agent.cursor_dir,
                            pool_ids=mc.pool_ids or (lambda: tuple(miningcore.known_ids.copy())),
                            timeout=mc.timeout_seconds),
        ErgoNodeCollector(_session(user_agent), node.url, node.api_key, timeout=node.timeout_seconds),
    ]
    if mc.metrics_url:
        fast.append(MiningcoreMetricsCollector(_session(user_agent), mc.metrics_url, mc.pool_ids,
                                               timeout=mc.timeout_seconds))
    if mc.log_dir:
        log_settings = mon.collectors.get("miningcore_log")
        fast.append(MiningcoreLogCollector(
            mc.log_dir, mon.agent.cursor_dir,
            file_name=(log_settings.file_name if log_settings else None) or DEFAULT_FILE_NAME,
            pool_ids=mc.pool_ids, discovered_pool_ids=lambda: tuple(miningcore.known_ids.copy())))
    if mc.database_dsn:
        fast += [PostgresHealthCollector(mc.database_dsn, timeout=mc.timeout_seconds),
                 PostgresTablesCollector(mc.database_dsn, timeout=mc.timeout_seconds)]
    slow: list[Collector] = [ComponentSizeCollector(
        database_dsn=mc.database_dsn,
        ergo_data_dir=node.data_dir,
        log_dirs=tuple(dict.fromkeys([*([mc.log_dir] if mc.log_dir else []), *pool.paths.logs])),
        backup_dir=pool.paths.backups,
        connect_timeout=mc.timeout_seconds,
        extra_dirs=[("agentSpool", mon.agent.spool_dir)],
    )]
    if pool.docker.enabled:
        fast.append(ContainerCollector(pool.docker.socket, pool.docker.containers,
                                       timeout=min(mon.intervals.collector_timeout_seconds, 10.0),
                                       host_memory=float(psutil.virtual_memory().total)))
        slow.append(DockerDiskCollector(pool.docker.socket))
    return ([c for c in fast if mon.enabled(c.name)], [c for c in slow if mon.enabled(c.name)])
