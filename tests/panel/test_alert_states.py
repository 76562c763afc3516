"""The alert state machine against real PostgreSQL: pending, firing, hysteresis, keep-firing,
resolution, one alert per rule and label set, severity changes, silent hosts, every transition stored."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from panel.alerts.evaluator import NOTIFY_CHANNEL, Evaluator
from tests.panel.alert_helpers import T0, Feed, add_rule, alerts, open_alerts, run, transitions

S = timedelta(seconds=1)
CPU = "poolwarden_cpu_usage_percent"
AT_ONCE = {"for": "0s"}


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


def cpu_at(feed, value, at, host="pool-1"):
    feed.sample(host, CPU, value, at)


def test_pending_then_firing_after_the_for_duration(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", maxPercent=90, clearPercent=80, **{"for": "5m"})
    cpu_at(feed, 95, T0)
    run(ev, conn, T0)
    [alert] = alerts(conn)
    assert (alert["state"], alert["value"], alert["fired_at"]) == ("pending", 95, None)
    assert alert["active_since"] == T0
    assert alert["labels"] == {"alertname": "cpu", "rule_type": "cpu_high", "severity": "warning", "host": "pool-1",
                               "component": "system"}
    assert "CPU on pool-1 is 95 % busy" in alert["annotations"]["summary"]
    for minute in range(1, 5):
        cpu_at(feed, 96, T0 + timedelta(minutes=minute))
        run(ev, conn, T0 + timedelta(minutes=minute))
        assert alerts(conn)[0]["state"] == "pending"
    cpu_at(feed, 97, T0 + 300 * S)
    report = run(ev, conn, T0 + 300 * S)
    [alert] = alerts(conn)
    assert (alert["state"], alert["fired_at"], report.fired) == ("firing", T0 + 300 * S, 1)
    assert transitions(conn, alert["id"]) == [(None, "pending"), ("pending", "firing")]


def test_a_condition_that_clears_while_pending_never_fires(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", **{"for": "5m"})
    cpu_at(feed, 95, T0)
    run(ev, conn, T0)
    cpu_at(feed, 50, T0 + 60 * S)
    run(ev, conn, T0 + 60 * S)
    [alert] = alerts(conn)
    assert (alert["state"], alert["fired_at"], alert["resolved_at"]) == ("resolved", None, T0 + 60 * S)
    assert transitions(conn, alert["id"]) == [(None, "pending"), ("pending", "resolved")]
    note = conn.execute("SELECT note FROM alert_transitions WHERE to_state = 'resolved'").fetchone()[0]
    assert "before it fired" in note


def test_hysteresis_keeps_firing_between_the_thresholds_and_starts_nothing_there(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", maxPercent=90, clearPercent=80, **AT_ONCE)
    cpu_at(feed, 85, T0)
    run(ev, conn, T0)
    assert alerts(conn) == []                        # between clear and fire: no new alert
    cpu_at(feed, 91, T0 + 15 * S)
    run(ev, conn, T0 + 15 * S)
    assert [a["state"] for a in alerts(conn)] == ["firing"]
    for i, value in enumerate([89, 85, 80.5]):       # below the firing threshold, above the clear one
        cpu_at(feed, value, T0 + (30 + 15 * i) * S)
        run(ev, conn, T0 + (30 + 15 * i) * S)
        assert [a["state"] for a in alerts(conn)] == ["firing"], value
    cpu_at(feed, 80, T0 + 90 * S)                    # at the clear threshold: cleared
    run(ev, conn, T0 + 90 * S)
    [alert] = alerts(conn)
    assert (alert["state"], alert["resolved_at"], alert["value"]) == ("resolved", T0 + 90 * S, 80)
    assert transitions(conn, alert["id"]) == [(None, "firing"), ("firing", "resolved")]


def test_keep_firing_holds_a_cleared_alert_and_a_return_cancels_the_countdown(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", maxPercent=90, clearPercent=80, keepFiringFor="2m", **AT_ONCE)
    cpu_at(feed, 95, T0)
    run(ev, conn, T0)
    cpu_at(feed, 10, T0 + 60 * S)
    run(ev, conn, T0 + 60 * S)
    [alert] = alerts(conn)
    assert (alert["state"], alert["cleared_since"]) == ("firing", T0 + 60 * S)
    cpu_at(feed, 95, T0 + 120 * S)                   # back: the countdown is cancelled
    run(ev, conn, T0 + 120 * S)
    assert alerts(conn)[0]["cleared_since"] is None
    cpu_at(feed, 10, T0 + 180 * S)
    run(ev, conn, T0 + 180 * S)
    cpu_at(feed, 10, T0 + 290 * S)
    run(ev, conn, T0 + 290 * S)                      # 110 s after clearing: still firing
    assert alerts(conn)[0]["state"] == "firing"
    cpu_at(feed, 10, T0 + 300 * S)
    run(ev, conn, T0 + 300 * S)
    [alert] = alerts(conn)
    assert (alert["state"], alert["resolved_at"]) == ("resolved", T0 + 300 * S)
    assert transitions(conn, alert["id"]) == [(None, "firing"), ("firing", "resolved")]


def test_one_alert_per_rule_and_label_set_and_a_new_row_per_episode(conn, feed, ev):
    add_rule(conn, "disk", "disk_usage", warningPercent=80, criticalPercent=90, clearPercent=75, **AT_ONCE)
    for mount in ("/", "/data"):
        feed.sample("pool-1", "poolwarden_disk_used_percent", 85, T0, {"mount": mount})
    feed.sample("pool-1", "poolwarden_disk_used_percent", 20, T0, {"mount": "/boot"})
    run(ev, conn, T0)
    run(ev, conn, T0 + 15 * S)                       # evaluated again: still one alert per mount
    assert sorted(a["labels"]["mount"] for a in alerts(conn)) == ["/", "/data"]
    feed.sample("pool-1", "poolwarden_disk_used_percent", 50, T0 + 30 * S, {"mount": "/"})
    run(ev, conn, T0 + 30 * S)
    feed.sample("pool-1", "poolwarden_disk_used_percent", 88, T0 + 45 * S, {"mount": "/"})
    run(ev, conn, T0 + 45 * S)
    root = [a for a in alerts(conn) if a["labels"]["mount"] == "/"]
    assert [a["state"] for a in root] == ["resolved", "firing"]     # the first episode is history
    assert root[0]["fingerprint"] == root[1]["fingerprint"]
    assert len(open_alerts(conn)) == 2


def test_severity_rises_to_critical_and_back_within_the_same_alert(conn, feed, ev):
    add_rule(conn, "disk", "disk_usage", warningPercent=80, criticalPercent=90, clearPercent=75, **AT_ONCE)
    steps = [(85, "warning"), (92, "critical"), (87, "critical"),   # 87 > 90 - (80 - 75): stays critical
             (84, "warning")]
    for i, (value, severity) in enumerate(steps):
        feed.sample("pool-1", "poolwarden_disk_used_percent", value, T0 + i * 15 * S, {"mount": "/"})
        run(ev, conn, T0 + i * 15 * S)
        [alert] = alerts(conn)
        assert (alert["severity"], alert["labels"]["severity"]) == (severity, severity), value
    assert transitions(conn, alert["id"]) == [(None, "firing"), ("firing", "firing"), ("firing", "firing")]
    notes = [n for (n,) in conn.execute("SELECT note FROM alert_transitions WHERE from_state = 'firing' ORDER BY id")]
    assert notes == ["severity warning -> critical", "severity critical -> warning"]


def test_a_series_that_goes_away_resolves_its_alert(conn, feed, ev):
    add_rule(conn, "disk", "disk_usage", **AT_ONCE)
    feed.sample("pool-1", "poolwarden_disk_used_percent", 95, T0, {"mount": "/mnt/usb"})
    run(ev, conn, T0)
    assert open_alerts(conn)
    # The host keeps reporting, without that mount: its last value is older than the grace.
    feed.sample("pool-1", CPU, 10, T0 + 400 * S)
    run(ev, conn, T0 + 400 * S)
    [alert] = alerts(conn)
    assert alert["state"] == "resolved"
    assert conn.execute("SELECT note FROM alert_transitions WHERE to_state = 'resolved'").fetchone()[0] \
        == "no longer reported"


def test_a_silent_host_freezes_its_alerts_and_agent_silent_fires(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", **AT_ONCE)
    add_rule(conn, "silent", "agent_silent", missedIntervals=4, intervalSeconds=15)
    cpu_at(feed, 99, T0)
    cpu_at(feed, 10, T0, host="pool-2")
    run(ev, conn, T0)
    assert [a["labels"]["host"] for a in open_alerts(conn)] == ["pool-1"]
    # pool-1 stops reporting; pool-2 carries on (cpu fine)
    for seconds in (30, 61, 120):
        cpu_at(feed, 10, T0 + seconds * S, host="pool-2")
        run(ev, conn, T0 + seconds * S)
    by_rule = {(a["rule"], a["labels"]["host"]): a for a in open_alerts(conn)}
    assert set(by_rule) == {("cpu", "pool-1"), ("silent", "pool-1")}
    assert by_rule[("cpu", "pool-1")]["state"] == "firing"      # frozen, not resolved
    assert by_rule[("silent", "pool-1")]["value"] == 120
    # pool-1 comes back with a normal CPU: agent_silent and the CPU alert both resolve
    cpu_at(feed, 12, T0 + 135 * S)
    run(ev, conn, T0 + 135 * S)
    assert open_alerts(conn) == []


def test_disabling_a_rule_resolves_its_alerts(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high", **AT_ONCE)
    cpu_at(feed, 99, T0)
    run(ev, conn, T0)
    add_rule(conn, "cpu", "cpu_high", enabled=False, **AT_ONCE)
    run(ev, conn, T0 + 15 * S)
    [alert] = alerts(conn)
    assert alert["state"] == "resolved"
    assert conn.execute("SELECT note FROM alert_transitions WHERE to_state = 'resolved'").fetchone()[0] \
        == "the rule was disabled"


def test_a_failing_rule_is_reported_and_the_others_still_run(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high")
    add_rule(conn, "jobs", "maintenance_failed")
    conn.execute("ALTER TABLE maintenance_jobs RENAME COLUMN result TO outcome")   # a table this rule cannot read
    cpu_at(feed, 99, T0)
    report = ev.evaluate(conn, T0, every_rule=True)
    assert list(report.errors) == ["jobs"] and "result" in report.errors["jobs"]
    assert [a["rule"] for a in open_alerts(conn)] == ["cpu"]
    error, at = conn.execute("SELECT last_error, last_error_at FROM alert_rules WHERE name = 'jobs'").fetchone()
    assert "result" in error and at == T0
    conn.execute("ALTER TABLE maintenance_jobs RENAME COLUMN outcome TO result")
    ev.evaluate(conn, T0 + 15 * S, every_rule=True)
    assert conn.execute("SELECT last_error FROM alert_rules WHERE name = 'jobs'").fetchone()[0] is None


def test_transitions_are_announced_with_notify(conn, feed, ev, db_url):
    add_rule(conn, "cpu", "cpu_high")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        cpu_at(feed, 99, T0)
        run(ev, conn, T0)
        note = next(listener.notifies(timeout=5, stop_after=1))
        newest = conn.execute("SELECT max(id) FROM alert_transitions").fetchone()[0]
        assert (note.channel, note.payload) == (NOTIFY_CHANNEL, str(newest))
        run(ev, conn, T0 + 15 * S)   # nothing changed: no notification
        assert list(listener.notifies(timeout=0.5)) == []


def test_the_stored_value_is_refreshed_but_not_rewritten_every_evaluation(conn, feed, ev):
    add_rule(conn, "cpu", "cpu_high")
    cpu_at(feed, 95, T0)
    run(ev, conn, T0)
    cpu_at(feed, 96, T0 + 10 * S)
    assert run(ev, conn, T0 + 10 * S).updated == 0
    cpu_at(feed, 97, T0 + 31 * S)
    assert run(ev, conn, T0 + 31 * S).updated == 1
    assert (alerts(conn)[0]["value"], alerts(conn)[0]["last_eval_at"]) == (97, T0 + 31 * S)
