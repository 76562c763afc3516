"""The cycle: concurrent collectors with their own cadence and time bound, and the heartbeat that
goes out even when every collector fails."""

from __future__ import annotations

import threading
import time

import psutil

from agent.collectors.base import Collector, Scheduled, Scheduler
from agent.collectors.host import DiskIoCollector, NetworkCollector
from agent.config import load_config
from agent.contract import METRICS, Batch, Sample
from agent.runner import Agent
from tests.agent.conftest import example_config, write_config


class Hanging(Collector):
    name = "hanging"
    METRICS = ("poolwarden_load1",)

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def collect(self):
        self.calls += 1
        self.release.wait(30)
        return [Sample("poolwarden_load1", 1.0)]


class Quick(Collector):
    name = "quick"
    METRICS = ("poolwarden_load5",)

    def __init__(self):
        self.calls = 0

    def collect(self):
        self.calls += 1
        return [Sample("poolwarden_load5", 5.0)]


class Broken(Collector):
    name = "broken"
    METRICS = ("poolwarden_load15",)

    def collect(self):
        raise RuntimeError("boom")


def by_name(results):
    return {item.collector.name: result for item, result in results}


def test_hanging_collector_is_cut_off_and_not_restarted_while_it_hangs():
    hanging, quick = Hanging(), Quick()
    scheduler = Scheduler([Scheduled(hanging, timeout=0.3), Scheduled(quick, timeout=5)])
    try:
        start = time.monotonic()
        results = by_name(scheduler.run_cycle())
        assert time.monotonic() - start < 1.5
        assert results["quick"].ok and results["quick"].samples[0].value == 5.0
        assert not results["hanging"].ok and "no result within 0.3 s" in results["hanging"].error
        assert results["hanging"].duration == 0.3
        results = by_name(scheduler.run_cycle())  # still hanging: reported, not started again
        assert "previous run still running" in results["hanging"].error
        assert hanging.calls == 1 and quick.calls == 2
        hanging.release.set()
        time.sleep(0.1)
        results = by_name(scheduler.run_cycle())  # free again: runs normally
        assert results["hanging"].ok and hanging.calls == 2
    finally:
        hanging.release.set()
        scheduler.close()


def test_cadence_runs_a_slow_collector_only_when_due():
    quick, every = Quick(), Quick()
    every.name = "every"
    scheduler = Scheduler([Scheduled(quick), Scheduled(every, every=3600)])
    try:
        for _ in range(3):
            scheduler.run_cycle()
        assert (quick.calls, every.calls) == (3, 1)
    finally:
        scheduler.close()


def agent_config(tmp_path, **monitoring_extra):
    pool, monitoring = example_config()
    monitoring.update(monitoring_extra)
    write_config(tmp_path / "cfg", pool, monitoring)
    return load_config(tmp_path / "cfg", env={"POOLWARDEN_SPOOL_DIR": str(tmp_path / "spool")})


def test_heartbeat_goes_out_when_every_collector_fails(tmp_path):
    config = agent_config(tmp_path)
    agent = Agent(config, [Broken(), Hanging()], None, background=False)
    agent.scheduler.items[1].timeout = 0.2
    try:
        batch = agent.cycle()
    finally:
        agent.fast[1].release.set()
        agent.close()
    values = {s.name: s.value for s in batch.samples if not s.labels.get("collector")}
    assert abs(values["poolwarden_agent_heartbeat_timestamp_seconds"] - time.time()) < 5
    assert 0 < values["poolwarden_agent_resident_memory_bytes"] < 500e6
    assert values["poolwarden_agent_cpu_seconds_total"] > 0
    assert values["poolwarden_agent_cycle_seconds"] < 2
    ups = {s.labels["collector"]: s.value for s in batch.samples if s.name == "poolwarden_collector_up"}
    assert ups == {"broken": 0.0, "hanging": 0.0}
    assert all(s.name in METRICS for s in batch.samples)
    Batch.from_fields(batch.to_fields())


def test_collector_settings_from_monitoring_json(tmp_path):
    config = agent_config(tmp_path, collectors={"diskio": {"enabled": False}, "containers": {"enabled": False},
                                                "docker_disk": {"enabled": False},
                                                "pool_events": {"everySeconds": 120, "timeoutSeconds": 3}},
                          intervals={"collectSeconds": 15, "collectorTimeoutSeconds": 4})
    agent = Agent.from_config(config, publish=False, background=False)
    try:
        names = [item.collector.name for item in agent.scheduler.items]
        assert "diskio" not in names and "containers" not in names
        assert [c.name for c in agent.slow] == ["components"]
        settings = {item.collector.name: (item.every, item.timeout) for item in agent.scheduler.items}
        assert settings["pool_events"] == (120, 3)
        assert settings["cpu"] == (0, 4)
        assert settings["postgresql_tables"] == (60, 4)  # the collector's own default cadence
    finally:
        agent.close()


def test_network_and_diskio_rates_come_from_deltas():
    net = NetworkCollector(psutil, exclude=["lo"])
    disk = DiskIoCollector(psutil, exclude=["loop*", "ram*"])
    time.sleep(0.2)
    samples = net.collect()
    assert {s.name for s in samples} <= set(NetworkCollector.METRICS)
    assert all(s.value >= 0 and s.labels["interface"] != "lo" for s in samples)
    samples = disk.collect()
    assert {s.name for s in samples} <= set(DiskIoCollector.METRICS)
    assert all(s.value >= 0 and not s.labels["device"].startswith("loop") for s in samples)
    nics = {n for n in psutil.net_io_counters(pernic=True) if n != "lo"}
    if nics:
        assert {s.name for s in net.collect()} == set(NetworkCollector.METRICS)


def test_rate_tracker_skips_counter_going_backwards():
    from agent.collectors.host import RateTracker

    t = [0.0]
    tracker = RateTracker(clock=lambda: t[0])
    assert tracker.rates("a", (100.0,)) is None
    t[0] = 2.0
    assert tracker.rates("a", (300.0,)) == (100.0,)
    t[0] = 3.0
    assert tracker.rates("a", (10.0,)) is None  # reset: no negative rate
    t[0] = 4.0
    assert tracker.rates("a", (20.0,)) == (10.0,)
