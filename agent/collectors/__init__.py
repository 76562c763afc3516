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
from agent.collectors.ergo_node import ErgoNodeCollector
from agent.collectors.host import CpuCollector, DiskCollector, LoadCollector, MemoryCollector
from agent.collectors.miningcore import MiningcoreCollector
from agent.config import Config

__all__ = [
    "BackgroundCollector", "Collector", "CollectorFailed", "CollectorResult", "ComponentSizeCollector",
    "CpuCollector", "DiskCollector", "ErgoNodeCollector", "LoadCollector", "MemoryCollector",
    "MiningcoreCollector", "build_collectors", "run_collector",
]


def _session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    session.trust_env = False  # local APIs: never route them through an environment proxy
    return session


def build_collectors(config: Config, user_agent: str = "poolwarden-agent") -> tuple[list[Collector], Collector]:
    """(fast collectors run every cycle, the slow component-size collector)."""
    pool, mon = config.pool, config.monitoring
    fast: list[Collector] = [
        DiskCollector(psutil, include=mon.mounts.include, exclude_fs_types=mon.mounts.exclude_fs_types),
        CpuCollector(psutil),
        MemoryCollector(psutil),
        LoadCollector(),
        MiningcoreCollector(_session(user_agent), pool.miningcore.api_url, pool.miningcore.pool_ids,
                            timeout=pool.miningcore.timeout_seconds),
        ErgoNodeCollector(_session(user_agent), pool.ergo_node.url, pool.ergo_node.api_key,
                          timeout=pool.ergo_node.timeout_seconds),
    ]
    slow = ComponentSizeCollector(
        database_dsn=pool.miningcore.database_dsn,
        ergo_data_dir=pool.ergo_node.data_dir,
        log_dirs=pool.paths.logs,
        backup_dir=pool.paths.backups,
        connect_timeout=pool.miningcore.timeout_seconds,
    )
    return fast, slow
