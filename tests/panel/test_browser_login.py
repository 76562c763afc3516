"""Signing in with a real Chromium: enrolment from the page's own QR/secret, wrong and replayed
codes, a single-use recovery code, and the lockout. Screenshots go to /tmp/pw-shots/."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pyotp
import pytest
from werkzeug.serving import make_server

from devtools.services import free_port
from tests.conftest import open_tab
from tests.panel.helpers import ingest, pool_host_batch, xadd

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("POOLWARDEN_SCREENSHOT_DIR", "/tmp/pw-shots"))  # noqa: S108 - for a person to look at
PASSWORD = "a long admin pass phrase"


@pytest.fixture
def live_panel(app, runner, rds):
    """The test app served by a werkzeug thread on a free loopback port, with one reporting host."""
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    result = runner.invoke(args=["create-admin", "--username", "ops", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(chromium):
    tab = open_tab(chromium, 1280, 860)
    yield tab
    tab.context.close()


def sign_in_password(page, base: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")


def enter_code(page, code: str) -> None:
    page.fill("input[name=code]", code)
    page.click("main input[type=submit]")


def sign_out(page) -> None:
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/login$"))


def next_code(secret: str, used_step: int) -> str:
    """A code for a step after ``used_step`` that the panel accepts (the current one, or the next)."""
    step = max(int(time.time() // 30), used_step + 1)
    return pyotp.TOTP(secret).at(step * 30)


def test_sign_in_journey_in_chromium(live_panel, page, sql):
    base = live_panel
    SHOTS.mkdir(parents=True, exist_ok=True)

    # A protected page sends to the login, which comes back after the second factor.
    page.goto(f"{base}/hosts/pool-1")
    assert "/login?next=" in page.url
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")

    # First sign-in: enrolment. The test reads the secret from the page, as a person would type it.
    page.wait_for_url(re.compile(r"/login/enrol$"))
    assert page.locator("svg.qr").is_visible()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.screenshot(path=str(SHOTS / "enrolment.png"), full_page=True)
    enter_code(page, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert "That code is not valid" in page.content()
    secret_again = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert secret_again == secret
    enter_code(page, pyotp.TOTP(secret).now())
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.screenshot(path=str(SHOTS / "recovery-codes.png"), full_page=True)
    page.click("text=I have saved them: continue")
    page.wait_for_url(re.compile(r"/hosts/pool-1$"))
    page.wait_for_selector("text=ergo-solo")
    assert "ops" in page.locator(".whoami").inner_text()
    page.goto(f"{base}/")
    page.wait_for_selector("a.host-link")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    for path, name in (("/admin/users", "users"), ("/admin/allowlist", "allowlist"), ("/account", "account")):
        page.goto(base + path)
        assert page.locator("h1").first.is_visible()
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    used_step = sql("SELECT totp_last_step FROM users WHERE username = 'ops'")[0][0]
    sign_out(page)

    # The code used for the enrolment is refused if replayed; a wrong one too; the next one works.
    sign_in_password(page, base)
    page.wait_for_url(re.compile(r"/login/code$"))
    enter_code(page, pyotp.TOTP(secret).at(used_step * 30))
    assert "That code was already used" in page.content()
    enter_code(page, "123456" if next_code(secret, used_step) != "123456" else "654321")
    assert "That code is not valid" in page.content()
    page.screenshot(path=str(SHOTS / "code-refused.png"), full_page=True)
    enter_code(page, next_code(secret, used_step))
    page.wait_for_url(re.compile(r"/$"))
    sign_out(page)

    # A recovery code works once.
    sign_in_password(page, base)
    page.wait_for_url(re.compile(r"/login/code$"))
    enter_code(page, codes[0])
    page.wait_for_url(re.compile(r"/$"))
    assert "signed in with a recovery code; 9 left" in page.content()
    sign_out(page)
    sign_in_password(page, base)
    page.wait_for_url(re.compile(r"/login/code$"))
    enter_code(page, codes[0])
    assert "That recovery code is not valid or was already used" in page.content()

    # Repeated wrong passwords lock the account, even for the right password afterwards.
    for _ in range(5):
        sign_in_password(page, base, "not the password at all")
    assert "Too many failed attempts: try again in" in page.content()
    sign_in_password(page, base)
    assert "Too many failed attempts: try again in" in page.content()
    assert page.url.endswith("/login")
    page.screenshot(path=str(SHOTS / "locked-out.png"), full_page=True)
    # Refused sign-ins answer 401, which Chromium logs; anything else (a script error) would be a bug.
    assert [e for e in page.errors if "status of 401" not in e] == []
