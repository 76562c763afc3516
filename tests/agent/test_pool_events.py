"""Block and payment events read incrementally from poolsim's Miningcore API, with the cursor on
disk: nothing lost when a batch is not committed, nothing repeated across agent restarts."""

from __future__ import annotations

import json

import pytest
import requests

from agent.collectors import PoolEventsCollector, run_collector
from agent.contract import EVENT_KINDS


@pytest.fixture
def sim(fresh_db):
    from poolsim import PoolSim

    with PoolSim(seed=42, dsn=fresh_db, paused=True, history_days=1.5, payout_interval=600) as sim:
        yield sim


def api(sim, path):
    return requests.get(sim.urls["api"] + path, params={"pageSize": 1000}, timeout=5).json()


def reader(sim, state_dir, **kw):
    return PoolEventsCollector(requests.Session(), sim.urls["api"], state_dir, pool_ids=["ergo1"], timeout=5, **kw)


def events_of(collector, commit=True):
    result = run_collector(collector)
    assert result.ok, result.error
    assert {s.name for s in result.samples} <= {"poolwarden_pool_pending_blocks", "poolwarden_pool_events_read_total"}
    if commit:
        collector.commit()
    return result.events


def find_block(sim) -> dict:
    before = len(api(sim, "/api/pools/ergo1/blocks"))
    sim.find_block()
    for _ in range(40):
        sim.step(60)
        blocks = api(sim, "/api/pools/ergo1/blocks")
        if len(blocks) > before:
            return blocks[0]
    raise AssertionError("poolsim found no block")


def test_events_are_read_once_and_survive_restarts(sim, tmp_path):
    state = tmp_path / "state"
    first = reader(sim, state)
    backfill = events_of(first)
    blocks, payments = api(sim, "/api/pools/ergo1/blocks"), api(sim, "/api/pools/ergo1/payments")
    kinds = [e.kind for e in backfill]
    assert set(kinds) <= set(EVENT_KINDS)
    assert kinds.count("block_found") == len(blocks)
    assert kinds.count("block_confirmed") == sum(b["status"] == "confirmed" for b in blocks)
    assert kinds.count("block_orphaned") == sum(b["status"] == "orphaned" for b in blocks)
    assert kinds.count("payment_sent") == len(payments) > 0
    b = blocks[0]
    assert f"block:ergo1:{b['blockHeight']}:{b['transactionConfirmationData']}:found" in {e.id for e in backfill}
    assert len({e.id for e in backfill}) == len(backfill)
    pending = run_collector(first).samples
    assert {s.name: s.value for s in pending}["poolwarden_pool_pending_blocks"] == sum(
        b["status"] == "pending" for b in blocks)
    assert events_of(first) == []  # nothing new

    new_block = find_block(sim)
    uncommitted = events_of(first, commit=False)
    assert [e.kind for e in uncommitted] == ["block_found"]
    assert uncommitted[0].data["height"] == new_block["blockHeight"]
    again = events_of(first)  # the batch was lost (no commit): read again, same id
    assert [e.id for e in again] == [e.id for e in uncommitted]

    requests.post(sim.urls["control"] + "/faults/orphan_block", timeout=5).raise_for_status()
    orphaned = events_of(first)
    assert [(e.kind, e.data["height"]) for e in orphaned] == [("block_orphaned", new_block["blockHeight"])]
    assert orphaned[0].id.endswith(":orphaned")

    cursor = json.loads((state / "pool-events.cursor").read_text())
    assert set(cursor["pools"]) == {"ergo1"}

    # the agent restarts: a new reader on the same state directory reports nothing old
    second = reader(sim, state)
    assert events_of(second) == []
    sim.step(2400)  # payouts run every 600 s of sim time; blocks may settle too
    later = events_of(second)
    third = reader(sim, state)
    assert events_of(third) == []
    every_id = [e.id for e in [*backfill, *again, *orphaned, *later]]
    assert len(every_id) == len(set(every_id))  # no duplicate event id across restarts
    total_payments = len(api(sim, "/api/pools/ergo1/payments"))
    assert sum(e.kind == "payment_sent" for e in [*backfill, *later]) == total_payments


def test_first_run_backfill_is_bounded_and_api_down_is_reported(sim, tmp_path, refused_url):
    events = events_of(reader(sim, tmp_path, backfill=2))
    assert sum(e.kind == "block_found" for e in events) == 2
    assert sum(e.kind == "payment_sent" for e in events) == 2
    down = PoolEventsCollector(requests.Session(), refused_url, tmp_path / "other", pool_ids=["ergo1"], timeout=2)
    result = run_collector(down)
    assert not result.ok and "connection refused" in result.error and result.events == []
    down.commit()
    assert not (tmp_path / "other" / "pool-events.cursor").exists() or \
        json.loads((tmp_path / "other" / "pool-events.cursor").read_text())["pools"] == {}


def test_a_miningcore_clock_ahead_never_dates_an_event_in_the_future(sim, tmp_path):
    """Blocks and payments are dated when Miningcore says they happened, but not after the agent's own
    clock: the panel's rules look at events up to now, and a future one would stay hidden."""
    collector = reader(sim, tmp_path / "state", clock=lambda: sim.state()["simTime"] - 3600)
    events = events_of(collector)
    newest = max(e.data["created"] for e in events if e.kind in ("block_found", "payment_sent"))
    assert newest > sim.state()["simTime"] - 3600    # Miningcore has events in the agent's "future"
    agent_now = sim.state()["simTime"] - 3600
    assert all(e.ts <= agent_now + 1 for e in events)
    dated_by_miningcore = [e for e in events if e.kind in ("block_found", "payment_sent")
                           and e.data["created"] <= agent_now - 1]
    assert dated_by_miningcore and all(e.ts == e.data["created"] for e in dated_by_miningcore)
