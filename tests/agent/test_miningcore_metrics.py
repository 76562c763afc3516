"""Miningcore's /metrics: the parser, share rates from counter deltas, counter resets, and the
invalid-share spike poolsim injects."""

from __future__ import annotations

import time

import pytest
import requests

from agent.collectors import MiningcoreMetricsCollector, run_collector
from agent.collectors.miningcore_metrics import parse_prometheus
from tests.agent.conftest import fixture_text

RATES = {"poolwarden_pool_valid_shares_per_second", "poolwarden_pool_invalid_shares_per_second",
         "poolwarden_pool_invalid_share_ratio", "poolwarden_pool_submit_seconds"}
FIRST = {"poolwarden_miningcore_metrics_response_seconds", "poolwarden_miningcore_start_time_seconds",
         "poolwarden_miningcore_resident_memory_bytes", "poolwarden_pool_connections",
         "poolwarden_pool_valid_shares_total", "poolwarden_pool_invalid_shares_total"}


def metrics_text(valid: int, invalid: int, start: float = 1749500000.41, submit_ms: float = 1000.0) -> str:
    return (f'# TYPE miningcore_valid_shares_total counter\nminingcore_valid_shares_total{{pool="ergo1"}} {valid}\n'
            f'miningcore_invalid_shares_total{{pool="ergo1"}} {invalid}\n'
            f'miningcore_pool_connections{{pool="ergo1"}} 7\n'
            f'miningcore_stratum_request_execution_time_sum{{pool="ergo1",method="mining.submit"}} {submit_ms}\n'
            'miningcore_stratum_request_execution_time_count{pool="ergo1",method="mining.submit"} '
            f'{valid + invalid}\n'
            f'process_start_time_seconds {start}\nprocess_working_set_bytes 4.1e+08\n')


def test_parser_reads_the_reference_sample():
    series = parse_prometheus(fixture_text("miningcore/metrics.txt"))
    assert series[("miningcore_valid_shares_total", (("pool", "ergo1"),))] == 183904
    assert series[("miningcore_stratum_request_execution_time_sum",
                   (("method", "mining.submit"), ("pool", "ergo1")))] == 96211.53
    assert ("process_start_time_seconds", ()) in series


def test_parser_handles_escapes_and_special_values_and_refuses_garbage():
    series = parse_prometheus('a{x="q\\"uote",y="back\\\\slash"} NaN\nb +Inf 1700000000000\nc{} -1e3\n')
    assert series[("a", (("x", 'q"uote'), ("y", "back\\slash")))] != series[("a", (("x", 'q"uote'),
                                                                                   ("y", "back\\slash")))]  # NaN
    assert series[("b", ())] == float("inf") and series[("c", ())] == -1000
    with pytest.raises(ValueError, match="line 1"):
        parse_prometheus("this is { not prometheus\n")


def test_first_run_totals_then_rates(miningcore_server):
    t = [1000.0]
    collector = MiningcoreMetricsCollector(requests.Session(), miningcore_server.url + "/metrics", timeout=3,
                                           clock=lambda: t[0])
    result = run_collector(collector)
    assert result.ok, result.error
    assert {s.name for s in result.samples} == FIRST
    miningcore_server.serve("/metrics", metrics_text(1000, 10), content_type="text/plain")
    run_collector(collector)
    t[0] += 10
    miningcore_server.serve("/metrics", metrics_text(1090, 20, submit_ms=1500.0), content_type="text/plain")
    result = run_collector(collector)
    assert {s.name for s in result.samples} == FIRST | RATES
    v = {s.name: s.value for s in result.samples}
    assert v["poolwarden_pool_valid_shares_per_second"] == 9.0
    assert v["poolwarden_pool_invalid_shares_per_second"] == 1.0
    assert v["poolwarden_pool_invalid_share_ratio"] == 0.1
    assert v["poolwarden_pool_submit_seconds"] == 0.005  # 500 ms over 100 submits
    assert v["poolwarden_pool_connections"] == 7


def test_restart_resets_counters_from_process_start(miningcore_server):
    t = [1000.0]
    collector = MiningcoreMetricsCollector(requests.Session(), miningcore_server.url + "/metrics", timeout=3,
                                           clock=lambda: t[0])
    miningcore_server.serve("/metrics", metrics_text(5000, 50, start=100.0), content_type="text/plain")
    run_collector(collector)
    t[0] = 1015.0  # Miningcore restarted at 1010 and has counted 25 valid shares since
    miningcore_server.serve("/metrics", metrics_text(25, 0, start=1010.0), content_type="text/plain")
    v = {s.name: s.value for s in run_collector(collector).samples}
    assert v["poolwarden_pool_valid_shares_per_second"] == 5.0
    assert v["poolwarden_pool_invalid_shares_per_second"] == 0.0
    assert v["poolwarden_miningcore_start_time_seconds"] == 1010.0
    # a counter going down with no start time known gives no rate (never a negative one)
    t[0] = 1030.0
    miningcore_server.serve("/metrics", metrics_text(3, 0, start=1010.0).replace("process_start", "x_start"),
                            content_type="text/plain")
    names = {s.name for s in run_collector(collector).samples}
    assert not names & RATES


def test_forbidden_metrics_names_the_whitelist(miningcore_server):
    miningcore_server.serve("/metrics", "You are not in my access list. Good Bye.", status=403,
                            content_type="application/json")
    result = run_collector(MiningcoreMetricsCollector(requests.Session(), miningcore_server.url + "/metrics"))
    assert not result.ok and "metricsIpWhitelist" in result.error


@pytest.mark.slow
def test_invalid_share_spike_from_poolsim(fresh_db):
    from poolsim.testing import run_poolsim

    with run_poolsim(fresh_db, history_days=0.05, speed=20, stats_interval=60) as sim:
        collector = MiningcoreMetricsCollector(requests.Session(), sim["api"] + "/metrics", timeout=5)
        assert run_collector(collector).ok
        time.sleep(1.5)
        calm = {s.name: s.value for s in run_collector(collector).samples}
        assert calm["poolwarden_pool_valid_shares_per_second"] > 0
        assert calm.get("poolwarden_pool_invalid_share_ratio", 0) < 0.05
        requests.post(sim["control"] + "/faults/invalid_share_spike", json={"ratio": 0.4}, timeout=5)
        run_collector(collector)
        time.sleep(1.5)
        spike = {s.name: s.value for s in run_collector(collector).samples}
        assert 0.25 < spike["poolwarden_pool_invalid_share_ratio"] < 0.55
