"""Server-rendered pages: numbers from the database, status, empty state, no inline script."""

from __future__ import annotations

import re

import pytest

from tests.panel.helpers import ingest, pool_host_batch, xadd

pytestmark = pytest.mark.usefixtures("viewer")  # every page and API route needs at least a viewer


@pytest.fixture
def reported(runner, rds):
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)


def text_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_empty_state_when_no_host_reported(client):
    page = text_of(client.get("/"))
    assert "No host has reported yet" in page
    assert "poolwarden-agent" in page


def test_hosts_list_shows_each_host_with_its_figures(client, reported):
    page = text_of(client.get("/"))
    assert 'href="/hosts/pool-1"' in page
    assert "online" in page
    assert "80.0 %" in page  # root disk
    assert "1.25 GH/s" in page
    assert "7 blocks behind" in page


def test_overview_renders_numbers_from_the_database(client, reported):
    page = text_of(client.get("/hosts/pool-1"))
    for expected in [
        "pool-1", "online", "agent <b>0.1.0</b>",
        "37.5 %",                       # CPU and memory
        "6.0 GiB</span> / <span",       # memory used / total
        "16.0 GiB",
        "1.50", "1.25", "0.75",         # load
        "200.0 GiB", "250.0 GiB", "80.0 %", "1000.0 GiB", "10.0 %",   # disks
        "3.0 GiB", "40.0 GiB", "150.0 MiB",                           # components
        "ergo-solo", "1.25 GH/s", "42", "87.3 %", "17", "1,234,567", "1.50 P", "21.30 TH/s",  # pool
        "7 blocks behind", "1,234,560", "31",                        # node
    ]:
        assert expected in page, expected
    assert "state-warn" in page  # the root disk at 80 % is coloured


def test_overview_marks_critical_disk(client, runner, rds):
    xadd(rds, "pool-1", pool_host_batch(root_used=240 * 2**30, root_free=10 * 2**30))
    ingest(runner)
    page = text_of(client.get("/hosts/pool-1"))
    assert "96.0 %" in page
    assert "bar state-crit" in page


def test_stale_host_is_shown_stale_with_last_seen(client, reported, sql):
    sql("UPDATE hosts SET last_seen = now() - interval '5 minutes'")
    page = text_of(client.get("/hosts/pool-1"))
    assert "pill state-stale" in page
    assert "5 min ago" in page
    assert "No batch from this host for more than 60 s" in page


def test_unknown_host_page_is_404_html(client):
    response = client.get("/hosts/ghost")
    assert response.status_code == 404
    assert "No host named &#39;ghost&#39;" in response.get_data(as_text=True)


def test_pages_use_only_static_scripts_and_refresh_from_json(client, reported):
    html = client.get("/hosts/pool-1").get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ['<script src="/static/panel.js" defer>',
                       '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer>',
                       '<script src="/static/charts.js" defer>']
    assert "<style" not in html and "style=" not in html
    assert 'data-refresh-url="/api/hosts/pool-1/overview"' in html
    response = client.get("/hosts/pool-1")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for path in ("panel.js", "panel.css", "charts.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css",
                 "vendor/uplot/LICENSE"):
        assert client.get(f"/static/{path}").status_code == 200, path


def test_every_refreshed_path_exists_in_the_json(client, reported):
    """Each data-path of the page resolves in the JSON the script polls."""
    import json

    html = client.get("/hosts/pool-1").get_data(as_text=True)
    data = client.get("/api/hosts/pool-1/overview").get_json()
    paths = [json.loads(p) for p in re.findall(r"data-(?:path|bar|state)='([^']*)'", html)]
    assert len(paths) > 40
    for path in paths:
        node = data
        for key in path:
            assert key in node if isinstance(node, dict) else key < len(node), path
            node = node[key]
    assert data["layout"] == re.search(r'data-layout="([^"]*)"', html)[1]
