"""Host, pool and node pages; the series API; /api/admin/system/*; the Prometheus /metrics endpoint."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from agent.contract import METRICS, Event, Sample
from panel.engine.rollups import run_rollups
from tests.panel.helpers import ingest, pool_host_batch, xadd
from tests.panel.security_helpers import bearer, create_user

pytestmark = pytest.mark.usefixtures("viewer")

GiB = 2**30


def rich_batch(ts: float | None = None):
    """A pool host's batch plus containers, network, disk I/O, Ergo parts, logs, tables and block events."""
    ts = time.time() if ts is None else ts
    batch = pool_host_batch(ts)
    mc, pg = {"container": "miningcore"}, {"container": "postgres"}
    batch.samples += [
        Sample("poolwarden_component_size_bytes", 30 * GiB, {"component": "ergoNode.history", "path": "/e/history"}),
        Sample("poolwarden_component_size_bytes", 8 * GiB, {"component": "ergoNode.state", "path": "/e/state"}),
        Sample("poolwarden_component_size_bytes", 2 * GiB, {"component": "ergoNode.other", "path": "/e"}),
        Sample("poolwarden_component_size_bytes", 5 * GiB, {"component": "backups", "path": "/srv/backups"}),
        Sample("poolwarden_postgres_table_size_bytes", 2 * GiB, {"table": "shares"}),
        Sample("poolwarden_postgres_table_size_bytes", 64 * 2**20, {"table": "blocks"}),
        Sample("poolwarden_log_file_size_bytes", 70 * 2**20, {"path": "/srv/logs/a", "file": "miningcore-solo.log"}),
        Sample("poolwarden_log_file_size_bytes", 30 * 2**20, {"path": "/srv/logs/nginx", "file": "access.log"}),
        Sample("poolwarden_log_rotation_configured", 1, {"path": "/srv/logs/a"}),
        Sample("poolwarden_backup_files", 4, {"path": "/srv/backups"}),
        Sample("poolwarden_docker_images_size_bytes", 3 * GiB),
        Sample("poolwarden_docker_volume_size_bytes", 4 * GiB, {"volume": "pgdata"}),
        Sample("poolwarden_container_rw_size_bytes", 10 * 2**20, mc),
        Sample("poolwarden_cpu_core_usage_percent", 40.0, {"core": "0"}),
        Sample("poolwarden_cpu_core_usage_percent", 35.0, {"core": "1"}),
        Sample("poolwarden_cpu_iowait_percent", 2.5),
        Sample("poolwarden_net_receive_bytes_per_second", 1000.0, {"interface": "eth0"}),
        Sample("poolwarden_net_receive_bytes_per_second", 500.0, {"interface": "eth1"}),
        Sample("poolwarden_net_transmit_bytes_per_second", 2000.0, {"interface": "eth0"}),
        Sample("poolwarden_diskio_read_bytes_per_second", 4096.0, {"device": "sda"}),
        Sample("poolwarden_diskio_write_bytes_per_second", 8192.0, {"device": "sda"}),
        Sample("poolwarden_container_running", 1, mc),
        Sample("poolwarden_container_status_info", 1, {**mc, "state": "running", "health": "healthy",
                                                       "image": "miningcore:latest"}),
        Sample("poolwarden_container_cpu_percent", 12.5, mc),
        Sample("poolwarden_container_memory_usage_bytes", 512 * 2**20, mc),
        Sample("poolwarden_container_restart_count", 2, mc),
        Sample("poolwarden_container_uptime_seconds", 3600, mc),
        Sample("poolwarden_container_running", 0, pg),
        Sample("poolwarden_container_status_info", 1, {**pg, "state": "exited", "health": "none", "image": "pg:16"}),
        Sample("poolwarden_node_tip_age_seconds", 42.0),
        Sample("poolwarden_pool_valid_shares_total", 1234, {"pool": "ergo-solo"}),
    ]
    block = {"pool": "ergo-solo", "height": 1_234_500, "nonce": "ab", "miner": "9fminer", "hash": "00ff",
             "reward": 6.0, "effort": 1.37, "created": ts - 600}
    batch.events += [
        Event("block:ergo-solo:1234500:ab:found", "block_found", ts - 600, {**block, "status": "pending"}),
        Event("block:ergo-solo:1234500:ab:confirmed", "block_confirmed", ts - 60, {**block, "status": "confirmed"}),
        Event("block:ergo-solo:1234400:cd:found", "block_found", ts - 9000,
              {**block, "height": 1_234_400, "nonce": "cd", "effort": 0.5, "status": "pending"}),
        Event("payment:ergo-solo:tx1:9faddr", "payment_sent", ts - 300,
              {"pool": "ergo-solo", "address": "9faddr", "amount": 12.5, "tx": "tx1", "created": ts - 300}),
    ]
    return batch


@pytest.fixture
def reported(runner, rds):
    xadd(rds, "pool-1", rich_batch())
    ingest(runner)


def page_text(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:800]
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# -- pages ----------------------------------------------------------------------------------------


def test_host_page_has_graphs_components_and_containers(client, reported):
    page = page_text(client.get("/hosts/pool-1"))
    assert 'data-series-url="/api/hosts/pool-1/series"' in page
    assert page.count('<figure class="graph"') >= 6
    for r in ("1h", "24h", "7d", "30d"):
        assert f'data-range="{r}"' in page
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page and "/static/charts.js" in page
    assert "30.0 GiB" in page  # ergo chain data
    assert "shares" in page and "2.0 GiB" in page
    assert "miningcore" in page and "healthy" in page and "512.0 MiB" in page and "exited" in page
    assert 'href="/hosts/pool-1/pools/ergo-solo"' in page and 'href="/hosts/pool-1/node"' in page
    assert "<script>" not in page and "style=" not in page


def test_pool_page_lists_blocks_with_status_and_effort(client, reported):
    page = page_text(client.get("/hosts/pool-1/pools/ergo-solo"))
    assert "1,234,500" in page and "confirmed" in page and "137.0 %" in page
    assert "1,234,400" in page and "pending" in page and "50.0 %" in page
    assert page.index("1,234,500") < page.index("1,234,400")  # newest first
    assert "9faddr" in page and "12.50" in page
    assert "Pool hashrate" in page and 'data-labels="pool=ergo-solo"' in page


def test_node_page_shows_heights_and_tip_age(client, reported):
    page = page_text(client.get("/hosts/pool-1/node"))
    assert "1,234,560" in page and "42 s" in page and "Sync lag" in page and "Tip age" in page


def test_pool_and_node_pages_empty_states(client, runner, rds):
    batch = pool_host_batch()
    batch.samples = [s for s in batch.samples if not s.name.startswith("poolwarden_node_")]
    batch.events = []
    xadd(rds, "pool-1", batch)
    ingest(runner)
    assert "No block reported" in page_text(client.get("/hosts/pool-1/pools/ergo-solo"))
    assert "No Ergo node reported" in page_text(client.get("/hosts/pool-1/node"))
    assert client.get("/hosts/pool-1/pools/nope").status_code == 404
    assert client.get("/hosts/ghost/node").status_code == 404
    page = page_text(client.get("/hosts/pool-1"))
    assert "reports no Docker containers" in page


# -- series API -----------------------------------------------------------------------------------


@pytest.fixture
def history(db_url, runner, rds):
    """pool-1 with 8 days of one sample a minute for cpu and two mounts, rolled up."""
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO samples (series_id, ts, value) "
            "SELECT s.id, g, extract(epoch FROM g)::bigint % 100 FROM series s, "
            "generate_series(now() - interval '8 days', now() - interval '2 minutes', interval '1 minute') g "
            "WHERE s.name IN ('poolwarden_cpu_usage_percent', 'poolwarden_disk_used_bytes') "
            "ON CONFLICT DO NOTHING")
        run_rollups(conn, max_chunks=10_000)


@pytest.mark.parametrize(("range_name", "resolution", "step"), [
    ("1h", "raw", 5), ("24h", "1m", 120), ("7d", "1m", 900), ("30d", "1h", 3600)])
def test_series_api_picks_the_resolution_and_bounds_the_points(client, history, range_name, resolution, step):
    body = client.get(f"/api/hosts/pool-1/series?name=poolwarden_cpu_usage_percent&range={range_name}").get_json()
    assert (body["resolution"], body["step"]) == (resolution, step)
    assert 0 < len(body["timestamps"]) <= 1500
    assert len(body["series"]) == 1 and len(body["series"][0]["values"]) == len(body["timestamps"])
    assert all(0 <= v < 100 for v in body["series"][0]["values"] if v is not None)
    span = datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"])
    assert span == {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
                    "30d": timedelta(days=30)}[range_name]
    # the newest minutes (not rolled up yet) come from raw samples: the graph reaches the present
    assert body["timestamps"][-1] > time.time() - max(step, 60) * 3


def test_series_api_filters_labels_and_aligns_series(client, history):
    body = client.get("/api/hosts/pool-1/series?name=poolwarden_disk_used_bytes&range=24h").get_json()
    assert sorted(s["labels"]["mount"] for s in body["series"]) == ["/", "/data"]
    body = client.get("/api/hosts/pool-1/series?name=poolwarden_disk_used_bytes&labels=mount=/data"
                      "&range=24h").get_json()
    assert [s["labels"]["mount"] for s in body["series"]] == ["/data"]
    both = client.get("/api/hosts/pool-1/series?name=poolwarden_disk_used_bytes&labels=mount=/|/data").get_json()
    assert len(both["series"]) == 2 and both["range"] == "24h"


@pytest.mark.parametrize(("query", "status"), [
    ("range=24h", 400),
    ("name=poolwarden_load1&range=2y", 400),
    ("name=poolwarden_load1&labels=nonsense", 400),
    ("name=a%00b", 400),
])
def test_series_api_refuses_bad_queries(client, reported, query, status):
    response = client.get(f"/api/hosts/pool-1/series?{query}")
    assert response.status_code == status
    assert response.get_json()["error"]


def test_series_api_keeps_the_busiest_series_when_too_many_match(client, runner, rds):
    # 60 interfaces (a Docker host's bridges): the graph gets the 48 busiest, and says it left some out
    from agent.contract import Batch, Sample
    from tests.panel.helpers import ingest, xadd

    samples = [Sample("poolwarden_net_receive_bytes_per_second", float(i), {"interface": f"br-{i:02d}"})
               for i in range(60)]
    xadd(rds, "pool-9", Batch(ts=time.time(), samples=samples))
    ingest(runner)
    body = client.get("/api/hosts/pool-9/series?name=poolwarden_net_receive_bytes_per_second&range=1h").get_json()
    assert body["truncated"] is True
    shown = sorted(int(s["labels"]["interface"][3:]) for s in body["series"])
    assert shown == list(range(12, 60))
    narrow = client.get("/api/hosts/pool-9/series?name=poolwarden_net_receive_bytes_per_second&range=1h"
                        "&labels=interface=br-01").get_json()
    assert narrow["truncated"] is False and len(narrow["series"]) == 1


def test_series_api_unknown_host_and_no_data(client, reported):
    assert client.get("/api/hosts/ghost/series?name=poolwarden_load1").status_code == 404
    body = client.get("/api/hosts/pool-1/series?name=poolwarden_no_such_metric").get_json()
    assert body["series"] == [] and body["timestamps"] == []


# -- /api/admin/system/* --------------------------------------------------------------------------


def test_components_report_shape_in_bytes(client, reported, sql):
    # a component size from 24 h ago gives the growth
    sql("INSERT INTO samples (series_id, ts, value) SELECT id, now() - interval '24 hours 10 minutes', %s "
        "FROM series WHERE name = 'poolwarden_component_size_bytes' AND labels->>'component' = 'ergo_node'",
        (39 * GiB,))
    body = client.get("/api/admin/system/components?host=pool-1").get_json()
    assert set(body) == {"host", "timestamp", "stale", "components"}
    c = body["components"]
    assert set(c) == {"postgresql", "ergoNode", "logs", "backups", "docker"}
    assert c["postgresql"] == {"total": 3 * GiB, "tables": {"shares": 2 * GiB, "blocks": 64 * 2**20},
                               "growth24h": None}
    assert c["ergoNode"] == {"total": 40 * GiB, "chainData": 30 * GiB, "utxo": 8 * GiB, "other": 2 * GiB,
                             "growth24h": GiB}
    assert c["logs"] == {"total": 150 * 2**20, "miningcore": 70 * 2**20, "nginx": 30 * 2**20,
                         "rotationEnabled": True, "growth24h": None}
    assert c["backups"] == {"total": 5 * GiB, "files": 4, "newestAgeSeconds": None, "growth24h": None}
    assert c["docker"] == {"images": 3 * GiB, "containers": 10 * 2**20, "volumes": 4 * GiB, "buildCache": None}


def test_performance_report_shape(client, reported):
    body = client.get("/api/admin/system/performance").get_json()
    assert set(body) == {"host", "timestamp", "stale", "cpu", "memory", "network", "disk", "load"}
    assert body["cpu"] == {"usage": 37.5, "iowait": 2.5, "count": 8, "cores": [40, 35],
                           "containers": {"miningcore": 12.5}}
    assert body["memory"] == {"total": 16 * GiB, "used": 6 * GiB, "available": None, "usagePercent": 37.5,
                              "swapTotal": None, "swapUsed": None, "containers": {"miningcore": 512 * 2**20}}
    assert body["network"] == {"inbound": 1500, "outbound": 2000, "interfaces": {
        "eth0": {"inbound": 1000, "outbound": 2000}, "eth1": {"inbound": 500, "outbound": None}}}
    assert body["disk"] == {"read": 4096, "write": 8192,
                            "devices": {"sda": {"read": 4096, "write": 8192, "busyPercent": None}}}
    assert body["load"] == {"1min": 1.5, "5min": 1.25, "15min": 0.75}


def test_docker_report_shape(client, reported):
    body = client.get("/api/admin/system/docker?host=pool-1").get_json()
    assert set(body) == {"host", "timestamp", "stale", "containers"}
    mc, pg = body["containers"]
    assert mc == {"name": "miningcore", "status": "running", "health": "healthy", "image": "miningcore:latest",
                  "running": True, "cpu": 12.5, "memory": 512 * 2**20, "memoryLimit": None, "netIn": None,
                  "netOut": None, "restarts": 2, "restartsObserved": None, "oomKilled": None, "uptime": 3600}
    assert (pg["name"], pg["status"], pg["running"], pg["health"]) == ("postgres", "exited", False, "none")


@pytest.mark.parametrize("part", ["components", "performance", "docker"])
def test_system_reports_need_a_host_when_several_report(client, runner, rds, part):
    xadd(rds, "pool-1", pool_host_batch())
    xadd(rds, "pool-2", pool_host_batch())
    ingest(runner)
    response = client.get(f"/api/admin/system/{part}")
    assert response.status_code == 400 and response.get_json()["hosts"] == ["pool-1", "pool-2"]
    assert client.get(f"/api/admin/system/{part}?host=ghost").status_code == 404


# -- /metrics -------------------------------------------------------------------------------------

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse_exposition(text: str) -> dict:
    """A small parser of the Prometheus text format: {name: {"help", "type", "samples": [(labels, value)]}}."""
    families: dict = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, what, name, rest = line.split(" ", 3)
            families.setdefault(name, {"samples": []})[what.lower()] = rest
            continue
        match = _LINE.match(line)
        assert match, f"unparsable line: {line!r}"
        name, raw_labels, value = match.groups()
        labels = dict(_LABEL.findall(raw_labels or ""))
        assert ",".join(f'{k}="{v}"' for k, v in labels.items()) == (raw_labels or ""), line
        assert name in families and "type" in families[name], f"sample before its TYPE: {line}"
        families[name]["samples"].append((labels, float(value)))
    return families


def test_metrics_exposition_parses_with_host_labels(client, reported):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = parse_exposition(response.get_data(as_text=True))
    assert families["poolwarden_panel_host_online"]["samples"] == [({"host": "pool-1"}, 1.0)]
    disk = families["poolwarden_disk_used_bytes"]
    assert disk["type"] == "gauge" and disk["help"].startswith(METRICS["poolwarden_disk_used_bytes"][2])
    assert ({"host": "pool-1", "device": "/dev/sda1", "fstype": "ext4", "mount": "/"}, 200.0 * GiB) in disk["samples"]
    assert families["poolwarden_pool_valid_shares_total"]["type"] == "counter"
    cpu = families["poolwarden_cpu_usage_percent"]["samples"]
    assert cpu == [({"host": "pool-1"}, 37.5)]


def test_metrics_needs_a_session_or_a_token(app, db_url, reported):
    anonymous = app.test_client()
    response = anonymous.get("/metrics")
    assert response.status_code == 401 and response.get_json()["error"]
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer pw_1_nope"}).status_code == 401
    from panel.tokens.store import create_token

    owner = create_user(db_url, "prom-owner", "admin")
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = create_token(conn, name="prometheus", role="viewer", owner=owner, expires_in_days=30).token
    response = anonymous.get("/metrics", headers=bearer(token))
    assert response.status_code == 200 and "poolwarden_disk_used_bytes{" in response.get_data(as_text=True)


def test_metrics_escapes_label_values(client, runner, rds):
    batch = pool_host_batch()
    batch.samples.append(Sample("poolwarden_log_file_size_bytes", 5, {"path": 'C:\\logs "x"\nnew', "file": "a"}))
    xadd(rds, "pool-1", batch)
    ingest(runner)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'path="C:\\\\logs \\"x\\"\\nnew"' in text
    parse_exposition(text)


def test_now_is_utc_aware():
    assert datetime.now(UTC).tzinfo is UTC
