"""Fixtures for the end-to-end tests: poolsim, a migrated panel database, agent and engine runners."""

from __future__ import annotations

import os
import time

import pytest
import redis as redislib
import requests

from agent.contract import Batch, stream_key
from devtools.processes import ManagedProcess, console_script
from devtools.services import ROOT

HOST = "pool-it"


@pytest.fixture
def stack(pg, redis_url, session_dir, tmp_path):
    """poolsim + migrated panel DB + env for agent and engine. Yields a dict of handles."""
    tag = f"it{os.getpid()}_{time.monotonic_ns() % 10**6}"
    pg.create_database(f"mc_{tag}")
    mc_dsn = pg.dsn(f"mc_{tag}")
    pw_dsn = pg.create_database(f"pw_{tag}")
    logs = tmp_path / "mc-logs"
    backups = tmp_path / "backups"
    node_data = tmp_path / "ergo"
    for d in (logs, backups, node_data / "history", node_data / "state"):
        d.mkdir(parents=True)
    (node_data / "history" / "chunk").write_bytes(b"x" * 200_000)

    procs: list[ManagedProcess] = []
    sim = ManagedProcess("poolsim", [
        console_script("poolsim"), "run", "--seed", "7", "--db-dsn", mc_dsn, "--api-port", "0",
        "--node-port", "0", "--control-port", "0", "--log-dir", str(logs), "--history-days", "1",
        "--stats-interval", "10"], tmp_path / "poolsim.log").start(capture_stdout=True)
    procs.append(sim)
    urls = sim.read_ready_line(timeout=120)

    panel_env = {"POOLWARDEN_DATABASE_URL": pw_dsn, "POOLWARDEN_REDIS_URL": redis_url,
                 "POOLWARDEN_SECRET_KEY": "integration-test-secret"}
    migrate = ManagedProcess("migrate", [console_script("poolwarden-panel"), "migrate"],
                             tmp_path / "migrate.log", env=panel_env).start()
    assert migrate.proc.wait(timeout=60) == 0, migrate.tail()
    migrate.stop()

    agent_env = {
        "POOLWARDEN_HOST": HOST, "POOLWARDEN_REDIS_URL": redis_url,
        "POOLWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
        "MININGCORE_API_URL": urls["api"], "MININGCORE_METRICS_URL": urls["api"] + "/metrics",
        "MININGCORE_DB_DSN": mc_dsn, "MININGCORE_LOG_DIR": str(logs),
        "ERGO_NODE_URL": urls["node"], "ERGO_NODE_API_KEY": "hello", "ERGO_NODE_DATA_DIR": str(node_data),
        "POOLWARDEN_BACKUP_DIR": str(backups),
    }

    def run_agent(*extra: str) -> ManagedProcess:
        p = ManagedProcess("agent", [console_script("poolwarden-agent"), "collect", "--config-dir",
                                     str(ROOT / "config"), *extra], tmp_path / "agent.log",
                           env=agent_env).start()
        procs.append(p)
        return p

    def run_engine(*extra: str) -> ManagedProcess:
        p = ManagedProcess("engine", [console_script("poolwarden-panel"), "engine", *extra],
                           tmp_path / "engine.log", env=panel_env).start()
        procs.append(p)
        return p

    yield {"urls": urls, "pw_dsn": pw_dsn, "mc_dsn": mc_dsn, "redis_url": redis_url, "panel_env": panel_env,
           "run_agent": run_agent, "run_engine": run_engine, "tmp": tmp_path}
    for p in reversed(procs):
        p.stop()


def control(stack, method: str, path: str, **body) -> dict:
    r = requests.request(method, stack["urls"]["control"] + path, json=body or None, timeout=10)
    r.raise_for_status()
    return r.json()


def stream_batches(redis_url: str) -> list[Batch]:
    client = redislib.Redis.from_url(redis_url)
    try:
        return [Batch.from_fields(fields) for _id, fields in client.xrange(stream_key(HOST))]
    finally:
        client.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
