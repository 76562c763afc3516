"""Every built-in rule type against real PostgreSQL: samples, events and maintenance jobs written as
the engine writes them, one evaluation, the alerts it opens (labels, value, severity, texts) and
those it does not; then the condition goes away and the alert resolves."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
import pytest

from panel.alerts.evaluator import Evaluator
from panel.engine.rollups import run_rollups
from tests.panel.alert_helpers import T0, Feed, add_rule, alerts, open_alerts, run

S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
GiB, MiB = 2**30, 2**20
NOW = {"for": "0s"}
POOL = {"pool": "ergo-solo"}


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def feed(conn):
    return Feed(conn)


@pytest.fixture
def ev():
    return Evaluator(stale_after=60)


def evaluate(ev, conn, at=T0):
    run(ev, conn, at)
    return open_alerts(conn)


def only(found):
    assert len(found) == 1, [(a["rule"], a["labels"]) for a in found]
    return found[0]


def every(step, start, end):
    """Times from start (inclusive) to end (inclusive) every step."""
    out, at = [], start
    while at <= end:
        out.append(at)
        at += step
    return out


# -- pool ------------------------------------------------------------------------------------------


def test_pool_down(conn, feed, ev):
    add_rule(conn, "poolOffline", "pool_down", **NOW)
    feed.sample("pool-1", "poolwarden_pool_up", 0, T0, POOL)
    feed.sample("pool-1", "poolwarden_pool_up", 1, T0, {"pool": "ergo-pplns"})
    alert = only(evaluate(ev, conn))
    assert alert["labels"] == {"alertname": "poolOffline", "rule_type": "pool_down", "severity": "critical",
                               "host": "pool-1", "component": "pool", "service": "miningcore", "pool": "ergo-solo"}
    assert alert["annotations"]["summary"] == "Pool ergo-solo on pool-1 is offline: Miningcore's API does not answer"
    feed.sample("pool-1", "poolwarden_pool_up", 1, T0 + 15 * S, POOL)
    assert evaluate(ev, conn, T0 + 15 * S) == []


def test_pool_hashrate_drop_against_its_own_baseline(conn, feed, ev):
    add_rule(conn, "drop", "pool_hashrate_drop", **NOW)
    start = T0 - D - 20 * M
    feed.history("pool-1", "poolwarden_pool_hashrate_hps",
                 [(t, 1e9 if t <= T0 - 10 * M else 3e8) for t in every(M, start, T0)], POOL)
    # a pool with two hours of history only: not judged yet
    feed.history("pool-1", "poolwarden_pool_hashrate_hps",
                 [(t, 1e9 if t <= T0 - 10 * M else 1e8) for t in every(M, T0 - 2 * H, T0)], {"pool": "new"})
    run_rollups(conn, now=T0, max_chunks=1000)
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["pool"] == "ergo-solo"
    assert 60 <= alert["value"] <= 70          # the 10-minute window is mostly at 30 % of the baseline
    assert "below its baseline" in alert["annotations"]["summary"]
    feed.history("pool-1", "poolwarden_pool_hashrate_hps", [(t, 9e8) for t in every(M, T0 + M, T0 + 11 * M)], POOL)
    assert [a["labels"]["pool"] for a in evaluate(ev, conn, T0 + 11 * M)] == []


def test_pool_no_miners(conn, feed, ev):
    add_rule(conn, "noMiners", "pool_no_miners", **NOW)
    feed.sample("pool-1", "poolwarden_pool_miners", 0, T0, POOL)
    alert = only(evaluate(ev, conn))
    assert alert["annotations"]["summary"] == "Pool ergo-solo on pool-1 has 0 miners"
    feed.sample("pool-1", "poolwarden_pool_miners", 3, T0 + 15 * S, POOL)
    assert evaluate(ev, conn, T0 + 15 * S) == []


def test_pool_invalid_shares_over_a_window_and_not_for_a_trickle(conn, feed, ev):
    add_rule(conn, "invalid", "pool_invalid_shares", **NOW)
    times = every(30 * S, T0 - 9 * M, T0)
    feed.history("pool-1", "poolwarden_pool_valid_shares_per_second", [(t, 10) for t in times], POOL)
    feed.history("pool-1", "poolwarden_pool_invalid_shares_per_second", [(t, 1) for t in times], POOL)
    quiet = {"pool": "tiny"}
    feed.history("pool-1", "poolwarden_pool_valid_shares_per_second", [(t, 0.01) for t in times], quiet)
    feed.history("pool-1", "poolwarden_pool_invalid_shares_per_second", [(t, 0.01) for t in times], quiet)
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["pool"] == "ergo-solo" and round(alert["value"], 2) == 9.09
    later = every(30 * S, T0 + 30 * S, T0 + 10 * M)
    feed.history("pool-1", "poolwarden_pool_valid_shares_per_second", [(t, 10) for t in later], POOL)
    feed.history("pool-1", "poolwarden_pool_invalid_shares_per_second", [(t, 0.2) for t in later], POOL)
    assert evaluate(ev, conn, T0 + 10 * M) == []


def test_no_block_is_judged_against_the_expected_time(conn, feed, ev):
    add_rule(conn, "noBlocks", "no_block", **NOW)
    add_rule(conn, "noBlocks24h", "no_block", effortPercent=100_000, hoursThreshold=5, **NOW)
    for pool, hashrate in (("big", 2.5e11), ("small", 1e9)):
        labels = {"pool": pool}
        feed.sample("pool-1", "poolwarden_pool_last_block_timestamp_seconds", (T0 - 6 * H).timestamp(), T0, labels)
        feed.sample("pool-1", "poolwarden_network_difficulty", 1.5e15, T0, labels)
        feed.history("pool-1", "poolwarden_pool_hashrate_hps", [(t, hashrate) for t in every(M, T0 - 7 * H, T0)],
                     labels)
    run_rollups(conn, now=T0, max_chunks=1000)
    found = {(a["rule"], a["labels"]["pool"]): a for a in evaluate(ev, conn)}
    # big: a block expected every 6000 s, 21600 s without one: 360 % effort
    assert set(found) == {("noBlocks", "big"), ("noBlocks24h", "big"), ("noBlocks24h", "small")}
    assert round(found[("noBlocks", "big")]["value"]) == 360
    assert "expected time" in found[("noBlocks", "big")]["annotations"]["summary"]
    assert round(found[("noBlocks24h", "small")]["value"], 1) == 1.4    # small: 6 h of a 17-day expectation
    # a block: the round starts again
    feed.sample("pool-1", "poolwarden_pool_last_block_timestamp_seconds", T0.timestamp(), T0 + 15 * S, {"pool": "big"})
    assert {(a["rule"], a["labels"]["pool"]) for a in evaluate(ev, conn, T0 + 15 * S)} == {("noBlocks24h", "small")}


def test_block_orphaned_for_the_window(conn, feed, ev):
    add_rule(conn, "orphaned", "block_orphaned")
    feed.host("pool-1", T0 - 3 * D)
    feed.host("pool-1", T0)
    feed.event("pool-1", "block:ergo-solo:100:aa:orphaned", "block_orphaned", T0 - H,
               {"pool": "ergo-solo", "height": 100})
    feed.event("pool-1", "block:ergo-solo:50:bb:orphaned", "block_orphaned", T0 - 2 * D,
               {"pool": "ergo-solo", "height": 50})
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["height"], alert["labels"]["pool"], alert["value"]) == ("100", "ergo-solo", 100)
    assert alert["annotations"]["summary"] == "Block 100 of pool ergo-solo (pool-1) was orphaned"
    feed.host("pool-1", T0 + D)
    assert evaluate(ev, conn, T0 + D) == []


def test_block_pending_too_long(conn, feed, ev):
    add_rule(conn, "pending", "block_pending_too_long")
    feed.host("pool-1", T0)
    for height, age, settled in ((1, 40, None), (2, 40, "confirmed"), (3, 2, None)):
        data = {"pool": "ergo-solo", "height": height, "nonce": f"n{height}", "status": "pending",
                "created": (T0 - age * H).timestamp()}
        feed.event("pool-1", f"block:{height}:found", "block_found", T0 - age * H, data)
        if settled:
            feed.event("pool-1", f"block:{height}:{settled}", f"block_{settled}", T0 - H, {**data, "status": settled})
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["height"], alert["value"]) == ("1", 40)
    feed.event("pool-1", "block:1:confirmed", "block_confirmed", T0 + M,
               {"pool": "ergo-solo", "height": 1, "nonce": "n1", "status": "confirmed"})
    feed.host("pool-1", T0 + 2 * M)
    assert evaluate(ev, conn, T0 + 2 * M) == []


def test_payment_failed_per_pool(conn, feed, ev):
    add_rule(conn, "payments", "payment_failed")
    feed.host("pool-1", T0)
    for i in range(2):
        feed.event("pool-1", f"pf{i}", "payment_failed", T0 - (i + 1) * H, {"pool": "ergo-solo", "error": f"e{i}"})
    alert = only(evaluate(ev, conn))
    assert (alert["value"], alert["severity"]) == (2, "critical")
    assert "e0" in alert["annotations"]["description"]


def test_payouts_stalled_after_a_confirmed_block(conn, feed, ev):
    add_rule(conn, "payouts", "payouts_stalled")
    feed.host("pool-1", T0 - 3 * D)          # reporting for days: its confirmations were seen live
    feed.host("pool-1", T0)
    feed.event("pool-1", "c1", "block_confirmed", T0 - 20 * H, {"pool": "stalled"})
    feed.event("pool-1", "c2", "block_confirmed", T0 - 20 * H, {"pool": "paid"})
    feed.event("pool-1", "p2", "payment_sent", T0 - 19 * H, {"pool": "paid"})
    feed.event("pool-1", "c3", "block_confirmed", T0 - 2 * H, {"pool": "recent"})
    feed.event("pool-1", "c4", "block_confirmed", T0 - 20 * H, {"pool": "quick"})
    feed.event("pool-1", "p4", "payment_sent", T0 - 20 * H - 30 * S, {"pool": "quick"})   # paid in the same run
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["pool"], alert["value"]) == ("stalled", 20)
    feed.event("pool-1", "p1", "payment_sent", T0 + M, {"pool": "stalled"})
    feed.host("pool-1", T0 + 2 * M)
    assert evaluate(ev, conn, T0 + 2 * M) == []


# -- node ------------------------------------------------------------------------------------------


def test_node_down(conn, feed, ev):
    add_rule(conn, "nodeDown", "node_down", **NOW)
    feed.sample("pool-1", "poolwarden_node_up", 0, T0)
    alert = only(evaluate(ev, conn))
    assert (alert["severity"], alert["labels"]["service"], alert["labels"]["component"]) == (
        "critical", "ergo_node", "node")


def test_node_sync_lag_with_hysteresis_and_from_heights(conn, feed, ev):
    add_rule(conn, "sync", "node_sync_lag", **NOW)
    feed.sample("pool-1", "poolwarden_node_sync_lag_blocks", 10, T0)
    feed.sample("pool-2", "poolwarden_node_full_height", 100, T0)       # no lag metric: from the heights
    feed.sample("pool-2", "poolwarden_node_headers_height", 120, T0)
    found = {a["labels"]["host"]: a["value"] for a in evaluate(ev, conn)}
    assert found == {"pool-1": 10, "pool-2": 20}
    feed.sample("pool-1", "poolwarden_node_sync_lag_blocks", 4, T0 + 15 * S)   # under 5, above the clear 2
    assert "pool-1" in {a["labels"]["host"] for a in evaluate(ev, conn, T0 + 15 * S)}
    feed.sample("pool-1", "poolwarden_node_sync_lag_blocks", 2, T0 + 30 * S)
    feed.sample("pool-2", "poolwarden_node_full_height", 120, T0 + 30 * S)
    assert evaluate(ev, conn, T0 + 30 * S) == []


def test_node_no_peers(conn, feed, ev):
    add_rule(conn, "nodeDisconnected", "node_no_peers", **NOW)
    feed.sample("pool-1", "poolwarden_node_peers", 0, T0)
    feed.sample("pool-2", "poolwarden_node_peers", 12, T0)
    assert only(evaluate(ev, conn))["labels"]["host"] == "pool-1"


def test_node_height_stalled(conn, feed, ev):
    add_rule(conn, "stalled", "node_height_stalled")
    times = every(15 * S, T0 - 25 * M, T0)
    feed.history("stuck", "poolwarden_node_full_height", [(t, 1000) for t in times])
    feed.history("moving", "poolwarden_node_full_height", [(t, 1000 + i // 8) for i, t in enumerate(times)])
    feed.history("young", "poolwarden_node_full_height", [(t, 5) for t in every(15 * S, T0 - 3 * M, T0)])
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["host"] == "stuck" and alert["value"] >= 900
    assert "stuck at height 1,000" in alert["annotations"]["summary"]
    feed.sample("stuck", "poolwarden_node_full_height", 1001, T0 + 15 * S)
    assert evaluate(ev, conn, T0 + 15 * S) == []


# -- database --------------------------------------------------------------------------------------


def test_database_down_connections_and_long_queries(conn, feed, ev):
    add_rule(conn, "databaseDown", "database_down", **NOW)
    add_rule(conn, "connections", "database_connections", **NOW)
    add_rule(conn, "longQuery", "database_long_query", **NOW)
    add_rule(conn, "longTx", "database_long_query", measure="transaction", maxDuration="1h", **NOW)
    feed.sample("pool-1", "poolwarden_postgres_up", 0, T0)
    feed.sample("pool-2", "poolwarden_postgres_up", 1, T0)
    feed.sample("pool-2", "poolwarden_postgres_connections", 90, T0)
    feed.sample("pool-2", "poolwarden_postgres_max_connections", 100, T0)
    feed.sample("pool-2", "poolwarden_postgres_longest_query_seconds", 600, T0)
    feed.sample("pool-2", "poolwarden_postgres_longest_transaction_seconds", 1800, T0)
    found = {(a["rule"], a["labels"]["host"]): a for a in evaluate(ev, conn)}
    assert set(found) == {("databaseDown", "pool-1"), ("connections", "pool-2"), ("longQuery", "pool-2")}
    assert found[("connections", "pool-2")]["value"] == 90
    assert found[("longQuery", "pool-2")]["annotations"]["summary"] == "A query on pool-2's PostgreSQL runs for 10 min"
    assert found[("databaseDown", "pool-1")]["labels"]["service"] == "postgresql"
    feed.sample("pool-2", "poolwarden_postgres_longest_transaction_seconds", 4000, T0 + 15 * S)
    assert ("longTx", "pool-2") in {(a["rule"], a["labels"]["host"]) for a in evaluate(ev, conn, T0 + 15 * S)}


# -- disk ------------------------------------------------------------------------------------------


def test_disk_usage_from_bytes_and_matchers(conn, feed, ev):
    add_rule(conn, "disk", "disk_usage", matchers=['mount!~"/boot.*"'], **NOW)
    for mount, used, free in (("/", 90 * GiB, 10 * GiB), ("/boot", 95 * MiB, 5 * MiB), ("/data", 50, 50)):
        labels = {"mount": mount, "device": "sda", "fstype": "ext4"}
        feed.sample("pool-1", "poolwarden_disk_used_bytes", used, T0, labels)
        feed.sample("pool-1", "poolwarden_disk_free_bytes", free, T0, labels)
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["mount"], alert["value"], alert["severity"]) == ("/", 90, "critical")
    assert alert["annotations"]["summary"] == "Disk / on pool-1 is 90 % full (10.0 GiB free)"


def test_disk_full_forecast_names_the_fastest_growing_component(conn, feed, ev):
    add_rule(conn, "forecast", "disk_full_forecast", **NOW)
    times = every(5 * M, T0 - 6 * H, T0)
    hours = [(t - T0) / H for t in times]            # -6 .. 0
    data = {"mount": "/data", "device": "sdb", "fstype": "xfs"}
    root = {"mount": "/", "device": "sda", "fstype": "ext4"}
    steps = list(zip(times, hours, strict=True))
    feed.history("pool-1", "poolwarden_disk_used_bytes", [(t, 200 * GiB + h * GiB) for t, h in steps], data)
    feed.history("pool-1", "poolwarden_disk_free_bytes", [(t, 50 * GiB - h * GiB) for t, h in steps], data)
    feed.history("pool-1", "poolwarden_disk_used_bytes", [(t, 20 * GiB) for t in times], root)
    feed.history("pool-1", "poolwarden_disk_free_bytes", [(t, 5 * GiB) for t in times], root)
    for component, path, per_hour in (("postgresql", "/data/pg", 0.8 * GiB), ("logs", "/data/logs", 0.1 * GiB),
                                      ("backups", "/srv/backups", 5 * GiB)):
        feed.history("pool-1", "poolwarden_component_size_bytes", [(t, 10 * GiB + h * per_hour) for t, h in steps],
                     {"component": component, "path": path})
    feed.sample("pool-1", "poolwarden_component_mount_info", 1, T0,
                {"component": "postgresql", "path": "/data/pg", "mount": "/data"})
    feed.sample("pool-1", "poolwarden_component_mount_info", 1, T0,
                {"component": "backups", "path": "/srv/backups", "mount": "/"})
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["mount"] == "/data" and alert["severity"] == "warning"
    assert round(alert["value"], 2) == round(50 / 24, 2)           # 50 GiB at 1 GiB/h
    assert alert["annotations"]["summary"] == (
        "Disk /data on pool-1 will be full in 2.1 days; fastest growing: postgresql (+19.2 GiB/day)")


def test_disk_full_forecast_starts_again_after_a_clean_up(conn, feed, ev):
    """A mount filling fast fires; space freed resolves it at once (the line starts at the clean-up);
    growing on at the same pace for half an hour after it fires again."""
    add_rule(conn, "forecast", "disk_full_forecast", **NOW, fullWithin="1d", clearAbove="2d", window="1h")
    labels = {"mount": "/srv", "device": "sdb", "fstype": "ext4"}
    total = 100 * GiB

    def feed_used(points):
        feed.history("pool-1", "poolwarden_disk_used_bytes", points, labels)
        feed.history("pool-1", "poolwarden_disk_free_bytes", [(t, total - u) for t, u in points], labels)

    growth = 4 * GiB / 3600                            # 60 GiB free: full in 15 h
    feed_used([(t, 40 * GiB + (t - (T0 - H)).total_seconds() * growth) for t in every(M, T0 - H, T0)])
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["mount"] == "/srv" and alert["value"] < 1

    cleaned = T0 + M                                   # 30 GiB of old backups pruned
    at_clean = 44 * GiB + M.total_seconds() * growth - 30 * GiB
    feed_used([(cleaned, at_clean)])
    assert evaluate(ev, conn, cleaned) == []
    (resolved,) = [a for a in alerts(conn, "forecast") if a["state"] == "resolved"]
    assert resolved["id"] == alert["id"]

    later = every(M, cleaned + M, cleaned + 31 * M)    # the same pace for 31 minutes: 86 GiB free, full in 21 h
    feed_used([(t, at_clean + (t - cleaned).total_seconds() * growth) for t in later])
    again = only(evaluate(ev, conn, later[-1]))
    assert again["id"] != alert["id"] and 0.8 < again["value"] < 1


def test_component_growth_far_above_its_own_rate(conn, feed, ev):
    add_rule(conn, "growth", "component_growth", **NOW)
    times = every(5 * M, T0 - 7 * D - 2 * H, T0)
    base = T0 - H

    def size(t, usual, burst):
        hours = (t - times[0]) / H
        return 5 * GiB + hours * usual + max(0.0, (t - base) / H) * burst

    feed.history("pool-1", "poolwarden_component_size_bytes", [(t, size(t, 10 * MiB, 1 * GiB)) for t in times],
                 {"component": "logs", "path": "/srv/logs"})
    feed.history("pool-1", "poolwarden_component_size_bytes", [(t, size(t, 10 * MiB, 0)) for t in times],
                 {"component": "postgresql", "path": "/var/lib/pg"})
    feed.history("pool-1", "poolwarden_postgres_table_size_bytes", [(t, size(t, 50 * MiB, 600 * MiB)) for t in times],
                 {"table": "shares"})
    run_rollups(conn, now=T0, max_chunks=100_000)
    found = {(a["labels"].get("target") or a["labels"].get("table")): a for a in evaluate(ev, conn)}
    assert set(found) == {"logs", "shares"}
    assert found["logs"]["labels"]["component"] == "disk"
    assert found["shares"]["labels"]["component"] == "database"
    assert abs(found["logs"]["value"] - (GiB + 10 * MiB)) < 50 * MiB
    assert "its usual rate" in found["logs"]["annotations"]["summary"]


def test_component_growth_resolves_once_the_runaway_is_cleaned_up(conn, feed, ev):
    add_rule(conn, "growth", "component_growth", **NOW, window="15m", baseline="6h", minBytesPerHour=MiB)
    times = every(M, T0 - 7 * H, T0)
    burst = T0 - 10 * M
    labels = {"component": "backups", "path": "/srv/backups"}
    sizes = [(t, 10 * GiB + (t - times[0]) / H * MiB + max(0.0, (t - burst).total_seconds()) * 4 * MiB)
             for t in times]                            # 1 MiB/h as usual, then 4 MiB/s for 10 minutes
    feed.history("pool-1", "poolwarden_component_size_bytes", sizes, labels)
    run_rollups(conn, now=T0, max_chunks=100_000)
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["target"] == "backups"
    feed.sample("pool-1", "poolwarden_component_size_bytes", 10 * GiB + 7 * MiB, T0 + 10 * S, labels)
    assert evaluate(ev, conn, T0 + 30 * S) == []
    assert [a["state"] for a in alerts(conn, "growth")] == ["resolved"]


# -- system and containers -------------------------------------------------------------------------


def test_cpu_memory_and_load(conn, feed, ev):
    for name, kind in (("cpu", "cpu_high"), ("mem", "memory_high"), ("load", "load_high")):
        add_rule(conn, name, kind, **NOW)
    feed.sample("a", "poolwarden_cpu_usage_percent", 95, T0)
    feed.sample("b", "poolwarden_memory_used_percent", 93, T0)
    feed.sample("c", "poolwarden_memory_used_bytes", 15 * GiB, T0)       # no percent metric: from the bytes
    feed.sample("c", "poolwarden_memory_total_bytes", 16 * GiB, T0)
    feed.sample("d", "poolwarden_load5", 9, T0)
    feed.sample("d", "poolwarden_cpu_count", 4, T0)
    feed.sample("e", "poolwarden_load5", 9, T0)
    feed.sample("e", "poolwarden_cpu_count", 8, T0)
    found = {(a["rule"], a["labels"]["host"]): a["value"] for a in evaluate(ev, conn)}
    assert found == {("cpu", "a"): 95, ("mem", "b"): 93, ("mem", "c"): 93.8, ("load", "d"): 2.25}


def test_container_restarts_in_a_sliding_window(conn, feed, ev):
    add_rule(conn, "restarts", "container_restarts")
    box = {"container": "miningcore"}
    feed.history("pool-1", "poolwarden_container_restart_count",
                 [(T0 - 14 * M, 5), (T0 - 10 * M, 6), (T0 - 5 * M, 7), (T0, 8)], box)
    # the agent restarted: its own counter went back to 0, which is not a negative restart count
    feed.history("pool-1", "poolwarden_container_restarts_observed_total",
                 [(T0 - 14 * M, 9), (T0 - 10 * M, 0), (T0, 1)], box)
    feed.history("pool-1", "poolwarden_container_restart_count", [(T0 - 14 * M, 1), (T0, 2)],
                 {"container": "ergo-node"})
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["container"], alert["value"]) == ("miningcore", 3)
    assert alert["annotations"]["summary"] == "Container miningcore on pool-1 restarted 3 times in 15 min"
    feed.sample("pool-1", "poolwarden_container_restart_count", 8, T0 + 20 * M, box)
    assert evaluate(ev, conn, T0 + 20 * M) == []


def test_container_unhealthy_or_stopped(conn, feed, ev):
    add_rule(conn, "containers", "container_unhealthy", **NOW)
    add_rule(conn, "unhealthyOnly", "container_unhealthy", includeStopped=False, **NOW)
    feed.sample("pool-1", "poolwarden_container_running", 0, T0, {"container": "postgres"})
    feed.sample("pool-1", "poolwarden_container_running", 1, T0, {"container": "miningcore"})
    feed.sample("pool-1", "poolwarden_container_healthy", 0, T0, {"container": "miningcore"})
    feed.sample("pool-1", "poolwarden_container_running", 1, T0, {"container": "nginx"})
    found = {(a["rule"], a["labels"]["container"]): a["annotations"]["summary"] for a in evaluate(ev, conn)}
    assert found == {("containers", "postgres"): "Container postgres on pool-1 is not running",
                     ("containers", "miningcore"): "Container miningcore on pool-1 is unhealthy",
                     ("unhealthyOnly", "miningcore"): "Container miningcore on pool-1 is unhealthy"}


# -- agent, collectors, maintenance ---------------------------------------------------------------


def test_agent_silent_from_the_hosts_table(conn, feed, ev):
    add_rule(conn, "agentSilent", "agent_silent")
    feed.host("alive", T0 - 10 * S)
    feed.host("gone", T0 - 75 * S)
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["host"], alert["value"], alert["severity"]) == ("gone", 75, "critical")
    assert alert["labels"]["component"] == "agent"


def test_collector_failing(conn, feed, ev):
    add_rule(conn, "collectors", "collector_failing", **NOW)
    feed.sample("pool-1", "poolwarden_collector_up", 0, T0, {"collector": "ergo_node"})
    feed.sample("pool-1", "poolwarden_collector_up", 1, T0, {"collector": "disk"})
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["collector"] == "ergo_node" and alert["labels"]["component"] == "collector"


def add_job(conn, host, action, status, finished, result=None, error=None):
    conn.execute("INSERT INTO maintenance_jobs (id, host, action, status, requested_by, requested_at, finished_at,"
                 " result, error) VALUES (%s, %s, %s, %s, 'user:ada', %s, %s, %s::jsonb, %s)",
                 (uuid.uuid4(), host, action, status, finished - M, finished, json.dumps(result), error))


def test_maintenance_failed_and_a_service_that_did_not_come_back(conn, feed, ev):
    add_rule(conn, "maintenance", "maintenance_failed")
    feed.host("pool-1", T0)
    add_job(conn, "pool-1", "restart", "failed", T0 - H, error="miningcore did not become healthy in 120 s",
            result={"ok": False, "details": {"service_down": True, "service": "miningcore"}})
    add_job(conn, "pool-1", "vacuum", "failed", T0 - 3 * H, error="lock timeout")
    add_job(conn, "pool-1", "vacuum", "succeeded", T0 - 2 * H)           # succeeded since: no alert
    add_job(conn, "pool-2", "backup", "failed", T0 - 3 * D, error="disk full")   # outside the window
    alert = only(evaluate(ev, conn))
    assert (alert["labels"]["action"], alert["labels"]["service"], alert["severity"]) == (
        "restart", "miningcore", "critical")
    assert alert["annotations"]["summary"] == "miningcore on pool-1 did not come back after restart"
    assert "did not become healthy" in alert["annotations"]["description"]
    add_job(conn, "pool-1", "restart", "succeeded", T0 + M)
    assert evaluate(ev, conn, T0 + 2 * M) == []


# -- generic threshold -----------------------------------------------------------------------------


def test_threshold_on_any_metric_with_matchers_clear_and_window(conn, feed, ev):
    add_rule(conn, "iowait", "threshold", metric="poolwarden_diskio_busy_percent", op=">=", threshold=80, clear=50,
             matchers=['device=~"sd.*"'], component="disk", **NOW)
    add_rule(conn, "lowPeers", "threshold", metric="poolwarden_network_peers", op="<", threshold=3, window="5m",
             labels={"team": "pool"}, annotations={"summary": "{pool} has few peers ({value})"}, **NOW)
    feed.sample("pool-1", "poolwarden_diskio_busy_percent", 85, T0, {"device": "sda"})
    feed.sample("pool-1", "poolwarden_diskio_busy_percent", 99, T0, {"device": "nvme0n1"})
    feed.history("pool-1", "poolwarden_network_peers", [(T0 - 4 * M, 1), (T0 - 2 * M, 2), (T0, 5)], POOL)
    found = {a["rule"]: a for a in evaluate(ev, conn)}
    assert set(found) == {"iowait", "lowPeers"}
    assert found["iowait"]["labels"] == {"alertname": "iowait", "rule_type": "threshold", "severity": "warning",
                                         "host": "pool-1", "component": "disk", "device": "sda"}
    assert round(found["lowPeers"]["value"], 2) == 2.67      # the 5-minute mean, though the newest is 5
    assert found["lowPeers"]["labels"]["team"] == "pool"
    assert found["lowPeers"]["annotations"]["summary"] == "ergo-solo has few peers (2.67)"
    feed.sample("pool-1", "poolwarden_diskio_busy_percent", 60, T0 + 15 * S, {"device": "sda"})   # above clear
    assert "iowait" in {a["rule"] for a in evaluate(ev, conn, T0 + 15 * S)}
    feed.sample("pool-1", "poolwarden_diskio_busy_percent", 40, T0 + 30 * S, {"device": "sda"})
    assert "iowait" not in {a["rule"] for a in evaluate(ev, conn, T0 + 30 * S)}


def test_threshold_keeps_series_labels_that_would_shadow_the_alerts_own(conn, feed, ev):
    add_rule(conn, "bigComponent", "threshold", metric="poolwarden_component_size_bytes", op=">", threshold=GiB,
             **NOW)
    feed.sample("pool-1", "poolwarden_component_size_bytes", 2 * GiB, T0, {"component": "logs", "path": "/l"})
    alert = only(evaluate(ev, conn))
    assert alert["labels"]["component"] == "system"
    assert (alert["labels"]["exported_component"], alert["labels"]["path"]) == ("logs", "/l")


def test_blocks_settled_before_the_agent_first_reported_are_history(conn, feed, ev):
    add_rule(conn, "payouts", "payouts_stalled")
    add_rule(conn, "orphaned", "block_orphaned")
    # The agent's first run reports the newest blocks, settled long ago, as confirmed/orphaned now.
    feed.host("pool-1", T0 - 20 * H)
    old = {"pool": "ergo-solo", "created": (T0 - 3 * D).timestamp()}
    feed.event("pool-1", "c1", "block_confirmed", T0 - 20 * H, {**old, "height": 1})
    feed.event("pool-1", "o1", "block_orphaned", T0 - 20 * H, {**old, "height": 2})
    feed.host("pool-1", T0)
    assert evaluate(ev, conn) == []
