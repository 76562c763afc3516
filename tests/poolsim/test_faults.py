"""Each fault is observable through the APIs, the logs or the control API."""

from __future__ import annotations

import time
from decimal import Decimal
from functools import partial

import pytest
import requests

from poolsim.engine import Batch

get = partial(requests.get, timeout=30)
delete = partial(requests.delete, timeout=30)

pytestmark = pytest.mark.usefixtures("clean_faults")


def post(sim, path, body=None):
    return requests.post(sim.urls["control"] + path, json=body or {}, timeout=60)


def metric(sim, name):
    for line in get(sim.urls["api"] + "/metrics").text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(name)


def test_fault_catalogue_and_errors(sim):
    body = get(sim.urls["control"] + "/faults").json()
    assert body["active"] == []
    assert "node_stalled" in body["available"] and "orphan_block" in body["available"]
    assert post(sim, "/faults/bogus").status_code == 404
    assert post(sim, "/faults/invalid_share_spike", {"ratio": 2}).status_code == 400
    assert delete(sim.urls["control"] + "/faults/zero_peers").status_code == 404


def test_pool_api_down_refuses_connections(sim):
    assert post(sim, "/faults/pool_api_down").status_code == 201
    with pytest.raises(requests.ConnectionError):
        get(sim.urls["api"] + "/api/pools", timeout=2)
    assert delete(sim.urls["control"] + "/faults/pool_api_down").status_code == 200
    assert get(sim.urls["api"] + "/api/health-check", timeout=5).status_code == 200


def test_pool_api_500(sim):
    post(sim, "/faults/pool_api_500")
    r = get(sim.urls["api"] + "/api/pools")
    assert r.status_code == 500 and r.text and not r.text.startswith("{")
    assert get(sim.urls["api"] + "/api/pools/ergo1/blocks").status_code == 500
    delete(sim.urls["control"] + "/faults")
    assert get(sim.urls["api"] + "/api/pools").status_code == 200


def test_node_down_refuses_connections(sim):
    post(sim, "/faults/node_down")
    with pytest.raises(requests.ConnectionError):
        get(sim.urls["node"] + "/info", timeout=2)
    delete(sim.urls["control"] + "/faults/node_down")
    assert get(sim.urls["node"] + "/info", timeout=5).status_code == 200


def test_fault_with_duration_expires(sim):
    post(sim, "/faults/zero_peers", {"durationSeconds": 0.3})
    assert get(sim.urls["node"] + "/info").json()["peersCount"] == 0
    time.sleep(0.5)
    sim.faults.expire()
    assert get(sim.urls["node"] + "/info").json()["peersCount"] > 0


def test_zero_peers(sim):
    post(sim, "/faults/zero_peers")
    assert get(sim.urls["node"] + "/info").json()["peersCount"] == 0
    assert get(sim.urls["node"] + "/peers/connected").json() == []
    sim.step(60)
    pool = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]
    assert pool["networkStats"]["connectedPeers"] == 0


def test_node_stalled_while_network_goes_on(sim):
    node = sim.urls["node"]
    before = get(node + "/info").json()
    mc_before = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["networkStats"]["blockHeight"]
    post(sim, "/faults/node_stalled")
    sim.step(1800)
    during = get(node + "/info").json()
    assert during["fullHeight"] == during["headersHeight"] == before["fullHeight"]
    assert during["maxPeerHeight"] > before["maxPeerHeight"]
    mc = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["networkStats"]["blockHeight"]
    assert mc == mc_before
    delete(sim.urls["control"] + "/faults/node_stalled")
    sim.step(60)
    after = get(node + "/info").json()
    assert after["fullHeight"] == after["maxPeerHeight"]


def test_invalid_share_spike(sim):
    valid0 = metric(sim, "miningcore_valid_shares_total")
    invalid0 = metric(sim, "miningcore_invalid_shares_total")
    total0 = metric(sim, "miningcore_shares_total")
    post(sim, "/faults/invalid_share_spike", {"ratio": 0.3})
    sim.step(1800)
    valid = metric(sim, "miningcore_valid_shares_total") - valid0
    invalid = metric(sim, "miningcore_invalid_shares_total") - invalid0
    assert metric(sim, "miningcore_shares_total") - total0 == valid + invalid
    assert valid > 100
    assert 0.25 < invalid / (valid + invalid) < 0.35


def test_payment_failure(sim):
    address = sim.sim.miners[0].address
    with sim.lock:  # make sure something is due at the next payout run (through the ledger)
        batch = Batch()
        sim.sim._credit(batch, address, Decimal("2.000000000000"), "Reward for block 1", sim.sim.t)
        sim._flush(batch)
    paid_before = sim.sim.payment_count
    post(sim, "/faults/payment_failure")
    sim.step(1200)
    assert sim.sim.payment_count == paid_before
    assert sim.sim.balances[address][0] >= Decimal("2")
    log = (sim.logs.dir / "miningcore.log").read_text()
    assert "Payment processing failed" in log and "Payment transaction failed: " in log
    assert "Payment transaction failed" in (sim.logs.dir / "ergo1.log").read_text()
    delete(sim.urls["control"] + "/faults/payment_failure")
    sim.step(600)
    assert sim.sim.payment_count > paid_before
    assert sim.sim.balances[address][0] == 0


def _blocks(sim):
    return get(sim.urls["api"] + "/api/pools/ergo1/blocks", params={"pageSize": 100}).json()


def test_block_drought(sim):
    count = len(_blocks(sim))
    post(sim, "/faults/block_drought")
    post(sim, "/blocks/find")
    sim.step(3600)
    assert len(_blocks(sim)) == count
    delete(sim.urls["control"] + "/faults/block_drought")
    for _ in range(12):
        sim.step(600)
        if len(_blocks(sim)) > count:
            break
    assert len(_blocks(sim)) == count + 1


def test_orphan_next_block(sim):
    count = len(_blocks(sim))
    post(sim, "/faults/orphan_next_block")
    post(sim, "/blocks/find")
    for _ in range(12):
        sim.step(600)
        if len(_blocks(sim)) > count:
            break
    sim.step(600)  # the next payout run classifies it
    newest = _blocks(sim)[0]
    assert newest["status"] == "orphaned" and newest["reward"] == 0 and "hash" not in newest
    assert "effort" in newest
    assert not sim.faults.is_active("orphan_next_block")
    assert f"Block {newest['blockHeight']} classified as orphaned" in (sim.logs.dir / "ergo1.log").read_text()


def test_orphan_block_action(sim):
    post(sim, "/blocks/find")
    for _ in range(12):
        sim.step(600)
        if any(b["status"] == "pending" for b in _blocks(sim)):
            break
    pending = [b for b in _blocks(sim) if b["status"] == "pending"]
    assert pending
    r = post(sim, "/faults/orphan_block")
    assert r.status_code == 200
    assert r.json()["orphaned"]["blockHeight"] == pending[0]["blockHeight"]
    assert next(b for b in _blocks(sim) if b["blockHeight"] == pending[0]["blockHeight"])["status"] == "orphaned"
    assert "orphan_block" not in [f["name"] for f in get(sim.urls["control"] + "/faults").json()["active"]]


def test_slow_answers(sim):
    post(sim, "/faults/slow_answers", {"seconds": 0.4})
    for url in (sim.urls["api"] + "/api/health-check", sim.urls["node"] + "/info"):
        began = time.monotonic()
        get(url)
        assert time.monotonic() - began >= 0.4


def test_time_warp_moves_heights_and_makes_a_drought(sim):
    state = get(sim.urls["control"] + "/state").json()
    effort0 = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["poolEffort"]
    post(sim, "/faults/block_drought")
    r = post(sim, "/time/warp", {"seconds": 6 * 3600})
    assert r.status_code == 200 and r.json()["steps"] == 6 * 360
    after = get(sim.urls["control"] + "/state").json()
    assert after["simTime"] == state["simTime"] + 6 * 3600
    assert 120 < after["network"]["height"] - state["network"]["height"] < 240
    assert after["blocks"]["total"] == state["blocks"]["total"]
    pool = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]
    assert pool["poolEffort"] > effort0
    assert post(sim, "/time/warp", {"seconds": -5}).status_code == 400


def test_clock_pause_resume_step(sim):
    control = sim.urls["control"]
    t0 = get(control + "/state").json()["simTime"]
    assert post(sim, "/clock/step", {"seconds": 120}).json()["simTime"] == t0 + 120
    post(sim, "/clock/resume")
    try:
        assert get(control + "/state").json()["paused"] is False
    finally:
        post(sim, "/clock/pause")
    assert get(control + "/state").json()["paused"] is True
