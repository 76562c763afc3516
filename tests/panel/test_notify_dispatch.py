"""The dispatcher's noise control on the real alerts table, with time driven by ``now``:
grouping (group_wait, group_interval, repeat_interval), acknowledgement, snooze, silences (one-off
and weekly), dependency suppression, flapping and routing by severity and labels."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from panel.notify import acknowledge, create_silence, expire_silence
from panel.notify.dispatcher import dispatch
from tests.panel.notify_helpers import T0, alert_states, at, make_channel, make_route, notifications

pytest_plugins = ["tests.panel.notify_fixtures"]  # fixtures: secrets_key, alert_table


@pytest.fixture
def conn(db_url, secrets_key):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def channel(conn):
    make_channel(conn)
    make_route(conn, ["ops-hook"])  # group_wait 30 s, group_interval 300 s, repeat 3600 s, by alertname+host


def run(conn, seconds: float):
    return dispatch(conn, now=at(seconds))


def test_group_wait_then_interval_then_repeat(conn, channel, alert_table, db_url):
    alert_table.fire("DiskFull", "pool-1", when=at(0))
    run(conn, 0)
    run(conn, 29)
    assert notifications(db_url) == [], "nothing before group_wait"
    run(conn, 30)
    sent = notifications(db_url)
    assert len(sent) == 1 and alert_states(sent[0]) == {"firing": {"DiskFull@pool-1"}, "resolved": set()}
    assert sent[0]["payload"]["status"] == "firing" and sent[0]["payload"]["groupLabels"] == {
        "alertname": "DiskFull", "host": "pool-1"}

    # a second alert of the same group waits for the group interval, then both go out together
    alert_table.fire("DiskFull", "pool-1", mount="/data", when=at(40))
    for second in (40, 100, 329):
        run(conn, second)
    assert len(notifications(db_url)) == 1
    run(conn, 330)
    sent = notifications(db_url)
    assert len(sent) == 2 and sent[1]["firing"] == 2 and sent[1]["payload"]["counts"]["firing"] == 2

    # nothing changes: quiet at every interval until the repeat interval has passed since the last one
    for second in range(630, 330 + 3600, 300):
        run(conn, second)
    assert len(notifications(db_url)) == 2
    run(conn, 330 + 3600 + 30)  # the first flush at or after the repeat interval
    sent = notifications(db_url)
    assert len(sent) == 3 and sent[2]["firing"] == 2


def test_alerts_of_other_groups_are_notified_separately(conn, channel, alert_table, db_url):
    alert_table.fire("DiskFull", "pool-1")
    alert_table.fire("DiskFull", "pool-2")
    alert_table.fire("CpuHigh", "pool-1", rule_type="cpu_high")
    run(conn, 0)
    run(conn, 30)
    groups = sorted(tuple(sorted(n["payload"]["groupLabels"].values())) for n in notifications(db_url))
    assert groups == [("CpuHigh", "pool-1"), ("DiskFull", "pool-1"), ("DiskFull", "pool-2")]


def test_resolution_is_notified_with_the_group_and_the_group_ends(conn, channel, alert_table, db_url):
    first = alert_table.fire("DiskFull", "pool-1")
    alert_table.fire("DiskFull", "pool-1", mount="/data")
    run(conn, 0)
    run(conn, 30)
    alert_table.resolve(first, at(60))
    run(conn, 300)
    assert len(notifications(db_url)) == 1, "a resolution waits for the group interval too"
    run(conn, 330)
    sent = notifications(db_url)[-1]
    assert sent["firing"] == 1 and sent["resolved"] == 1
    resolved = [a for a in sent["payload"]["alerts"] if a["status"] == "resolved"]
    assert resolved[0]["id"] == first and resolved[0]["endsAt"] == at(60).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert sent["payload"]["status"] == "firing"


def test_acknowledged_alert_is_not_repeated_but_its_resolution_is_sent(conn, channel, alert_table, db_url):
    alert_id = alert_table.fire("DiskFull", "pool-1")
    run(conn, 0)
    run(conn, 30)
    acknowledge(conn, alert_id, "user:olga")
    for second in range(330, 3 * 3600, 300):
        run(conn, second)
    assert len(notifications(db_url)) == 1, "no repeats once acknowledged"
    alert_table.resolve(alert_id, at(3 * 3600))
    run(conn, 3 * 3600 + 300)
    sent = notifications(db_url)
    assert len(sent) == 2 and sent[1]["payload"]["status"] == "resolved"
    assert sent[1]["payload"]["alerts"][0]["acknowledged"] is True
    assert sent[1]["payload"]["alerts"][0]["acknowledgedBy"] == "user:olga"


def test_snoozed_alert_is_quiet_until_the_snooze_ends(conn, channel, alert_table, db_url):
    alert_id = alert_table.fire("DiskFull", "pool-1")
    conn.execute("UPDATE alerts SET snoozed_until = %s, snoozed_by = 'user:olga' WHERE id = %s",
                 (at(600), alert_id))
    for second in (0, 30, 330):
        run(conn, second)
    assert notifications(db_url) == []
    run(conn, 600)   # the snooze ended: a new group, which waits group_wait
    run(conn, 630)
    sent = notifications(db_url)
    assert len(sent) == 1 and sent[0]["firing"] == 1


def test_snooze_after_a_notification_notifies_again_when_it_ends(conn, channel, alert_table, db_url):
    alert_id = alert_table.fire("DiskFull", "pool-1")
    run(conn, 0)
    run(conn, 30)
    conn.execute("UPDATE alerts SET snoozed_until = %s WHERE id = %s", (at(1000), alert_id))
    for second in (330, 630, 930):
        run(conn, second)
    assert len(notifications(db_url)) == 1
    run(conn, 1230)
    assert len(notifications(db_url)) == 2, "still firing after the snooze: told again"


def test_silence_holds_back_and_releases_what_still_fires(conn, channel, alert_table, db_url):
    silence_id = create_silence(conn, matchers=[{"name": "host", "op": "=", "value": "pool-1"}],
                                starts_at=at(-60), ends_at=T0 + timedelta(days=30), created_by="user:olga",
                                comment="disk swap")
    still_firing = alert_table.fire("DiskFull", "pool-1")
    brief = alert_table.fire("NodeDown", "pool-1", rule_type="node_down", severity="critical")
    other_host = alert_table.fire("DiskFull", "pool-2")
    for second in (0, 30, 330):
        run(conn, second)
    sent = notifications(db_url)
    assert [alert_states(n)["firing"] for n in sent] == [{"DiskFull@pool-2"}], "only the unsilenced host"
    alert_table.resolve(brief, at(400))
    alert_table.resolve(other_host, at(400))
    run(conn, 630)
    assert alert_states(notifications(db_url)[-1]) == {"firing": set(), "resolved": {"DiskFull@pool-2"}}
    # the silence ends (expired from the UI or by maintenance): what still fires is notified
    conn.execute("UPDATE silences SET starts_at = %s WHERE id = %s", (at(-60), silence_id))
    assert expire_silence(conn, silence_id, "user:olga") is True
    conn.execute("UPDATE silences SET expired_at = %s WHERE id = %s", (at(700), silence_id))
    run(conn, 700)
    run(conn, 730)
    last = notifications(db_url)[-1]
    assert alert_states(last) == {"firing": {"DiskFull@pool-1"}, "resolved": set()}
    assert last["payload"]["alerts"][0]["id"] == still_firing
    assert expire_silence(conn, silence_id, "user:olga") is False, "expiring twice is harmless"


def test_resolution_during_a_silence_is_still_sent(conn, channel, alert_table, db_url):
    alert_id = alert_table.fire("DiskFull", "pool-1")
    run(conn, 0)
    run(conn, 30)
    create_silence(conn, matchers=[{"name": "alertname", "op": "=~", "value": "Disk.*"}], starts_at=at(-1),
                   ends_at=T0 + timedelta(days=30), created_by="user:olga")
    alert_table.resolve(alert_id, at(100))
    run(conn, 330)
    assert alert_states(notifications(db_url)[-1]) == {"firing": set(), "resolved": {"DiskFull@pool-1"}}


def test_weekly_maintenance_window(conn, channel, alert_table, db_url):
    # Mondays 12:00-13:00 UTC (T0 is Monday 12:00), from a week before until further notice
    create_silence(conn, matchers=[{"name": "host", "op": "=", "value": "pool-1"}], starts_at=T0 - timedelta(days=7),
                   ends_at=None, created_by="user:olga", comment="weekly reboot",
                   recurrence={"weekdays": [0], "start": "12:00", "duration_minutes": 60})
    alert_table.fire("DiskFull", "pool-1")
    for second in (0, 30, 330, 3599):
        run(conn, second)
    assert notifications(db_url) == [], "inside the window"
    run(conn, 3600)   # window over at 13:00
    run(conn, 3630)
    assert len(notifications(db_url)) == 1
    # next Monday's window silences a new alert; Tuesday's does not exist
    week = 7 * 86400
    alert_table.fire("CpuHigh", "pool-1", rule_type="cpu_high", when=at(week + 60))
    run(conn, week + 60)
    run(conn, week + 120)
    assert len(notifications(db_url)) == 1
    alert_table.fire("CpuHigh", "pool-1", rule_type="cpu_high", mode="user", when=at(week + 86400))
    run(conn, week + 86400)
    run(conn, week + 86400 + 30)
    assert any("CpuHigh@pool-1" in alert_states(n)["firing"] for n in notifications(db_url))


def test_dependency_suppression(conn, channel, alert_table, db_url):
    # pool-1: the agent is silent -> the rest of pool-1 is quiet
    alert_table.fire("AgentSilent", "pool-1", rule_type="agent_silent", severity="critical")
    alert_table.fire("DiskFull", "pool-1")
    # pool-2: the node is down -> node alerts quiet, the disk alert is not
    alert_table.fire("NodeDown", "pool-2", rule_type="node_down", severity="critical")
    alert_table.fire("NodeSyncLag", "pool-2", rule_type="node_sync_lag")
    alert_table.fire("DiskFull", "pool-2")
    # pool-3: pool ergo-solo is down -> its other pool alerts quiet, pool ergo-pps is not
    alert_table.fire("PoolDown", "pool-3", rule_type="pool_down", severity="critical", pool="ergo-solo")
    alert_table.fire("HashrateDrop", "pool-3", rule_type="pool_hashrate_drop", pool="ergo-solo")
    alert_table.fire("HashrateDrop", "pool-3", rule_type="pool_hashrate_drop", pool="ergo-pps")
    run(conn, 0)
    run(conn, 30)
    firing = set().union(*(alert_states(n)["firing"] for n in notifications(db_url)))
    assert firing == {"AgentSilent@pool-1", "NodeDown@pool-2", "DiskFull@pool-2", "PoolDown@pool-3",
                      "HashrateDrop@pool-3"}
    pps = [a for n in notifications(db_url) for a in n["payload"]["alerts"] if a["labels"].get("pool") == "ergo-pps"]
    assert len(pps) == 1


def test_suppression_never_holds_back_a_resolution(conn, channel, alert_table, db_url):
    lag = alert_table.fire("NodeSyncLag", "pool-2", rule_type="node_sync_lag")
    run(conn, 0)
    run(conn, 30)
    alert_table.fire("NodeDown", "pool-2", rule_type="node_down", severity="critical", when=at(60))
    alert_table.resolve(lag, at(90))
    run(conn, 330)
    states = [alert_states(n) for n in notifications(db_url)]
    assert {"firing": set(), "resolved": {"NodeSyncLag@pool-2"}} in states


def test_flapping_alert_gives_a_bounded_number_of_notifications(conn, db_url, alert_table):
    make_channel(conn)
    make_route(conn, ["ops-hook"], groupWaitSeconds=10, groupIntervalSeconds=60)
    alert_id = None
    minutes = 30
    for second in range(0, minutes * 60, 5):
        if second % 25 == 0:       # fires for 15 s, quiet for 10 s, over and over: 72 episodes
            alert_id = alert_table.fire("PoolDown", "pool-1", rule_type="pool_down", when=at(second),
                                        pool="ergo-solo")
        elif second % 25 == 15:
            alert_table.resolve(alert_id, at(second))
        run(conn, second)
    sent = notifications(db_url)
    assert 1 <= len(sent) <= minutes + 1, f"{len(sent)} notifications for {minutes} minutes of flapping"
    gaps = [(b["created_at"] - a["created_at"]).total_seconds() for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) >= 60, "never more than one notification per group interval"


def test_routes_by_severity_and_labels(conn, db_url, alert_table):
    make_channel(conn, "pager")
    make_channel(conn, "mail-ops")
    make_channel(conn, "db-team")
    make_route(conn, ["db-team"], name="database", matchers=[{"name": "component", "op": "=", "value": "database"}],
               groupWaitSeconds=0, **{"continue": True})
    make_route(conn, ["pager"], name="critical", severities=["critical"], groupWaitSeconds=0)
    make_route(conn, ["mail-ops"], name="warnings", severities=["warning"], groupWaitSeconds=0)
    alert_table.fire("PoolDown", "pool-1", rule_type="pool_down", severity="critical")
    alert_table.fire("DiskFull", "pool-1", severity="warning")
    alert_table.fire("DbDown", "pool-1", rule_type="database_down", severity="critical")
    alert_table.fire("Info", "pool-1", severity="info")
    run(conn, 0)
    by_channel: dict[str, set] = {}
    for n in notifications(db_url):
        by_channel.setdefault(n["integration_name"], set()).update(alert_states(n)["firing"])
    assert by_channel == {"pager": {"PoolDown@pool-1", "DbDown@pool-1"}, "mail-ops": {"DiskFull@pool-1"},
                          "db-team": {"DbDown@pool-1"}}


def test_pending_alerts_are_not_notified_and_disabled_channels_get_nothing(conn, db_url, alert_table):
    make_channel(conn, "on")
    off = make_channel(conn, "off")
    from panel.notify.store import set_integration_enabled

    set_integration_enabled(conn, off.id, False, "test")
    make_route(conn, ["on", "off"], groupWaitSeconds=0)
    alert_table.pending("DiskFull", "pool-1")
    run(conn, 0)
    assert notifications(db_url) == []
    alert_table.fire("DiskFull", "pool-2")
    run(conn, 1)
    assert [n["integration_name"] for n in notifications(db_url)] == ["on"]


def test_one_dispatcher_at_a_time(conn, channel, alert_table, db_url):
    alert_table.fire("DiskFull", "pool-1")
    with psycopg.connect(db_url, autocommit=True) as other, other.transaction():
        from panel.notify.dispatcher import DISPATCH_LOCK_KEY

        other.execute("SELECT pg_advisory_xact_lock(%s)", (DISPATCH_LOCK_KEY,))
        assert run(conn, 0).skipped is True
    assert run(conn, 0).skipped is False
