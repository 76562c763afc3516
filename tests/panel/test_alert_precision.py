"""The labelled traces of tests/data/alert_traces (poolsim and the agent's collectors, with incidents
and noise): replayed through the built-in rules, every incident is alerted and no alert is false."""

from __future__ import annotations

import pytest

from bench.bench_alert_precision import FALSE_TARGET, TRACES, replay

pytestmark = pytest.mark.slow


def test_every_incident_is_alerted_and_no_alert_is_false(fresh_db):
    result = replay(TRACES, fresh_db)
    assert result["missed"] == []
    assert result["incidents"] == len(result["caught"]) >= 14
    assert result["false"] == [], result["false"]
    assert len(result["false"]) / result["alerts"] < FALSE_TARGET
    latency = {(name, rule): seconds for name, rule, seconds in result["latencies"]}
    # fault to alert: the collection step, the evaluation and the rule's pending duration, nothing more
    assert latency[("Miningcore API down", "pool_down")] <= 60 + 2 * 15 + 15
    assert latency[("Agent silent", "agent_silent")] <= 60 + 15
