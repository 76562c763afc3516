"""health_check and the health probes: a healthy pool passes every check; each kind of trouble
(container down, restart loop, unhealthy container, stratum port closed, API failing, node behind or
alone, database refusing) is reported as a failed check, never raised."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

import pytest

from agent.actions import ActionContext
from agent.actions.health import probe_ergo_node, probe_miningcore_api, run_health_check
from devtools.services import free_port
from tests.agent.conftest import fixture_text
from tests.agent.test_actions_services import (
    SERVICE_CMD,
    clear_faults,
    fault,
    make_config,
    module_poolsim,
    private_engine,
)


@contextlib.contextmanager
def stratum_listener():
    """A real TCP listener standing in for one of Miningcore's stratum ports."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- the probes against a local HTTP server (fast) -----------------------------------------------


def test_pools_500_falls_back_to_each_pool(tmp_path, miningcore_server):
    miningcore_server.serve("/api/pools", "Nullable object must have a value.", status=500)
    config = make_config(tmp_path, api_url=miningcore_server.url, node_url="http://127.0.0.1:1", pool_ids=("ergo1",))
    probe = probe_miningcore_api(config)
    assert probe.ok and "HTTP 500 on /api/pools" in probe.detail
    miningcore_server.serve("/api/pools/ergo1", "Unknown pool ergo1", status=404)
    probe = probe_miningcore_api(config)
    assert not probe.ok and "HTTP 404 on /api/pools/ergo1: Unknown pool ergo1" in probe.detail
    without_ids = make_config(tmp_path / "b", api_url=miningcore_server.url, node_url="http://127.0.0.1:1")
    assert probe_miningcore_api(without_ids).detail.endswith("answered HTTP 500: Nullable object must have a value.")


def test_pools_probe_wants_the_expected_pools(tmp_path, miningcore_server):
    config = make_config(tmp_path, api_url=miningcore_server.url, node_url="http://127.0.0.1:1")
    assert probe_miningcore_api(config).ok
    probe = probe_miningcore_api(config, expect_pools=("ergo1", "ergo-solo"))
    assert not probe.ok and "does not serve pool ergo-solo (it serves: ergo1)" in probe.detail
    miningcore_server.serve("/api/pools", {"pools": []})
    assert probe_miningcore_api(config).detail == "Miningcore API answers but serves no pool (no pool started)"
    miningcore_server.serve("/api/pools", "<html>nginx</html>", content_type="text/html")
    assert "unexpected body: <html>nginx</html>" in probe_miningcore_api(config).detail


def test_node_probe_heights(tmp_path, ergo_server):
    config = make_config(tmp_path, api_url="http://127.0.0.1:1", node_url=ergo_server.url)
    probe = probe_ergo_node(config)
    assert probe.ok and probe.detail == "Ergo node answers at height 1612345 (synced, 31 peers)"
    info = json.loads(fixture_text("ergo/info.json"))
    ergo_server.serve("/info", {**info, "fullHeight": None, "headersHeight": None, "maxPeerHeight": None})
    assert probe_ergo_node(config).detail == "Ergo node answers but has no height yet (still loading its state)"
    ergo_server.serve("/info", {**info, "fullHeight": 1612300})
    probe = probe_ergo_node(config)
    assert probe.ok and probe.data["sync_lag"] == 45 and "45 blocks behind" in probe.detail


# --- the action against real parts ---------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(session_dir):
    with private_engine(session_dir, "dockerd-health") as parts:
        yield parts


@pytest.fixture(scope="module")
def sim(pg):
    with module_poolsim(pg, f"health_sim_{os.getpid()}") as sim:
        clear_faults(sim)
        yield sim


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_healthy_pool_passes_every_check(tmp_path, engine, sim, pg):
    dockerd, client, image = engine
    for name in ("hc-miningcore", "hc-postgres", "hc-exporter"):
        client.containers.run(image, SERVICE_CMD, detach=True, name=name, network_mode="none")
    try:
        with stratum_listener() as port_a, stratum_listener() as port_b:
            config = make_config(
                tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url, dsn=pg.dsn("postgres"),
                pool_ids=("ergo1",), stratum_ports=(port_a, port_b),
                services={"miningcore": {"container": "hc-miningcore"}, "postgresql": {"container": "hc-postgres"}},
                docker_containers={"miningcore": "hc-miningcore", "exporter": "hc-exporter"})
            ctx = ActionContext(host="pool-test", config=config)
            result = run_health_check(ctx, {})
    finally:
        for name in ("hc-miningcore", "hc-postgres", "hc-exporter"):
            client.containers.get(name).remove(force=True)
    names = [c["check"] for c in result["checks"]]
    assert names == ["container miningcore (hc-miningcore)", "container postgresql (hc-postgres)",
                     "container exporter (hc-exporter)", f"stratum port {port_a}", f"stratum port {port_b}",
                     "Miningcore API", "Ergo node", "Miningcore database"]
    assert result["ok"] is True and result["failed"] == []
    assert result["summary"] == "all 8 checks passed"
    assert all(c["problem"] is None for c in result["checks"])
    assert result["checks"][0]["detail"].startswith("container hc-miningcore running, up ")
    assert len([line for line in ctx.lines if line.split("] ", 1)[1].startswith("ok ")]) == 8
    json.dumps(result)  # the job result travels as JSON


@pytest.mark.slow
def test_every_kind_of_trouble_is_reported_not_raised(tmp_path, engine, pg):
    dockerd, client, image = engine
    client.containers.run(image, SERVICE_CMD, detach=True, name="hc-stopped", network_mode="none").stop(timeout=5)
    client.containers.run(image, ["sh", "-c", "sleep 0.1; exit 1"], detach=True, name="hc-looping",
                          network_mode="none", restart_policy={"Name": "always"})
    client.containers.run(image, SERVICE_CMD, detach=True, name="hc-unhealthy", network_mode="none",
                          healthcheck={"test": ["CMD", "false"], "interval": 200_000_000, "retries": 1})
    dsn = pg.create_database(f"health_trouble_{os.getpid()}")
    try:
        wait_for(lambda: client.api.inspect_container("hc-unhealthy")["State"].get("Health", {}).get("Status")
                 == "unhealthy", what="hc-unhealthy to turn unhealthy")
        wait_for(lambda: client.api.inspect_container("hc-looping")["RestartCount"] >= 3, what="a restart loop")
        closed_port = free_port()
        from poolsim.testing import run_poolsim

        with run_poolsim(dsn, history_days=0.02) as sim:
            fault(sim, "pool_api_500")
            fault(sim, "node_stalled")
            import requests

            requests.post(sim["control"] + "/time/warp", json={"seconds": 3600}, timeout=10).raise_for_status()
            config = make_config(
                tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                dsn=f"postgresql://miningcore:pw@127.0.0.1:{free_port()}/miningcore", stratum_ports=(closed_port,),
                services={"miningcore": {"container": "hc-stopped"}, "nginx": {"container": "hc-unhealthy"},
                          "ergo_node": {"systemdUnit": "poolwarden-test-absent.service"}},
                docker_containers={"looping": "hc-looping"})
            result = run_health_check(ActionContext(host="pool-test", config=config), {})
    finally:
        for name in ("hc-stopped", "hc-looping", "hc-unhealthy"):
            client.containers.get(name).remove(force=True)
        pg.drop_database(f"health_trouble_{os.getpid()}")
    checks = {c["check"]: c for c in result["checks"]}
    assert result["ok"] is False
    assert set(result["failed"]) == set(checks)  # every check failed, none raised
    assert result["summary"].startswith(f"{len(checks)} of {len(checks)} checks failed: container miningcore")
    assert checks["container miningcore (hc-stopped)"]["problem"] == "container hc-stopped is exited (exit code 0)"
    looping = checks["container looping (hc-looping)"]["problem"]
    assert "restart" in looping and ("restart loop" in looping or "is restarting" in looping)
    assert checks["container nginx (hc-unhealthy)"]["problem"] == (
        "container hc-unhealthy runs but its healthcheck says unhealthy")
    assert checks["unit ergo_node (poolwarden-test-absent.service)"]["ok"] is False
    assert checks[f"stratum port {closed_port}"]["problem"] == f"127.0.0.1:{closed_port}: connection refused"
    assert "answered HTTP 500" in checks["Miningcore API"]["problem"]
    node = checks["Ergo node"]
    assert node["data"]["sync_lag"] > 2 and "the node is not synced" in node["problem"]
    assert "does not accept connections" in checks["Miningcore database"]["problem"]
    assert "pw@" not in json.dumps(result)


def test_docker_unreachable_is_a_failed_check(tmp_path, ergo_server, miningcore_server):
    config = make_config(tmp_path, api_url=miningcore_server.url, node_url=ergo_server.url,
                         docker_url=f"unix://{tmp_path}/no.sock", services={"miningcore": {"container": "mc"}})
    result = run_health_check(ActionContext(host="pool-test", config=config), {})
    assert result["failed"] == ["container miningcore (mc)"]
    assert "is not reachable" in result["checks"][0]["problem"]
    assert result["summary"] == "1 of 3 checks failed: container miningcore (mc)"
    assert result["skipped"] == ["Miningcore database: miningcore.database.dsn is not set in pool.json",
                                 "stratum ports: miningcore.stratumPorts is not set in pool.json"]


def test_docker_switched_off_checks_only_docker_services(tmp_path, ergo_server, miningcore_server):
    config = make_config(tmp_path, api_url=miningcore_server.url, node_url=ergo_server.url, docker_enabled=False,
                         docker_containers={"exporter": "exporter"}, services={"miningcore": {"container": "mc"}})
    result = run_health_check(ActionContext(host="pool-test", config=config), {})
    assert [c["check"] for c in result["checks"]] == ["container miningcore (mc)", "Miningcore API", "Ergo node"]
    assert "docker.enabled false" in result["checks"][0]["problem"]
