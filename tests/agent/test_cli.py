"""The poolwarden-agent command line: check-config, once --print, and collect as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from agent.cli import main
from agent.config import load_config
from agent.contract import Batch, stream_key
from agent.runner import Agent
from tests.agent.conftest import example_config, write_config

AGENT = str(Path(sys.executable).with_name("poolwarden-agent"))


@pytest.fixture
def pool_env(tmp_path, miningcore_server, ergo_server):
    """The variables the example config files read, pointing at the fixture servers and temp dirs."""
    for d in ("logs", "ergo/history", "backups"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "ergo" / "history" / "chunk").write_bytes(b"x" * 200_000)
    return {
        "POOLWARDEN_HOST": "pool-cli",
        "MININGCORE_API_URL": miningcore_server.url,
        "MININGCORE_METRICS_URL": miningcore_server.url + "/metrics",
        "MININGCORE_DB_DSN": "postgresql://postgres@127.0.0.1:1/none",  # overridden where a DB is needed
        "MININGCORE_LOG_DIR": str(tmp_path / "logs"),
        "ERGO_NODE_URL": ergo_server.url,
        "ERGO_NODE_API_KEY": "hello",
        "ERGO_NODE_DATA_DIR": str(tmp_path / "ergo"),
        "POOLWARDEN_BACKUP_DIR": str(tmp_path / "backups"),
        "POOLWARDEN_REDIS_URL": "redis://127.0.0.1:1/0",
        "POOLWARDEN_SPOOL_DIR": str(tmp_path / "spool"),
    }


EXAMPLE_DIR = str(Path(__file__).resolve().parents[2] / "config")


def test_check_config_ok(capsys, monkeypatch):
    monkeypatch.setenv("ERGO_NODE_API_KEY", "secret-key")
    assert main(["check-config", "--config-dir", EXAMPLE_DIR]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE_DIR}\n")
    assert "host: pool-1" in out and "ergoNodeApiKey: set" in out and "secret-key" not in out


def test_check_config_error_exits_2(tmp_path, capsys):
    pool, monitoring = example_config()
    pool["miningcore"]["apiUrl"] = "localhost:4000"
    write_config(tmp_path, pool, monitoring)
    assert main(["check-config", "--config-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/pool.json: miningcore.apiUrl: must be an http(s) URL, got 'localhost:4000'" in err
    assert main(["collect", "--once", "--config-dir", str(tmp_path)]) == 2


def test_once_print_shows_every_collector_without_redis(pool_env, monkeypatch, capsys):
    for key, value in pool_env.items():
        monkeypatch.setenv(key, value)
    assert main(["once", "--config-dir", EXAMPLE_DIR]) == 0
    out = capsys.readouterr().out
    assert "# event agent_started agent_started:pool-cli:" in out
    assert 'poolwarden_pool_hashrate_hps{pool="ergo1"} 18734562211\n' in out
    assert "poolwarden_node_full_height 1612345\n" in out
    assert "poolwarden_node_difficulty 2404351766609920\n" in out
    for name in ("disk", "cpu", "memory", "load", "network", "diskio", "miningcore", "miningcore_metrics",
                 "pool_events", "miningcore_log", "ergo_node"):
        assert f'poolwarden_collector_up{{collector="{name}"}} 1\n' in out
    for name in ("components", "postgresql", "postgresql_tables"):  # DB at port 1: down, dirs still sized
        assert f'poolwarden_collector_up{{collector="{name}"}} 0' in out
    assert "poolwarden_agent_heartbeat_timestamp_seconds " in out
    assert f'poolwarden_component_size_bytes{{component="ergoNode",path="{pool_env["ERGO_NODE_DATA_DIR"]}"}}' in out
    assert not Path(pool_env["POOLWARDEN_SPOOL_DIR"]).exists()  # --print touches neither Redis nor the spool


def test_agent_cycle_batches(pool_env, fresh_db, tmp_path):
    config = load_config(EXAMPLE_DIR, env=dict(pool_env, MININGCORE_DB_DSN=fresh_db))
    agent = Agent.from_config(config, publish=False, background=False)
    try:
        first, second = agent.cycle(), agent.cycle()
    finally:
        agent.close()
    assert (first.seq, second.seq) == (1, 2)
    assert [e.kind for e in first.events] == ["agent_started"] and second.events == []
    assert first.events[0].id == f"agent_started:pool-cli:{int(agent.started_at * 1000)}"
    assert first.events[0].data["config"]["host"] == "pool-cli"
    ups = {s.labels["collector"]: s.value for s in first.samples if s.name == "poolwarden_collector_up"}
    assert ups == {**dict.fromkeys(["disk", "cpu", "memory", "load", "network", "diskio", "miningcore",
                                    "miningcore_metrics", "pool_events", "miningcore_log", "ergo_node", "postgresql",
                                    "postgresql_tables", "components"], 1.0),
                   "containers": 0.0, "docker_disk": 0.0}  # no Docker Engine at /var/run/docker.sock here
    components = {s.labels["component"] for s in first.samples if s.name == "poolwarden_component_size_bytes"}
    assert components == {"postgresql", "ergoNode", "ergoNode.history", "ergoNode.state", "ergoNode.other", "logs",
                          "backups"}
    Batch.from_fields(first.to_fields())  # serialisable (finite values only)


def run_agent(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([AGENT, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def stream(url: str, host: str) -> list[Batch]:
    client = redis.Redis.from_url(url)
    try:
        return [Batch.from_fields(f) for _id, f in client.xrange(stream_key(host))]
    finally:
        client.close()


@pytest.mark.slow
def test_collect_cycles_publishes_to_redis(pool_env, redis_url, fresh_db, tmp_path):
    env = dict(pool_env, POOLWARDEN_REDIS_URL=redis_url, MININGCORE_DB_DSN=fresh_db)
    proc = run_agent(["collect", "--config-dir", EXAMPLE_DIR, "--cycles", "3", "--interval", "1"], env,
                     tmp_path / "agent.log")
    assert proc.wait(timeout=60) == 0, (tmp_path / "agent.log").read_text()
    batches = stream(redis_url, "pool-cli")
    assert [b.seq for b in batches] == [1, 2, 3]
    assert batches[0].events[0].kind == "agent_started"
    # aligned to the interval: cycles after the first start on whole seconds
    assert all(b.ts % 1 < 0.8 for b in batches[1:])
    components = [s for b in batches for s in b.samples if s.name == "poolwarden_component_size_bytes"]
    assert {s.labels["component"] for s in components} == {"postgresql", "ergoNode", "ergoNode.history",
                                                            "ergoNode.state", "ergoNode.other", "logs", "backups"}
    assert len(components) == 7  # measured once, sent once (next run in componentSizesSeconds)
    log = (tmp_path / "agent.log").read_text()
    assert "agent stopped after 3 batches" in log
    assert not list(Path(pool_env["POOLWARDEN_SPOOL_DIR"]).glob("*.json"))  # no batch spooled


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_redis_outage_spools(pool_env, tmp_path, redis_url):
    env = dict(pool_env)  # POOLWARDEN_REDIS_URL points at port 1: nothing listens, batches spool
    proc = run_agent(["collect", "--config-dir", EXAMPLE_DIR, "--interval", "1"], env, tmp_path / "agent.log")
    spool = Path(pool_env["POOLWARDEN_SPOOL_DIR"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(spool.glob("*.json"))) < 2:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0, (tmp_path / "agent.log").read_text()
    log = (tmp_path / "agent.log").read_text()
    assert "SIGTERM received: stopping after the current cycle" in log
    assert "Redis unreachable" in log and log.count("Redis unreachable") == 1  # logged once, not per cycle
    spooled = sorted(spool.glob("*.json"))
    assert len(spooled) >= 2
    batches = [Batch.from_fields({"batch": p.read_text()}) for p in spooled]
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1))

    # restarted with Redis reachable, the agent replays the spool first, in order
    proc = run_agent(["collect", "--config-dir", EXAMPLE_DIR, "--once"], dict(env, POOLWARDEN_REDIS_URL=redis_url),
                     tmp_path / "agent2.log")
    assert proc.wait(timeout=60) == 0, (tmp_path / "agent2.log").read_text()
    got = stream(redis_url, "pool-cli")
    assert [b.id for b in got[:len(batches)]] == [b.id for b in batches]
    assert len(got) == len(batches) + 1 and got[-1].events[0].kind == "agent_started"
    assert not list(spool.glob("*.json"))
