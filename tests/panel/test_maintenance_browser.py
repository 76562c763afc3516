"""The maintenance page in a real Chromium: pick an action, read its confirmation, run it, watch the
job appear and (with a worker and the engine's task) finish, with no script or CSP error.
Screenshots go to /tmp/pw-shots-maint/ for a person to look at."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import redis

from agent.contract import explain
from panel.engine.tasks import TaskContext
from panel.maintenance import sync
from tests.panel.browser_helpers import create_admin, serving, sign_in
from tests.panel.helpers import ingest, pool_host_batch, xadd
from tests.panel.maint_helpers import HOST, enrol
from tests.panel.maint_worker_mimic import make_worker

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("POOLWARDEN_SCREENSHOT_DIR", "/tmp/pw-shots-maint"))  # noqa: S108 - for a person


@pytest.fixture
def live_panel(app, runner, rds):
    xadd(rds, HOST, pool_host_batch())
    ingest(runner)
    key = enrol(runner)
    secret = create_admin(runner)
    with serving(app) as base:
        yield base, secret, key


def wait_for_text(page, selector: str, text: str, seconds: float = 15) -> None:
    # (polled from Python: wait_for_function evaluates strings in the page, which the CSP forbids)
    for _ in range(int(seconds * 10)):
        if text in page.inner_text(selector):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{text!r} never appeared in {selector}: {page.inner_text(selector)[:500]!r}")


def test_run_an_action_through_its_confirmation_and_watch_it_finish(live_panel, page, app, db_url, redis_url):
    base, secret, key = live_panel
    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, base, secret)
    page.click("nav >> text=Maintenance")
    page.wait_for_url(re.compile(r"/maintenance$"))
    page.screenshot(path=str(SHOTS / "index.png"), full_page=True)
    page.click(f"a.host-link >> text={HOST}")
    page.wait_for_url(re.compile(rf"/hosts/{HOST}/maintenance$"))
    wait_for_text(page, "#current-jobs", "No job is queued or running")
    assert "worker offline" in page.inner_text(".page-head")
    page.screenshot(path=str(SHOTS / "host.png"), full_page=True)

    card = page.locator("#action-backup")
    card.locator("input[name=keep_daily]").fill("5")
    card.locator("button", has_text="Review").click()
    page.wait_for_url(re.compile(r"/backup/confirm\?"))
    params = {"database": "miningcore", "keep_daily": 5, "keep_weekly": 4}
    assert page.inner_text("#explain") == explain("backup", params)
    page.screenshot(path=str(SHOTS / "confirm.png"), full_page=True)
    page.click("#run-now")
    page.wait_for_url(re.compile(rf"/hosts/{HOST}/maintenance#current-jobs$"))
    wait_for_text(page, "#current-list", "Back up a database")
    assert "queued" in page.inner_text("#current-list")
    assert "Back up a database queued on pool-1" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "queued.png"), full_page=True)

    # the host's worker takes the job, the engine's task follows it: the page shows it finish
    make_worker(redis.Redis.from_url(redis_url), HOST, key).work(burst=True)
    context = TaskContext(db_url, redis.Redis.from_url(redis_url), app.config)
    try:
        sync.tick(context)
    finally:
        context.reset()
    wait_for_text(page, "#current-list", "succeeded")
    assert "backup finished" in page.inner_text("#current-list")
    assert "succeeded" in page.inner_text("#history")
    page.screenshot(path=str(SHOTS / "finished.png"), full_page=True)

    page.click("#current-list a")
    page.wait_for_url(re.compile(r"/maintenance/jobs/"))
    assert "backup: done" in page.inner_text("#job-output")
    assert "user:ops" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "job.png"), full_page=True)

    # a destructive action: admin, fresh code (the sign-in counts for five minutes), a red confirmation
    page.goto(f"{base}/hosts/{HOST}/maintenance")
    restart = page.locator("#action-restart")
    restart.locator("select[name=service]").select_option("miningcore")
    restart.locator("button", has_text="Review").click()
    page.wait_for_url(re.compile(r"/restart/confirm\?"))
    assert page.inner_text("#run-now") == "Yes, run it now"
    page.screenshot(path=str(SHOTS / "confirm-destructive.png"), full_page=True)

    # a schedule, made in the editor
    page.goto(f"{base}/maintenance/schedules/new?action=vacuum&host={HOST}")
    page.fill("input[name=name]", "weekly-vacuum")
    page.fill("input[name=cadence]", "weekly on sunday at 04:30")
    page.uncheck("input[name=tables][value=shares]")
    page.screenshot(path=str(SHOTS / "schedule-edit.png"), full_page=True)
    page.click("text=Save schedule")
    page.wait_for_url(re.compile(r"/maintenance/schedules#schedule-"))
    assert "weekly on sunday at 04:30" in page.inner_text(".schedules-table")
    assert "shares" not in page.inner_text(".schedules-table .params-cell")
    page.screenshot(path=str(SHOTS / "schedules.png"), full_page=True)
    assert page.errors == []
