"""Alerting from end to end for the host's own resources: CPU, load and memory.

These rules judge the whole machine, so their test must have it to itself: it is marked
``exclusive`` and ``make test`` runs it alone, after the parallel phase (on a machine busy with
other tests, "CPU over the threshold" says nothing about this test's fault). The stack is the one
of ``test_alerting_e2e.py`` (poolsim, ``poolwarden-agent collect --interval 1``, the engine, the
notify worker, a webhook sink and aiosmtpd); the thresholds are set from what the machine uses when
the test starts, as an operator sets them from what is normal for the host:

* ``cpu_high`` and ``load_high`` (``load1`` per core): three busy processes per core; stopped, the CPU
  drops at once and the load average decays (a minute's time constant);
* ``memory_high``: a process holding a fifth of the host's memory; ended, the memory comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.alerting import (
    WAIT,
    Harness,
    Inbox,
    assert_all_delivered_and_resolved,
    channels,
    explain,
)
from tests.integration.conftest import panel_client, wait_until

pytest_plugins = ["tests.sinks"]  # fixtures: webhook_sink, smtp_sink

pytestmark = [pytest.mark.slow, pytest.mark.exclusive, pytest.mark.timeout(600)]

BURN = "while True: pass"


def quiet_machine(seconds: float = 5) -> tuple[float, float, float]:
    """CPU percent (over a few seconds), load1 per core and memory percent of the machine, once the load
    left by earlier work (the parallel phase of ``make test``) has decayed, or after two minutes."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + 120
    while os.getloadavg()[0] / cores > 0.6 and time.monotonic() < deadline:
        time.sleep(2)
    cpu = psutil.cpu_percent(interval=seconds)
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    memory = psutil.virtual_memory().percent
    return cpu, load, memory


INERT = {"alerts": {   # until the machine is measured: thresholds nothing reaches
    "highCpuUsage": {"type": "cpu_high", "maxPercent": 100, "clearPercent": 99},
    "highLoad": {"type": "load_high", "measure": "load1", "maxPerCore": 100, "clearPerCore": 99},
    "highMemory": {"type": "memory_high", "maxPercent": 100, "clearPercent": 99},
}}


def alert_rules(cpu: float, load: float, memory: float) -> dict:
    return {"alerts": {
        "highCpuUsage": {"type": "cpu_high", "for": "2s", "maxPercent": 90, "clearPercent": max(60.0, cpu + 20)},
        "highLoad": {"type": "load_high", "for": "0s", "measure": "load1", "maxPerCore": round(load + 1.0, 2),
                     "clearPerCore": round(load + 0.5, 2)},
        "highMemory": {"type": "memory_high", "for": "2s", "maxPercent": round(min(99.0, memory + 10), 1),
                       "clearPercent": round(min(98.0, memory + 5), 1)},
    }}


def busy_processes(h: Harness) -> None:
    """Three spinning processes per core: the CPU over 90 % and the 1-minute load a core above its level;
    stopped, both resolve."""
    burners: list[subprocess.Popen] = []

    def burn() -> None:
        burners.extend(subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(3 * (os.cpu_count() or 1)))

    def stop() -> None:
        for proc in burners:
            proc.kill()
            proc.wait(10)

    try:
        h.fires_and_resolves("highCpuUsage", burn, stop, timeout=150,
                             also=(("highLoad", {}),))
    finally:
        stop()


def memory_held(h: Harness) -> None:
    total = psutil.virtual_memory().total
    holder: list[subprocess.Popen] = []

    def take() -> None:
        proc = subprocess.Popen([sys.executable, "-c", f"import sys; b = b'\\1' * {total // 5}; print('held', "
                                 "flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        holder.append(proc)
        assert proc.stdout.readline().strip() == "held"

    def give_back() -> None:
        for proc in holder:
            proc.stdin.close()
            proc.wait(10)

    try:
        h.fires_and_resolves("highMemory", take, give_back)
    finally:
        for proc in holder:
            proc.kill()


def test_cpu_load_and_memory_rules_fire_and_resolve_end_to_end(stack, webhook_sink, smtp_sink):
    tmp: Path = stack["tmp"]
    stack["panel_env"].update({"POOLWARDEN_ALERTS_CONFIG": str(tmp / "alerts.json"),
                               "POOLWARDEN_INTEGRATIONS_CONFIG": str(tmp / "integrations.json"),
                               "POOLWARDEN_ALERTS_EVALUATE_SECONDS": "1",
                               "POOLWARDEN_NOTIFY_RETRY_INTERVALS": "1,2,4"})
    (tmp / "integrations.json").write_text(json.dumps(channels(webhook_sink.url, smtp_sink.port), indent=2))
    (tmp / "alerts.json").write_text(json.dumps(INERT, indent=2))
    stack["run_engine"]()
    stack["run_notify_worker"]()
    h = Harness(stack, Inbox(webhook_sink, smtp_sink, explain(stack["pw_dsn"])), panel_client(stack), (),
                ("--interval", "1"))
    h.start_agent()
    def count(query: str) -> int:
        with h.db() as conn:
            return conn.execute(query).fetchone()[0]

    wait_until(lambda: count("SELECT count(*) FROM ingested_batches") >= 3, 60, "the agent's first batches")
    cpu, load, memory = quiet_machine()
    assert cpu < 60 and memory < 70, f"the machine is not quiet enough for this test: CPU {cpu} %, memory {memory} %"
    rules = alert_rules(cpu, load, memory)
    (tmp / "alerts.json").write_text(json.dumps(rules, indent=2))

    wait_until(lambda: count("SELECT count(*) FROM alert_rules WHERE (params->>'maxPercent')::float < 100") == 2,
               WAIT, "the measured thresholds provisioned")
    time.sleep(3)   # a few evaluations at the machine's own level: nothing may fire
    assert h.inbox.payloads() == [], "an alert fired before any fault: " + str(h.inbox.payloads())
    try:
        busy_processes(h)
        memory_held(h)
        assert_all_delivered_and_resolved(h)
        print("thresholds:", json.dumps(rules), "latencies (s):", dict(sorted(h.latencies.items())))
    finally:
        h.agent.stop()
