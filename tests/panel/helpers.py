"""Helpers for the panel tests: publishing batches the way an agent does, running the engine once."""

from __future__ import annotations

import time

import redis

from agent.contract import Batch, Event, Sample, stream_key


def xadd(client: redis.Redis, host: str, batch: Batch) -> bytes:
    return client.xadd(stream_key(host), batch.to_fields())


def ingest(runner) -> str:
    """Run ``poolwarden-panel engine --once`` through the Flask CLI runner; returns its output."""
    result = runner.invoke(args=["engine", "--once"])
    assert result.exit_code == 0, result.output
    return result.output


def pool_host_batch(ts: float | None = None, **overrides) -> Batch:
    """A batch like a pool host's agent sends: system, two disks, components, one pool, the node."""
    ts = time.time() if ts is None else ts
    values = {
        "root_total": 250 * 2**30, "root_used": 200 * 2**30, "root_free": 50 * 2**30,
        "data_total": 1000 * 2**30, "data_used": 100 * 2**30, "data_free": 900 * 2**30,
        "cpu": 37.5, "mem_total": 16 * 2**30, "mem_used": 6 * 2**30,
        "hashrate": 1.25e9, "miners": 42, "effort": 0.873, "blocks": 17,
        "net_height": 1_234_567, "net_difficulty": 1.5e15, "net_hashrate": 21.3e12,
        "full_height": 1_234_560, "headers_height": 1_234_567, "sync_lag": 7, "peers": 31,
    }
    values.update(overrides)
    root = {"mount": "/", "device": "/dev/sda1", "fstype": "ext4"}
    data = {"mount": "/data", "device": "/dev/sdb1", "fstype": "xfs"}
    pool = {"pool": "ergo-solo"}
    samples = [
        Sample("poolwarden_disk_total_bytes", values["root_total"], root),
        Sample("poolwarden_disk_used_bytes", values["root_used"], root),
        Sample("poolwarden_disk_free_bytes", values["root_free"], root),
        Sample("poolwarden_disk_total_bytes", values["data_total"], data),
        Sample("poolwarden_disk_used_bytes", values["data_used"], data),
        Sample("poolwarden_disk_free_bytes", values["data_free"], data),
        Sample("poolwarden_component_size_bytes", 3 * 2**30, {"component": "postgresql", "path": "/var/lib/pg"}),
        Sample("poolwarden_component_size_bytes", 40 * 2**30, {"component": "ergo_node", "path": "/home/ergo/.ergo"}),
        Sample("poolwarden_component_size_bytes", 100 * 2**20, {"component": "logs", "path": "/srv/logs/a"}),
        Sample("poolwarden_component_size_bytes", 50 * 2**20, {"component": "logs", "path": "/srv/logs/b"}),
        Sample("poolwarden_cpu_usage_percent", values["cpu"]),
        Sample("poolwarden_cpu_count", 8),
        Sample("poolwarden_memory_total_bytes", values["mem_total"]),
        Sample("poolwarden_memory_used_bytes", values["mem_used"]),
        Sample("poolwarden_load1", 1.5),
        Sample("poolwarden_load5", 1.25),
        Sample("poolwarden_load15", 0.75),
        Sample("poolwarden_pool_up", 1, pool),
        Sample("poolwarden_pool_hashrate_hps", values["hashrate"], pool),
        Sample("poolwarden_pool_miners", values["miners"], pool),
        Sample("poolwarden_pool_effort_ratio", values["effort"], pool),
        Sample("poolwarden_pool_blocks_total", values["blocks"], pool),
        Sample("poolwarden_network_height", values["net_height"], pool),
        Sample("poolwarden_network_difficulty", values["net_difficulty"], pool),
        Sample("poolwarden_network_hashrate_hps", values["net_hashrate"], pool),
        Sample("poolwarden_node_up", 1),
        Sample("poolwarden_node_full_height", values["full_height"]),
        Sample("poolwarden_node_headers_height", values["headers_height"]),
        Sample("poolwarden_node_sync_lag_blocks", values["sync_lag"]),
        Sample("poolwarden_node_peers", values["peers"]),
        Sample("poolwarden_collector_up", 1, {"collector": "system"}),
    ]
    return Batch(ts=ts, samples=samples, agent_version="0.1.0",
                 events=[Event(id=f"start-{ts}", kind="agent_started", ts=ts, data={"pid": 1})])
