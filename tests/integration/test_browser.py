"""The panel in a real Chromium: the host overview shows the simulated pool, and its numbers change
by themselves (no reload) when the pool moves."""

from __future__ import annotations

import json
import os
import shutil

import psycopg
import pytest

from devtools.services import free_port, wait_for_port
from tests.conftest import open_tab
from tests.integration.conftest import HOST, control, totp_code, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]



def _text(page, path: list[str]) -> str:
    return page.locator(f"[data-path='{json.dumps(path)}']").first.inner_text().strip()


def test_overview_numbers_change_live_in_chromium(stack, chromium, tmp_path):
    from devtools.processes import ManagedProcess, console_script

    control(stack, "POST", "/clock/pause")
    stack["run_engine"]()
    stack["run_agent"]("--interval", "1")
    port = free_port()
    panel = ManagedProcess("panel", [console_script("poolwarden-panel"), "serve", "--port", str(port),
                                     "--workers", "1"], tmp_path / "panel.log", env=stack["panel_env"]).start()
    try:
        wait_for_port(port, timeout=30)

        def node_height_stored():
            with psycopg.connect(stack["pw_dsn"]) as conn:
                return conn.execute("SELECT 1 FROM latest l JOIN series s ON s.id = l.series_id "
                                    "WHERE s.name = 'poolwarden_node_full_height'").fetchone()
        wait_until(node_height_stored, 60, "the first batch to reach the panel's database")
        page = open_tab(chromium, 1400, 1000)
        errors = page.errors
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/hosts/{HOST}")
        assert "/login" in page.url  # signed out: the overview sends us to the login
        page.fill("input[name=username]", stack["admin"]["username"])
        page.fill("input[name=password]", stack["admin"]["password"])
        page.click("[type=submit]")
        page.wait_for_url("**/login/code*")
        page.fill("input[name=code]", totp_code(stack["admin"]["secret"], stack["pw_dsn"]))
        page.click("[type=submit]")
        page.wait_for_url(f"**/hosts/{HOST}")
        page.wait_for_function(
            "p => { const e = document.querySelector(`[data-path='${p}']`); return e && /\\d/.test(e.textContent); }",
            arg=json.dumps(["node", "full_height"]), timeout=30_000)
        before = _text(page, ["node", "full_height"])
        pool_height_before = page.locator("[data-path*='network_height']").first.inner_text()

        page.evaluate("window.__notReloaded = true")
        # Ten simulated minutes go by: about five network blocks.
        control(stack, "POST", "/clock/step", seconds=600)
        page.wait_for_function(
            "([p, old]) => { const e = document.querySelector(`[data-path='${p}']`); "
            "return e && e.textContent.trim() !== old; }",
            arg=[json.dumps(["node", "full_height"]), before], timeout=30_000)
        after = _text(page, ["node", "full_height"])
        assert int(after.replace(",", "")) > int(before.replace(",", ""))
        page.wait_for_function(
            "old => document.querySelector(\"[data-path*='network_height']\").textContent !== old",
            arg=pool_height_before, timeout=30_000)
        assert page.evaluate("window.__notReloaded === true")  # refreshed in place, not by a reload

        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        shots = os.environ.get("POOLWARDEN_SCREENSHOT_DIR")
        if shots:
            os.makedirs(shots, exist_ok=True)
            shutil.copy(tmp_path / "overview.png", os.path.join(shots, "overview.png"))
        assert errors == []
    finally:
        panel.stop()
        control(stack, "POST", "/clock/resume")
