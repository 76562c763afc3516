"""The silences and channels pages in a real Chromium: the silence form (its weekly fields shown by
notify.js, no inline script under the CSP), expiring a silence, "Send test" reaching the webhook
sink. Screenshots go to /tmp/pw-shots/ (POOLWARDEN_SCREENSHOT_DIR) for a person to look at."""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyotp
import pytest
from psycopg.rows import dict_row
from werkzeug.serving import make_server

from devtools.services import free_port
from panel.notify import create_silence, expire_silence
from panel.notify.jobs import send_test
from tests.conftest import open_tab
from tests.panel.notify_helpers import make_channel, make_route

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest_plugins = ["tests.panel.notify_fixtures", "tests.sinks"]

SHOTS = Path(os.environ.get("POOLWARDEN_SCREENSHOT_DIR", "/tmp/pw-shots"))  # noqa: S108 - for a person to look at
PASSWORD = "a long admin pass phrase"


@pytest.fixture
def live_panel(secrets_key, app, runner, db_url, webhook_sink):
    result = runner.invoke(args=["create-admin", "--username", "ops", "--password-stdin", "--totp-secret-out", "-"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    secret = result.output.rsplit("secret: ", 1)[1].strip()
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        hook = make_channel(conn, "ops-hook", url=webhook_sink.url)
        make_channel(conn, "team-hook", url="https://hooks.example.org/services/T000/B000")
        make_route(conn, ["ops-hook"], name="critical", severities=["critical"])
        make_route(conn, ["team-hook"], name="pools", matchers=[{"name": "component", "op": "=", "value": "pool"}])
        send_test(conn, hook.id, by="user:ops")
        now = datetime.now(UTC)
        create_silence(conn, matchers=[{"name": "host", "op": "=", "value": "pool-1"},
                                       {"name": "alertname", "op": "=~", "value": "Disk.*"}],
                       starts_at=None, ends_at=now + timedelta(hours=2), created_by="user:ops",
                       comment="replacing the data disk")
        create_silence(conn, matchers=[{"name": "component", "op": "=", "value": "database"}], starts_at=None,
                       ends_at=None, created_by="user:ops", comment="weekly VACUUM FULL",
                       recurrence={"weekdays": [6], "start": "03:00", "duration_minutes": 45}, source="maintenance")
        old = create_silence(conn, matchers=[{"name": "host", "op": "=", "value": "pool-2"}], starts_at=None,
                             ends_at=now + timedelta(minutes=30), created_by="user:ops", comment="reboot")
        expire_silence(conn, old, "user:ops")
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", secret
    server.shutdown()
    thread.join(timeout=10)


def sign_in(page, base: str, secret: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/login/code"))
    page.fill("input[name=code]", pyotp.TOTP(secret).at(time.time()))
    page.click("main input[type=submit]")
    page.wait_for_url(re.compile(r"/hosts|/$"))


def test_silences_and_channels_pages(live_panel, chromium, webhook_sink, db_url):
    base, secret = live_panel
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = open_tab(chromium, 1400, 900)
    sign_in(page, base, secret)

    page.goto(f"{base}/silences")
    assert page.locator("fieldset.when-weekly").is_hidden(), "notify.js shows only the fields of 'Once'"
    page.select_option("select[name=kind]", "weekly")
    assert page.locator("fieldset.when-once").is_hidden() and page.locator("fieldset.when-weekly").is_visible()
    page.fill("textarea[name=matchers]", 'host=pool-3\nalertname=~"Pool.*"')
    page.check("input[name=weekdays][value='1']")
    page.check("input[name=weekdays][value='3']")
    page.fill("input[name=window_start]", "02:30")
    page.fill("input[name=window_minutes]", "90")
    page.fill("input[name=comment]", "payout maintenance")
    page.screenshot(path=str(SHOTS / "notify-silences-form.png"), full_page=True)
    page.click("#silence-form button[type=submit]")
    page.wait_for_selector("text=created.")
    assert page.locator("text=every Tue, Thu at 02:30 UTC for 1 h 30 min").count() == 1
    page.screenshot(path=str(SHOTS / "notify-silences.png"), full_page=True)
    page.locator("tr:has-text('payout maintenance') button:has-text('Expire')").click()
    page.wait_for_selector("text=expired")

    page.goto(f"{base}/integrations")
    assert page.locator("tr#channel-1 >> text=ops-hook").count() == 1
    page.screenshot(path=str(SHOTS / "notify-integrations.png"), full_page=True)
    page.locator("tr:has-text('ops-hook') button:has-text('Send test')").click()
    page.wait_for_selector("text=Test notification sent to ops-hook")
    assert len(webhook_sink.wait_for(2)) == 2
    page.screenshot(path=str(SHOTS / "notify-integration.png"), full_page=True)
    page.goto(f"{base}/integrations/new?type=email")
    page.screenshot(path=str(SHOTS / "notify-new-email.png"), full_page=True)
    assert page.errors == [], "no script errors, nothing refused by the CSP"
    page.context.close()
