"""Miningcore and Ergo node collectors against a real local HTTP server serving the reference
fixtures (and the failures the references describe)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psutil
import requests

from agent.collectors import ErgoNodeCollector, MiningcoreCollector, run_collector
from agent.collectors.host import MemoryCollector
from agent.contract import METRICS
from tests.agent.conftest import fixture_text

POOL_METRICS = {
    "poolwarden_pool_up", "poolwarden_pool_api_response_seconds", "poolwarden_pool_hashrate_hps",
    "poolwarden_pool_miners", "poolwarden_pool_shares_per_second", "poolwarden_pool_effort_ratio",
    "poolwarden_pool_blocks_total", "poolwarden_pool_paid_total", "poolwarden_pool_fee_percent",
    "poolwarden_pool_last_block_timestamp_seconds", "poolwarden_network_hashrate_hps",
    "poolwarden_network_difficulty", "poolwarden_network_height", "poolwarden_network_peers",
    "poolwarden_network_last_block_timestamp_seconds",
}
NODE_METRICS = {
    "poolwarden_node_up", "poolwarden_node_response_seconds", "poolwarden_node_full_height",
    "poolwarden_node_headers_height", "poolwarden_node_max_peer_height", "poolwarden_node_sync_lag_blocks",
    "poolwarden_node_peers", "poolwarden_node_mempool_transactions", "poolwarden_node_difficulty",
    "poolwarden_node_is_mining", "poolwarden_node_last_message_age_seconds", "poolwarden_node_tip_timestamp_seconds",
    "poolwarden_node_tip_age_seconds",
}


def miningcore(url, pool_ids=()):
    return MiningcoreCollector(requests.Session(), url, pool_ids, timeout=3)


def values(samples, pool=None):
    return {s.name: s.value for s in samples if pool is None or s.labels.get("pool") == pool}


def ts(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_declared_metrics():
    assert set(MiningcoreCollector.METRICS) == POOL_METRICS
    assert set(ErgoNodeCollector.METRICS) == NODE_METRICS
    assert POOL_METRICS | NODE_METRICS <= set(METRICS)


def test_miningcore_pools_fixture(miningcore_server):
    result = run_collector(miningcore(miningcore_server.url))
    assert result.ok, result.error
    assert {s.name for s in result.samples} == POOL_METRICS
    v = values(result.samples, "ergo1")
    assert v["poolwarden_pool_up"] == 1
    assert v["poolwarden_pool_hashrate_hps"] == 18734562211
    assert v["poolwarden_pool_miners"] == 6
    assert v["poolwarden_pool_shares_per_second"] == 1
    assert v["poolwarden_pool_effort_ratio"] == 0.6123907461
    assert v["poolwarden_pool_blocks_total"] == 57
    assert v["poolwarden_pool_paid_total"] == 1287.452331908214
    assert v["poolwarden_pool_fee_percent"] == 1
    assert v["poolwarden_pool_last_block_timestamp_seconds"] == ts("2025-06-09T22:47:13.902311")
    assert v["poolwarden_network_hashrate_hps"] == 20036264721749.332
    assert v["poolwarden_network_difficulty"] == 2404351766609920
    assert v["poolwarden_network_height"] == 1612346
    assert v["poolwarden_network_peers"] == 31
    # 7 fractional digits ("...05.4810562Z") are accepted
    assert abs(v["poolwarden_network_last_block_timestamp_seconds"] - ts("2025-06-10T14:31:05.481056")) < 1e-3
    assert values(result.samples)["poolwarden_pool_api_response_seconds"] > 0
    assert all(s.labels == {"pool": "ergo1"} for s in result.samples
               if s.name != "poolwarden_pool_api_response_seconds")


def test_fresh_pool_without_stats_or_blocks_gives_no_null_samples(miningcore_server):
    body = json.loads(fixture_text("miningcore/api_pools.json"))
    pool = body["pools"][0]
    del pool["poolStats"], pool["lastPoolBlockTime"]  # Miningcore omits nulls
    pool["poolEffort"] = 0
    second = dict(pool, id="ergo2")
    del second["networkStats"]
    body["pools"].append(second)
    miningcore_server.serve("/api/pools", body)
    result = run_collector(miningcore(miningcore_server.url))
    assert result.ok
    assert {s.name for s in result.samples if s.labels.get("pool") == "ergo1"} == POOL_METRICS - {
        "poolwarden_pool_api_response_seconds", "poolwarden_pool_hashrate_hps", "poolwarden_pool_miners",
        "poolwarden_pool_shares_per_second", "poolwarden_pool_last_block_timestamp_seconds"}
    assert {s.name for s in result.samples if s.labels.get("pool") == "ergo2"} == {
        "poolwarden_pool_up", "poolwarden_pool_effort_ratio", "poolwarden_pool_blocks_total",
        "poolwarden_pool_paid_total", "poolwarden_pool_fee_percent"}


def test_pool_ids_filter(miningcore_server):
    body = json.loads(fixture_text("miningcore/api_pools.json"))
    body["pools"].append(dict(body["pools"][0], id="other"))
    miningcore_server.serve("/api/pools", body)
    result = run_collector(miningcore(miningcore_server.url, pool_ids=["ergo1"]))
    assert result.ok
    assert {s.labels["pool"] for s in result.samples if "pool" in s.labels} == {"ergo1"}


def test_configured_pool_missing_from_the_api_is_down(miningcore_server):
    result = run_collector(miningcore(miningcore_server.url, pool_ids=["ergo1", "typo"]))
    assert not result.ok and "typo" in result.error
    assert values(result.samples, "typo") == {"poolwarden_pool_up": 0}
    assert values(result.samples, "ergo1")["poolwarden_pool_up"] == 1


def test_http_500_falls_back_to_each_pool(miningcore_server):
    """oliverw/miningcore#1530: /api/pools answers 500 with a plain-text body."""
    collector = miningcore(miningcore_server.url)
    assert run_collector(collector).ok  # learns the pool ids
    miningcore_server.serve("/api/pools", "Nullable object must have a value.", status=500)
    result = run_collector(collector)
    assert result.ok, result.error
    assert {s.name for s in result.samples} == POOL_METRICS
    assert values(result.samples, "ergo1")["poolwarden_pool_hashrate_hps"] == 18734562211
    assert "/api/pools/ergo1" in [path for path, _ in miningcore_server.requests]


def test_http_500_with_fallback_also_failing_marks_pools_down(miningcore_server):
    collector = miningcore(miningcore_server.url, pool_ids=["ergo1"])
    miningcore_server.serve("/api/pools", "Nullable object must have a value.", status=500)
    miningcore_server.serve("/api/pools/ergo1", "Unknown pool ergo1", status=404)
    result = run_collector(collector)
    assert not result.ok and "Unknown pool ergo1" in result.error
    assert values(result.samples, "ergo1") == {"poolwarden_pool_up": 0}
    assert "poolwarden_pool_api_response_seconds" in values(result.samples)


def test_api_refused_marks_known_pools_down(miningcore_server, refused_url):
    collector = miningcore(miningcore_server.url)
    run_collector(collector)
    collector.api_url = refused_url  # Miningcore went away
    result = run_collector(collector)
    assert not result.ok and "connection refused" in result.error
    assert [(s.name, s.labels, s.value) for s in result.samples] == [("poolwarden_pool_up", {"pool": "ergo1"}, 0)]
    assert {s.name: s.value for s in result.status_samples()}["poolwarden_collector_up"] == 0


def test_api_refused_on_first_run_without_pool_ids(refused_url):
    result = run_collector(miningcore(refused_url))
    assert not result.ok and result.samples == []


def test_unexpected_200_body(miningcore_server):
    miningcore_server.serve("/api/pools", "invalid interval")  # plain text with a JSON content type
    result = run_collector(miningcore(miningcore_server.url, pool_ids=["ergo1"]))
    assert not result.ok and "invalid interval" in result.error
    assert values(result.samples, "ergo1") == {"poolwarden_pool_up": 0}


def test_ergo_node_info_fixture(ergo_server):
    collector = ErgoNodeCollector(requests.Session(), ergo_server.url, api_key="hello", timeout=3)
    result = run_collector(collector)
    assert result.ok, result.error
    assert {s.name for s in result.samples} == NODE_METRICS
    v = values(result.samples)
    assert v["poolwarden_node_up"] == 1
    assert v["poolwarden_node_full_height"] == 1612345
    assert v["poolwarden_node_headers_height"] == 1612345
    assert v["poolwarden_node_max_peer_height"] == 1612345
    assert v["poolwarden_node_sync_lag_blocks"] == 0
    assert v["poolwarden_node_peers"] == 31
    assert v["poolwarden_node_mempool_transactions"] == 14
    assert v["poolwarden_node_difficulty"] == 2404351766609920
    assert v["poolwarden_node_is_mining"] == 1
    assert v["poolwarden_node_last_message_age_seconds"] == (1749565865301 - 1749565862114) / 1000
    assert ergo_server.requests[-1][1].get("api_key") == "hello"


def test_ergo_node_without_key_sends_no_header(ergo_server):
    run_collector(ErgoNodeCollector(requests.Session(), ergo_server.url))
    assert "api_key" not in ergo_server.requests[-1][1]


def test_ergo_node_loading_and_lagging(ergo_server):
    info = json.loads(fixture_text("ergo/info.json"))
    info.update(fullHeight=None, headersHeight=None, maxPeerHeight=None, difficulty=None)
    ergo_server.serve("/info", info)
    collector = ErgoNodeCollector(requests.Session(), ergo_server.url)
    result = run_collector(collector)
    assert result.ok
    assert {s.name for s in result.samples} == NODE_METRICS - {
        "poolwarden_node_full_height", "poolwarden_node_headers_height", "poolwarden_node_max_peer_height",
        "poolwarden_node_sync_lag_blocks", "poolwarden_node_difficulty"}

    info.update(fullHeight=1612000, headersHeight=1612300, maxPeerHeight=1612345,
                difficulty=18446744073709551617)  # above 2^64: parsed exactly, sent as a float
    ergo_server.serve("/info", info)
    v = values(run_collector(collector).samples)
    assert v["poolwarden_node_sync_lag_blocks"] == 345
    assert v["poolwarden_node_difficulty"] == float(18446744073709551617)


def test_ergo_node_errors(ergo_server, refused_url):
    ergo_server.serve("/info", fixture_text("ergo/error_403.json"), status=403)
    result = run_collector(ErgoNodeCollector(requests.Session(), ergo_server.url))
    assert not result.ok and "HTTP 403" in result.error
    assert values(result.samples)["poolwarden_node_up"] == 0

    result = run_collector(ErgoNodeCollector(requests.Session(), refused_url, timeout=2))
    assert not result.ok
    assert [(s.name, s.value) for s in result.samples] == [("poolwarden_node_up", 0)]


def test_pool_failures_do_not_affect_other_collectors(refused_url, miningcore_server):
    miningcore_server.serve("/api/pools", "boom", status=500)
    results = [run_collector(c) for c in (
        MiningcoreCollector(requests.Session(), miningcore_server.url, ["ergo1"], timeout=2),
        ErgoNodeCollector(requests.Session(), refused_url, timeout=2),
        MemoryCollector(psutil),
    )]
    assert [r.ok for r in results] == [True, False, True]  # miningcore's fallback worked
    assert len(results[2].samples) == 6
