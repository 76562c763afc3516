"""End to end: poolsim -> poolwarden-agent -> Redis -> poolwarden-panel engine -> PostgreSQL -> API.

Real processes, real servers: the session's private PostgreSQL and Redis, poolsim in a
subprocess, the agent and the engine as their console scripts.
"""

from __future__ import annotations

import json

import psycopg
import pytest
import redis as redislib
import requests

from agent.contract import stream_key
from tests.integration.conftest import HOST, control, sign_in_client, stream_batches, wait_until

pytestmark = pytest.mark.slow


def test_no_sample_lost_or_duplicated_over_many_cycles(stack):
    """The agent and the engine run side by side for many cycles; PostgreSQL ends up with exactly
    the samples the agent published, each once."""
    cycles = 12
    engine = stack["run_engine"]()
    agent = stack["run_agent"]("--cycles", str(cycles), "--interval", "1")
    assert agent.proc.wait(timeout=120) == 0, agent.tail()

    batches = stream_batches(stack["redis_url"])
    assert len(batches) == cycles
    assert len({b.id for b in batches}) == cycles
    expected = sum(len(b.samples) for b in batches)
    assert expected > cycles * 20  # every collector contributed

    with psycopg.connect(stack["pw_dsn"]) as conn:
        def ingested():
            n = conn.execute("SELECT count(*) FROM ingested_batches").fetchone()[0]
            conn.commit()
            return n == cycles
        wait_until(ingested, 30, "the engine to ingest every batch")
        stored = conn.execute(
            "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id JOIN hosts h ON h.id = r.host_id "
            "WHERE h.name = %s", (HOST,)).fetchone()[0]
        assert stored == expected
        per_batch = conn.execute("SELECT batch_id, sample_count FROM ingested_batches").fetchall()
        assert {bid: n for bid, n in per_batch} == {b.id: len(b.samples) for b in batches}
        host = conn.execute("SELECT name FROM hosts").fetchall()
        assert host == [(HOST,)]
    assert engine.alive(), engine.tail()

    # Replaying every entry (as a spool replay or a retried XADD would) stores nothing new.
    client = redislib.Redis.from_url(stack["redis_url"])
    try:
        for b in batches:
            client.xadd(stream_key(HOST), b.to_fields())
    finally:
        client.close()
    with psycopg.connect(stack["pw_dsn"]) as conn:
        def acked():
            c = redislib.Redis.from_url(stack["redis_url"])
            try:
                groups = c.xinfo_groups(stream_key(HOST))
            finally:
                c.close()
            return groups and groups[0]["pending"] == 0 and groups[0].get("lag", 0) == 0
        wait_until(acked, 30, "the engine to consume the replayed entries")
        again = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert again == expected
        assert conn.execute("SELECT count(*) FROM ingested_batches").fetchone()[0] == cycles


def test_what_poolsim_reports_arrives_in_postgres_and_the_api(stack):
    """With poolsim's clock paused, the values in PostgreSQL and in the panel's API equal poolsim's."""
    control(stack, "POST", "/clock/pause")
    pools = requests.get(stack["urls"]["api"] + "/api/pools", timeout=10).json()["pools"]
    info = requests.get(stack["urls"]["node"] + "/info", timeout=10).json()
    pool = pools[0]

    agent = stack["run_agent"]("--once")
    assert agent.proc.wait(timeout=60) == 0, agent.tail()
    engine = stack["run_engine"]("--once")
    assert engine.proc.wait(timeout=60) == 0, engine.tail()

    with psycopg.connect(stack["pw_dsn"]) as conn:
        rows = conn.execute(
            "SELECT r.name, r.labels, l.value FROM latest l JOIN series r ON r.id = l.series_id").fetchall()
    latest = {(name, json.dumps(labels, sort_keys=True)): value for name, labels, value in rows}

    def value(name: str, **labels: str) -> float:
        return latest[(name, json.dumps(labels, sort_keys=True))]

    pid = pool["id"]
    assert value("poolwarden_pool_up", pool=pid) == 1
    assert value("poolwarden_pool_hashrate_hps", pool=pid) == pool["poolStats"]["poolHashrate"]
    assert value("poolwarden_pool_miners", pool=pid) == pool["poolStats"]["connectedMiners"]
    assert value("poolwarden_network_height", pool=pid) == pool["networkStats"]["blockHeight"]
    assert value("poolwarden_network_difficulty", pool=pid) == pytest.approx(pool["networkStats"]["networkDifficulty"])
    assert value("poolwarden_pool_blocks_total", pool=pid) == pool["totalBlocks"]
    assert value("poolwarden_node_full_height") == info["fullHeight"]
    assert value("poolwarden_node_peers") == info["peersCount"]
    assert value("poolwarden_node_up") == 1

    from panel import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": stack["pw_dsn"], "REDIS_URL": stack["redis_url"],
                      "SECRET_KEY": "t", "SECRETS_KEY": stack["panel_env"]["POOLWARDEN_SECRETS_KEY"]})
    client = app.test_client()
    assert client.get("/api/admin/system/disk").status_code == 401  # nothing without signing in
    sign_in_client(client, stack)
    disk = client.get("/api/admin/system/disk").get_json()
    assert disk["host"] == HOST
    # ext4 keeps reserved blocks: free is what unprivileged users may still write
    assert disk["total"] >= disk["used"] + disk["free"] > 0
    assert disk["usagePercent"] == pytest.approx(100 * disk["used"] / (disk["used"] + disk["free"]), abs=0.1)
    assert disk["components"]["ergoNode"] >= 200_000
    assert disk["components"]["postgresql"] > 0
    overview = client.get(f"/api/hosts/{HOST}/overview")
    assert overview.status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    assert HOST in page.get_data(as_text=True)
    control(stack, "POST", "/clock/resume")


def test_pool_api_down_is_recorded_as_down_not_lost(stack):
    control(stack, "POST", "/faults/pool_api_down")
    control(stack, "POST", "/faults/node_down")
    try:
        agent = stack["run_agent"]("--once")
        assert agent.proc.wait(timeout=60) == 0, agent.tail()
    finally:
        control(stack, "DELETE", "/faults")
    engine = stack["run_engine"]("--once")
    assert engine.proc.wait(timeout=60) == 0, engine.tail()
    with psycopg.connect(stack["pw_dsn"]) as conn:
        rows = dict(conn.execute(
            "SELECT r.name || coalesce(r.labels->>'collector', ''), l.value FROM latest l "
            "JOIN series r ON r.id = l.series_id WHERE r.name IN ('poolwarden_node_up', 'poolwarden_collector_up')"
        ).fetchall())
    assert rows["poolwarden_node_up"] == 0
    # the host collectors were unaffected by the pool's faults
    assert rows["poolwarden_collector_updisk"] == 1
    assert rows["poolwarden_collector_upmemory"] == 1
