"""The alert pages in a real Chromium: the active alerts, an alert with its timeline and the graph
around it (drawn by charts.js), the rule editor with its preview; no CSP or script error.
Screenshots go to $POOLWARDEN_SCREENSHOT_DIR (default /tmp/pw-alert-shots) for a person to look at."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from panel.alerts.evaluator import Evaluator
from panel.engine.rollups import run_rollups
from tests.panel.alert_helpers import Feed, add_rule, alerts
from tests.panel.browser_helpers import create_admin, serving, sign_in
from tests.panel.test_browser_graphs import PAINTED

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("POOLWARDEN_SCREENSHOT_DIR", "/tmp/pw-alert-shots"))  # noqa: S108 - for a person to look at
GiB = 2**30


@pytest.fixture
def live(app, runner, db_url):
    """Two hosts with 3 hours of history every minute, alerts in every state, and an admin with TOTP."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(hours=3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        feed, ev = Feed(conn), Evaluator()
        add_rule(conn, "diskSpace", "disk_usage", **{"for": "2m"})
        add_rule(conn, "highCpuUsage", "cpu_high", **{"for": "5m"})
        add_rule(conn, "poolOffline", "pool_down", **{"for": "1m"})
        add_rule(conn, "nodeOutOfSync", "node_sync_lag", **{"for": "30m"})
        at = start
        minute = 0
        while at <= now:
            for host in ("pool-1", "pool-2"):
                feed.sample(host, "poolwarden_disk_used_percent", 70 + minute * 0.12 + (5 if host == "pool-1" else 0),
                            at, {"mount": "/data"})
                feed.sample(host, "poolwarden_disk_used_percent", 41.5, at, {"mount": "/"})
                busy = 97 if host == "pool-2" and 60 <= minute < 100 else 35 + 10 * ((minute * 7) % 5)
                feed.sample(host, "poolwarden_cpu_usage_percent", busy, at)
                feed.sample(host, "poolwarden_pool_up", 0 if host == "pool-1" and minute > 170 else 1, at,
                            {"pool": "ergo-solo"})
                feed.sample(host, "poolwarden_node_sync_lag_blocks", 12 if minute > 165 else 0, at)
            ev.evaluate(conn, at, every_rule=True)
            at += timedelta(minutes=1)
            minute += 1
        run_rollups(conn, now=now + timedelta(minutes=5), max_chunks=1000)
        states = {(a["rule"], a["labels"]["host"], a["labels"].get("mount")): a["state"] for a in alerts(conn)}
        assert states[("poolOffline", "pool-1", None)] == "firing"
        assert states[("highCpuUsage", "pool-2", None)] == "resolved"
        assert states[("diskSpace", "pool-1", "/data")] == "firing"
    secret = create_admin(runner)
    with serving(app) as base:
        yield base, secret, db_url


def test_alert_pages_in_chromium(live, page):
    base, secret, db_url = live
    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, base, secret)

    page.click("nav >> text=Alerts")
    page.wait_for_url(re.compile(r"/alerts$"))
    rows = page.locator("table.alerts-table tbody tr")
    assert rows.count() >= 4
    first = rows.nth(0).inner_text()
    assert "critical" in first and "poolOffline" in first          # firing critical first
    assert page.locator("text=pending").count() >= 1
    assert page.locator("button:has-text('Ack')").count() >= 1       # the notifier's buttons (admin >= operator)
    page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)

    # An alert that fired and resolved: its timeline and the CPU graph around it.
    page.goto(f"{base}/alerts/history?rule=highCpuUsage")
    page.click("table.alerts-table a.alert-name")
    page.wait_for_url(re.compile(r"/alerts/\d+\?range="))
    assert page.locator("ol.timeline li").count() == 3                 # pending, firing, resolved
    for _ in range(150):
        if page.locator("figure.graph[data-points] canvas").count():
            break
        page.wait_for_timeout(100)
    canvas = page.locator("figure.graph[data-points] canvas").first
    assert canvas.evaluate(PAINTED) > 500, "the graph around the alert is blank"
    firing = page.locator("figure.graph .alert-band.firing")
    assert firing.count() == 1 and firing.is_visible()          # the episode is marked on the graph
    assert 0 < firing.bounding_box()["width"] < page.locator("figure.graph .u-over").bounding_box()["width"]
    page.screenshot(path=str(SHOTS / "alert-detail.png"), full_page=True)

    # The rule editor: preview a change without saving it.
    page.goto(f"{base}/alerts/rules")
    page.screenshot(path=str(SHOTS / "rules.png"), full_page=True)
    page.click("a.alert-name:text('diskSpace')")
    page.fill("input[name=p_warningPercent]", "72")
    page.fill("input[name=p_clearPercent]", "70")
    page.click("button[value=preview]")
    page.wait_for_selector("#preview")
    text = page.locator("#preview .preview-text").inner_text()
    assert re.match(r"Would have fired \d+ times? in the last 7 days on \d+ label sets?", text), text
    page.screenshot(path=str(SHOTS / "rule-editor.png"), full_page=True)

    page.goto(f"{base}/alerts/history")
    page.screenshot(path=str(SHOTS / "history.png"), full_page=True)
    page.goto(f"{base}/alerts/rules/new?type=threshold")
    page.screenshot(path=str(SHOTS / "rule-new.png"), full_page=True)
    assert page.errors == [], page.errors
