"""Evaluation in the engine: batches published as an agent does, ingested by the engine, judged by
the alert task on the panel's clock; slow rule types are not re-run every few seconds."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
import redis

from agent.contract import Sample
from panel.alerts.evaluator import Evaluator
from panel.engine.tasks import TaskContext
from tests.panel.alert_helpers import T0, Feed, add_rule, open_alerts
from tests.panel.helpers import ingest, pool_host_batch, xadd


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def test_a_pool_that_goes_down_fires_from_what_the_engine_ingested(conn, db_url, redis_url, runner, rds):
    add_rule(conn, "poolOffline", "pool_down", **{"for": "0s"})
    add_rule(conn, "diskSpace", "disk_usage", **{"for": "0s"})
    ctx = TaskContext(db_url, redis.Redis.from_url(redis_url))
    evaluator = Evaluator(rules_path="/nonexistent", provision_rules=False)
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    evaluator.tick(ctx)
    # the fixture's root disk is 200 of 250 GiB used (50 free): 80 %, the warning threshold
    assert [(a["rule"], a["labels"]["mount"]) for a in open_alerts(conn)] == [("diskSpace", "/")]

    batch = pool_host_batch(root_used=100 * 2**30, root_free=150 * 2**30)
    batch.samples = [s if s.name != "poolwarden_pool_up" else Sample(s.name, 0, s.labels) for s in batch.samples]
    xadd(rds, "pool-1", batch)
    ingest(runner)
    evaluator.tick(ctx)
    [alert] = open_alerts(conn)
    assert (alert["rule"], alert["state"], alert["labels"]["pool"]) == ("poolOffline", "firing", "ergo-solo")
    assert conn.execute("SELECT count(*) FROM alerts WHERE state = 'resolved'").fetchone()[0] == 1
    ctx.reset()


def test_slow_rule_types_run_at_their_own_cadence_and_a_changed_rule_at_once(conn):
    feed, evaluator = Feed(conn), Evaluator()
    add_rule(conn, "cpu", "cpu_high")                  # every evaluation
    add_rule(conn, "growth", "component_growth")       # every 5 minutes
    feed.sample("pool-1", "poolwarden_cpu_usage_percent", 10, T0)
    first = evaluator.evaluate(conn, T0)
    assert first.evaluated == 2
    feed.sample("pool-1", "poolwarden_cpu_usage_percent", 10, T0 + timedelta(seconds=5))
    assert evaluator.evaluate(conn, T0 + timedelta(seconds=5)).evaluated == 1
    time.sleep(0.01)
    add_rule(conn, "growth", "component_growth", factor=10)     # changed: judged at the next evaluation
    assert evaluator.evaluate(conn, T0 + timedelta(seconds=10)).evaluated == 2
    assert evaluator.evaluate(conn, T0 + timedelta(seconds=15)).evaluated == 1
    assert evaluator.evaluate(conn, T0 + timedelta(seconds=310)).evaluated == 2


def test_two_engines_never_evaluate_at_once(conn, db_url):
    from panel.alerts.evaluator import EVALUATION_LOCK_KEY

    add_rule(conn, "cpu", "cpu_high")
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (EVALUATION_LOCK_KEY,))
        assert Evaluator().evaluate(conn, T0).skipped
        other.execute("SELECT pg_advisory_unlock(%s)", (EVALUATION_LOCK_KEY,))
    assert not Evaluator().evaluate(conn, T0).skipped


def test_an_evaluation_says_when_a_pending_alert_can_fire_and_wakes_the_notifier(conn):
    from datetime import UTC, datetime

    feed, evaluator = Feed(conn), Evaluator()
    add_rule(conn, "poolOffline", "pool_down", **{"for": "30s"})
    now = datetime.now(UTC)
    feed.sample("pool-1", "poolwarden_pool_up", 0, now, {"pool": "ergo1"})
    report = evaluator.evaluate(conn, now)
    assert report.created == 1 and report.wake == ("notify",)
    assert 29 < report.run_again_in <= 30.1   # the engine evaluates again when `for` ends, not up to a period later
    report = evaluator.evaluate(conn, now + timedelta(seconds=1))
    assert report.wake == ()                  # nothing changed: the notifier keeps its own cadence
    fired = evaluator.evaluate(conn, now + timedelta(seconds=30))
    assert fired.fired == 1 and fired.run_again_in is None
