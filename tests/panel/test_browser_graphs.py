"""Graphs in a real Chromium: uPlot draws on the host, pool and node pages, the range selector changes
the request (and the resolution), no CSP or script errors. Screenshots go to /tmp/pw-shots4/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
import pytest

from panel.engine.rollups import run_rollups
from tests.panel.browser_helpers import create_admin, serving, sign_in
from tests.panel.helpers import ingest, xadd
from tests.panel.test_dashboards import rich_batch

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = Path(os.environ.get("POOLWARDEN_SCREENSHOT_DIR", "/tmp/pw-shots4"))  # noqa: S108 - for a person to look at
WAVES = {  # metric -> SQL expression of g (the timestamp) for 8 days of history every minute
    "poolwarden_cpu_usage_percent": "35 + 20 * sin(extract(epoch FROM g) / 5400) + random() * 8",
    "poolwarden_cpu_iowait_percent": "2 + random() * 3",
    "poolwarden_memory_used_bytes": "6e9 + 1e9 * sin(extract(epoch FROM g) / 20000)",
    "poolwarden_memory_total_bytes": "16 * 2^30",
    "poolwarden_load1": "1.2 + sin(extract(epoch FROM g) / 3000) + random() * 0.4",
    "poolwarden_load5": "1.2 + sin(extract(epoch FROM g) / 3000) * 0.8",
    "poolwarden_load15": "1.2 + sin(extract(epoch FROM g) / 3000) * 0.5",
    "poolwarden_net_receive_bytes_per_second": "2e5 + random() * 1e5",
    "poolwarden_net_transmit_bytes_per_second": "1e5 + random() * 5e4",
    "poolwarden_diskio_read_bytes_per_second": "random() * 2e6",
    "poolwarden_diskio_write_bytes_per_second": "5e5 + random() * 1e6",
    "poolwarden_disk_used_bytes": "1e11 + (extract(epoch FROM g) - extract(epoch FROM now())) * 30",
    "poolwarden_component_size_bytes": "(CASE WHEN labels->>'component' = 'ergo_node' THEN 4e10 ELSE 2e9 END)"
                                       " + (extract(epoch FROM g) - extract(epoch FROM now())) * 5",
    "poolwarden_postgres_table_size_bytes": "1e9 + (extract(epoch FROM g) - extract(epoch FROM now())) * 2",
    "poolwarden_pool_hashrate_hps": "1.2e9 + 2e8 * sin(extract(epoch FROM g) / 7200) + random() * 1e8",
    "poolwarden_network_hashrate_hps": "2.1e13 + 1e12 * sin(extract(epoch FROM g) / 50000)",
    "poolwarden_pool_miners": "40 + floor(6 * sin(extract(epoch FROM g) / 9000))",
    "poolwarden_pool_effort_ratio": "mod(extract(epoch FROM g)::numeric / 86400, 1.4)",
    "poolwarden_network_difficulty": "1.5e15 + 5e13 * sin(extract(epoch FROM g) / 90000)",
    "poolwarden_node_full_height": "1234560 + (extract(epoch FROM g) - extract(epoch FROM now())) / 120",
    "poolwarden_node_headers_height": "1234567 + (extract(epoch FROM g) - extract(epoch FROM now())) / 120",
    "poolwarden_node_sync_lag_blocks": "CASE WHEN random() < 0.05 THEN 2 ELSE 0 END",
    "poolwarden_node_peers": "28 + floor(random() * 6)",
    "poolwarden_node_tip_age_seconds": "mod(extract(epoch FROM g)::numeric, 120)",
}


@pytest.fixture
def live_panel(app, runner, rds, db_url):
    """The test app on a free port with one host, 8 days of history (rolled up), and an admin with TOTP."""
    xadd(rds, "pool-1", rich_batch())
    ingest(runner)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name, expression in WAVES.items():
            conn.execute(
                f"INSERT INTO samples (series_id, ts, value) SELECT s.id, g, {expression} "  # noqa: S608 - constants
                "FROM series s, generate_series(now() - interval '8 days', now() - interval '1 minute',"
                " interval '1 minute') g WHERE s.name = %s ON CONFLICT DO NOTHING", (name,))
        run_rollups(conn, max_chunks=100_000)
    secret = create_admin(runner)
    with serving(app) as base:
        yield base, secret


PAINTED = """canvas => {
  const ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
  return painted;
}"""


def drawn_graphs(page, minimum: int) -> None:
    # (polled from Python: wait_for_function evaluates strings in the page, which the CSP forbids)
    for _ in range(150):
        if page.locator("figure.graph[data-points] canvas").count() >= minimum:
            break
        page.wait_for_timeout(100)
    canvases = page.query_selector_all("figure.graph[data-points] canvas")
    assert len(canvases) >= minimum
    for canvas in canvases:
        assert canvas.evaluate(PAINTED) > 500, "a graph's canvas is blank"


CPU = "figure.graph[data-names^='poolwarden_cpu_usage_percent']"


def test_graphs_draw_and_the_range_selector_changes_the_request(live_panel, page):
    base, secret = live_panel
    SHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, base, secret)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/series?" in r.url else None)

    page.goto(f"{base}/hosts/pool-1")
    drawn_graphs(page, 8)
    assert all("range=24h" in url for url in requests) and len(requests) >= 8
    cpu = page.locator(CPU)
    assert cpu.get_attribute("data-resolution") == "1m"
    assert 300 < int(cpu.get_attribute("data-points")) <= 1500
    page.screenshot(path=str(SHOTS / "host.png"), full_page=True)

    requests.clear()
    page.click("button[data-range='7d']")
    page.wait_for_url(re.compile(r"range=7d"))
    page.wait_for_selector(f"{CPU}[data-resolution='1m']")
    page.wait_for_timeout(500)
    assert requests and all("range=7d" in url for url in requests)
    page.click("button[data-range='30d']")
    page.wait_for_selector(f"{CPU}[data-resolution='1h']")
    page.click("button[data-range='1h']")
    page.wait_for_selector(f"{CPU}[data-resolution='raw']")
    assert page.locator("button[data-range='1h']").get_attribute("class").endswith("active")

    page.goto(f"{base}/hosts/pool-1/pools/ergo-solo?range=7d")
    drawn_graphs(page, 4)  # shares per second has no history here: that graph says so
    assert "No data in this range" in page.inner_text("main")
    assert "confirmed" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "pool.png"), full_page=True)

    page.goto(f"{base}/hosts/pool-1/node?range=24h")
    drawn_graphs(page, 4)
    page.screenshot(path=str(SHOTS / "node.png"), full_page=True)
    assert page.errors == []
