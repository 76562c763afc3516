"""The ``miners_leave`` and ``payout_processor_down`` faults, as a monitoring agent sees them.

Everything is read through the Miningcore API, ``/metrics``, the control API's ``/state``, the
log files and the database, with the clock paused and moved by ``step``.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial

import psycopg
import pytest
import requests
from werkzeug.test import Client

from poolsim.app import PoolSim
from poolsim.engine import utc
from poolsim.miningcore_api import MiningcoreApi
from tests.poolsim.shapes import START

get = partial(requests.get, timeout=30)
delete = partial(requests.delete, timeout=30)

STATS_INTERVAL = 120  # the sim fixture's --stats-interval
WINDOW = 600  # Miningcore's hashrate window


def post(sim, path, body=None):
    return requests.post(sim.urls["control"] + path, json=body if body is not None else {}, timeout=60)


def state(sim) -> dict:
    return get(sim.urls["control"] + "/state").json()


def pool_stats(sim) -> dict:
    return get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["poolStats"]


def connections(sim) -> float:
    for line in get(sim.urls["api"] + "/metrics").text.splitlines():
        if line.startswith("miningcore_pool_connections{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no miningcore_pool_connections in /metrics")


def blocks(sim, **params) -> list[dict]:
    return get(sim.urls["api"] + "/api/pools/ergo1/blocks", params={"pageSize": 100, **params}).json()


def log_text(sim, name: str = "miningcore.log") -> str:
    return (sim.logs.dir / name).read_text()


def to_stats_cycle(sim) -> None:
    """Step to the next stats cycle boundary (cycles run every 120 s from the start time)."""
    sim.step((sim.sim.start - sim.sim.t) % STATS_INTERVAL)


# ---------------------------------------------------------------- catalogue and parameters

def test_catalogue_lists_the_new_faults(sim, clean_faults):
    available = get(sim.urls["control"] + "/faults").json()["available"]
    assert "ratio" in available["miners_leave"]
    assert "payout" in available["payout_processor_down"].lower()


@pytest.mark.parametrize(("name", "body", "message"), [
    ("miners_leave", {"ratio": 0}, "ratio must be greater than 0 and at most 1"),
    ("miners_leave", {"ratio": 1.5}, "ratio must be greater than 0 and at most 1"),
    ("miners_leave", {"ratio": -0.2}, "ratio must be greater than 0 and at most 1"),
    ("miners_leave", {"ratio": "half"}, "ratio must be a number, got 'half'"),
    ("miners_leave", {"ratoi": 0.5}, "unknown parameter 'ratoi': this fault takes 'ratio'"),
    ("payout_processor_down", {"ratio": 1}, "unknown parameter 'ratio': this fault takes no parameters"),
    ("invalid_share_spike", {"ratio": 1}, "ratio must be between 0 and 1 (exclusive)"),
])
def test_bad_parameters_are_refused(sim, clean_faults, name, body, message):
    connected = state(sim)["pool"]["miners"]
    r = post(sim, f"/faults/{name}", body)
    assert r.status_code == 400
    assert message in r.json()["error"]
    after = state(sim)
    assert after["faults"] == [] and after["pool"]["minersAway"] == [] and after["pool"]["miners"] == connected


# ---------------------------------------------------------------- miners_leave

def test_half_the_miners_leave_and_come_back(sim, module_db, clean_faults):
    to_stats_cycle(sim)
    before = state(sim)["pool"]
    stats0 = pool_stats(sim)
    gauge0 = connections(sim)
    assert before["miners"] >= 4 and stats0["connectedMiners"] == before["miners"]

    r = post(sim, "/faults/miners_leave", {"ratio": 0.5})
    assert r.status_code == 201
    assert r.json()["active"]["name"] == "miners_leave" and r.json()["active"]["params"] == {"ratio": 0.5}
    since = sim.sim.t

    # the first ceil(ratio x connected) connected miners by address leave, at once
    during = state(sim)["pool"]
    leavers = before["minerAddresses"][:math.ceil(before["miners"] * 0.5)]
    stayers = before["minerAddresses"][len(leavers):]
    assert during["minersAway"] == leavers
    assert during["minerAddresses"] == stayers and during["miners"] == len(stayers)
    assert during["trueHashrate"] < before["trueHashrate"]
    # /metrics counts stratum connections live
    assert connections(sim) == during["workers"] + 2 < gauge0

    # connectedMiners counts addresses with shares in the 10-minute window: unchanged one cycle later
    sim.step(STATS_INTERVAL)
    assert pool_stats(sim)["connectedMiners"] == stats0["connectedMiners"]
    # and down once the window has slid past the leavers' last shares; hashrate follows the stayers
    sim.step(WINDOW - STATS_INTERVAL)
    stats1 = pool_stats(sim)
    now = state(sim)["pool"]
    assert stats1["connectedMiners"] == len(stayers) == now["miners"]
    ratio = stats1["poolHashrate"] / stats0["poolHashrate"]
    assert ratio == pytest.approx(now["trueHashrate"] / before["trueHashrate"], abs=0.12)
    assert ratio == pytest.approx(1 - 0.5, abs=0.15)

    # no share written for a leaver, the stayers go on
    with psycopg.connect(module_db) as conn:
        per_miner = dict(conn.execute(
            "SELECT miner, COUNT(*) FROM shares WHERE created > %s GROUP BY miner", (utc(since),)).fetchall())
    assert set(per_miner) == set(stayers)
    # a leaver's own page: its workers got their zero sample
    miner = get(f"{sim.urls['api']}/api/pools/ergo1/miners/{leavers[0]}").json()
    assert miner["performance"]["workers"] and all(
        w["hashrate"] == 0 for w in miner["performance"]["workers"].values())

    # an hour on, the last hour's miners are the stayers only, and so is the hourly performance
    sim.step(3600 + STATS_INTERVAL)
    listed = get(sim.urls["api"] + "/api/pools/ergo1/miners", params={"topMinersRange": 1}).json()
    assert {m["miner"] for m in listed} == set(stayers)
    assert all(m["hashrate"] > 0 for m in listed)
    everyone = {m["miner"] for m in get(sim.urls["api"] + "/api/pools/ergo1/miners").json()}
    assert set(leavers) <= everyone  # the default 24-hour range still holds their best sample
    hours = get(sim.urls["api"] + "/api/pools/ergo1/performance").json()["stats"]
    first_full_hour = (since + WINDOW) // 3600 * 3600 + 3600
    after = [h for h in hours if h["created"] >= utc(first_full_hour).isoformat().replace("+00:00", "Z")]
    assert after and all(h["connectedMiners"] == len(stayers) for h in after)
    assert all(h["poolHashrate"] < 0.7 * stats0["poolHashrate"] for h in after)

    # cleared: they reconnect at once and are back in the stats a window later
    assert delete(sim.urls["control"] + "/faults/miners_leave").status_code == 200
    back = state(sim)["pool"]
    assert back["minersAway"] == [] and set(leavers) <= set(back["minerAddresses"])
    assert connections(sim) == back["workers"] + 2 > during["workers"] + 2
    sim.step(WINDOW)
    stats2 = pool_stats(sim)
    assert stats2["connectedMiners"] == state(sim)["pool"]["miners"]
    assert stats2["poolHashrate"] > 1.5 * stats1["poolHashrate"]


def test_all_miners_leave(sim, module_db, clean_faults):
    to_stats_cycle(sim)
    before_blocks = len(blocks(sim))
    r = post(sim, "/faults/miners_leave")  # ratio defaults to 1: every miner
    assert r.status_code == 201 and r.json()["active"]["params"] == {"ratio": 1.0}
    since = sim.sim.t
    during = state(sim)["pool"]
    assert during["miners"] == during["workers"] == 0 and during["trueHashrate"] == 0
    assert len(during["minersAway"]) == len(sim.sim.miners)  # offline ones too: nobody connects
    assert connections(sim) == 2
    log_before = len(log_text(sim))

    # no hashrate, no block: not even a forced find
    assert post(sim, "/blocks/find").status_code == 202
    sim.step(WINDOW)
    assert pool_stats(sim) == {"connectedMiners": 0, "poolHashrate": 0, "sharesPerSecond": 0}
    new_lines = log_text(sim)[log_before:]
    assert "[StatsRecorder] [ergo1] Reset performance stats for pool" in new_lines
    sim.step(3 * 3600)
    assert len(blocks(sim)) == before_blocks
    assert state(sim)["pool"]["miners"] == 0
    with psycopg.connect(module_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM shares WHERE created > %s", (utc(since),)).fetchone()[0] == 0

    # back: shares, hashrate, and the pending forced find happens
    delete(sim.urls["control"] + "/faults/miners_leave")
    sim.step(WINDOW)
    stats = pool_stats(sim)
    assert stats["connectedMiners"] == state(sim)["pool"]["miners"] > 0 and stats["poolHashrate"] > 0
    assert len(blocks(sim)) == before_blocks + 1


def test_miners_leave_for_a_duration(sim, clean_faults):
    gauge = connections(sim)
    assert post(sim, "/faults/miners_leave", {"ratio": 0.3, "durationSeconds": 0.5}).status_code == 201
    assert state(sim)["pool"]["minersAway"] and connections(sim) < gauge
    time.sleep(1.0)  # wall-clock expiry; the sim thread brings the miners back even with the clock paused
    assert state(sim)["faults"] == [] and state(sim)["pool"]["minersAway"] == []
    assert connections(sim) == gauge


# ---------------------------------------------------------------- payout_processor_down

def test_payout_processor_down_freezes_blocks_then_catches_up(sim, module_db, clean_faults):
    assert post(sim, "/faults/payout_processor_down").status_code == 201
    frozen = {b["blockHeight"]: b for b in blocks(sim, state="pending")}
    assert any(b["confirmationProgress"] > 0 for b in frozen.values())  # from the seeded history
    known = {b["blockHeight"] for b in blocks(sim)}
    with psycopg.connect(module_db) as conn:
        payments0 = conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0]
        changes0 = conn.execute("SELECT COUNT(*) FROM balance_changes").fetchone()[0]
    paid0 = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["totalPaid"]
    log_before = len(log_text(sim))

    # a block found while the payout loop is down is never classified
    post(sim, "/blocks/find")
    for _ in range(6):
        sim.step(600)
        if {b["blockHeight"] for b in blocks(sim)} - known:
            break
    (height,) = {b["blockHeight"] for b in blocks(sim)} - known
    # more than 720 confirmations' worth of time, in several payout intervals
    for _ in range(10):
        sim.step(9000)
    assert get(sim.urls["node"] + "/info").json()["fullHeight"] - height > 720 + 10

    new = next(b for b in blocks(sim) if b["blockHeight"] == height)
    assert new["status"] == "pending" and new["confirmationProgress"] == 0
    assert "hash" not in new and "effort" not in new and new["reward"] == 0
    for h, block in frozen.items():
        assert next(b for b in blocks(sim) if b["blockHeight"] == h) == block
    with psycopg.connect(module_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0] == payments0
        assert conn.execute("SELECT COUNT(*) FROM balance_changes").fetchone()[0] == changes0
    assert get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["totalPaid"] == paid0
    quiet = log_text(sim)[log_before:]
    for pattern in ("[PayoutManager]", "Unlocked block", "classified as orphaned", "Paying "):
        assert pattern not in quiet
    assert f"Daemon accepted block {height}" in quiet  # the pool itself kept running

    # cleared: the next payout run confirms and pays what is past 720 confirmations
    assert delete(sim.urls["control"] + "/faults/payout_processor_down").status_code == 200
    sim.step(600)
    new = next(b for b in blocks(sim) if b["blockHeight"] == height)
    assert new["status"] == "confirmed" and new["confirmationProgress"] == 1
    assert new["hash"] and new["effort"] > 0 and new["reward"] > 5
    for h in frozen:
        assert next(b for b in blocks(sim) if b["blockHeight"] == h)["status"] in ("confirmed", "orphaned")
    assert f"Unlocked block {height} worth" in log_text(sim, "ergo1.log")
    with psycopg.connect(module_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payments").fetchone()[0] > payments0
        credits = conn.execute("SELECT COUNT(*) FROM balance_changes WHERE usage LIKE %s",
                               (f"Reward for % block {height}",)).fetchone()[0]
    assert credits > 1
    assert get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]["totalPaid"] > paid0


# ---------------------------------------------------------------- determinism

@pytest.fixture
def dbs(pg):
    names = [f"faults_det_{i}" for i in range(3)]
    yield [pg.create_database(n) for n in names]
    for n in names:
        pg.drop_database(n)


def run(dsn: str, steps: list[float], *, toggle: bool = True, seed: int = 7) -> dict:
    """Step a sim; with ``toggle``, both faults go on after 600 s and off after 1800 s of sim time."""
    ps = PoolSim(seed=seed, dsn=dsn, start=START, paused=True, history_days=1, stats_interval=60)
    ps.start(start_servers=False)
    connected_at_600 = None
    try:
        for seconds in steps:
            ps.step(seconds)
            elapsed = ps.sim.t - START
            if elapsed == 600:
                connected_at_600 = ps.state()["pool"]["minerAddresses"]
            if toggle and elapsed == 600:
                ps.faults.activate("miners_leave", {"ratio": 0.5}, ps.sim.t)
                ps.faults.activate("payout_processor_down", {}, ps.sim.t)
                ps.apply_faults()
            if toggle and elapsed == 1800:
                ps.faults.clear_all()
                ps.apply_faults()
        truth = ps.state()
        for volatile in ("clockTime", "faults", "lastError"):
            truth.pop(volatile)
        pools = Client(MiningcoreApi(ps)).get("/api/pools").get_data(as_text=True)
        with psycopg.connect(dsn) as conn:
            shares = conn.execute(
                "SELECT miner, worker, difficulty, created FROM shares WHERE created >= %s "
                "ORDER BY created, miner, worker", (utc(START),)).fetchall()
        return {"state": json.loads(json.dumps(truth, default=str)), "pools": pools, "shares": shares,
                "connected_at_600": connected_at_600}
    finally:
        ps.stop()


def test_same_faults_at_the_same_sim_time_same_state(dbs):
    a = run(dbs[0], [10, 590, 600, 600, 600, 600])
    b = run(dbs[1], [600, 1200, 1200])
    assert a == b
    assert a["state"]["pool"]["minersAway"] == []


def test_miners_who_stay_are_not_disturbed(dbs):
    with_fault = run(dbs[0], [600, 1200, 1200])
    without = run(dbs[1], [600, 1200, 1200], toggle=False)
    connected = without["connected_at_600"]
    assert with_fault["connected_at_600"] == connected
    away = set(connected[:math.ceil(len(connected) * 0.5)])

    def during(shares, leavers_too):
        return [s for s in shares if utc(START + 600) <= s[3] < utc(START + 1800)
                and (leavers_too or s[0] not in away)]

    # while the fault lasts, the shares written are exactly the stayers' shares of the run without it
    stayed = during(with_fault["shares"], True)
    assert stayed and not {s[0] for s in stayed} & away
    assert stayed == during(without["shares"], False)
    # and once it is over everyone mines exactly as without it
    assert [s for s in with_fault["shares"] if s[3] >= utc(START + 1800)] == \
        [s for s in without["shares"] if s[3] >= utc(START + 1800)]
