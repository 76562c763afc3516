"""JSON API: hosts, overview, and the seed-compatible disk endpoint."""

from __future__ import annotations

import re

import pytest

from tests.panel.helpers import ingest, pool_host_batch, xadd

pytestmark = pytest.mark.usefixtures("viewer")  # every page and API route needs at least a viewer

GiB = 2**30
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def one_host(runner, rds):
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    return "pool-1"


def test_disk_has_the_seed_shape_in_bytes(client, one_host):
    body = client.get("/api/admin/system/disk").get_json()
    assert set(body) == {"host", "mount", "total", "used", "free", "usagePercent", "components", "mounts",
                         "timestamp", "stale"}
    assert body["host"] == "pool-1"
    assert body["mount"] == "/"
    assert (body["total"], body["used"], body["free"]) == (250 * GiB, 200 * GiB, 50 * GiB)
    assert body["usagePercent"] == 80.0
    assert body["components"] == {"postgresql": 3 * GiB, "ergoNode": 40 * GiB, "logs": 150 * 2**20, "backups": None}
    assert body["mounts"] == [
        {"mount": "/", "device": "/dev/sda1", "fstype": "ext4", "total": 250 * GiB, "used": 200 * GiB,
         "free": 50 * GiB, "usagePercent": 80.0},
        {"mount": "/data", "device": "/dev/sdb1", "fstype": "xfs", "total": 1000 * GiB, "used": 100 * GiB,
         "free": 900 * GiB, "usagePercent": 10.0},
    ]
    assert ISO_UTC.match(body["timestamp"])
    assert body["stale"] is False
    assert client.get("/api/admin/system/disk?host=pool-1").get_json() == body


@pytest.mark.parametrize("used, total, expected", [
    (0, 100 * GiB, 0.0),
    (1, 3, 33.3),
    (2, 3, 66.7),
    (123_456_789, 987_654_321, 12.5),
    (100 * GiB, 100 * GiB, 100.0),
    (5, 0, 0.0),
])
def test_disk_usage_percent_has_one_decimal(client, runner, rds, used, total, expected):
    xadd(rds, "pool-1", pool_host_batch(root_used=used, root_total=total, root_free=max(total - used, 0)))
    ingest(runner)
    body = client.get("/api/admin/system/disk").get_json()
    assert body["usagePercent"] == expected
    assert body["used"] == used and body["total"] == total


def test_disk_usage_percent_counts_reserved_blocks_as_df_does(client, runner, rds):
    # ext4 reserves 5 % for root: 100 GiB total, 50 GiB used, 45 GiB available -> df says 53 %
    xadd(rds, "pool-1", pool_host_batch(root_used=50 * GiB, root_total=100 * GiB, root_free=45 * GiB))
    ingest(runner)
    body = client.get("/api/admin/system/disk").get_json()
    assert body["usagePercent"] == 52.6
    assert body["mounts"][0]["usagePercent"] == 52.6


def test_disk_main_mount_is_the_largest_when_root_is_not_reported(client, runner, rds):
    batch = pool_host_batch()
    batch.samples = [s for s in batch.samples if s.labels.get("mount") != "/"]
    xadd(rds, "pool-1", batch)
    ingest(runner)
    body = client.get("/api/admin/system/disk").get_json()
    assert body["mount"] == "/data"
    assert body["usagePercent"] == 10.0


def test_disk_is_stale_when_the_host_stopped_reporting(client, one_host, sql):
    sql("UPDATE hosts SET last_seen = now() - interval '5 minutes'")
    assert client.get("/api/admin/system/disk").get_json()["stale"] is True


def test_disk_unknown_host_is_404_json(client, one_host):
    response = client.get("/api/admin/system/disk?host=nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown host 'nope'"}


def test_disk_with_several_hosts_needs_a_choice(client, runner, rds):
    xadd(rds, "pool-1", pool_host_batch())
    xadd(rds, "pool-2", pool_host_batch())
    ingest(runner)
    response = client.get("/api/admin/system/disk")
    assert response.status_code == 400
    body = response.get_json()
    assert "?host=NAME" in body["error"]
    assert body["hosts"] == ["pool-1", "pool-2"]
    assert client.get("/api/admin/system/disk?host=pool-2").get_json()["host"] == "pool-2"


def test_disk_without_any_host_is_404(client):
    response = client.get("/api/admin/system/disk")
    assert response.status_code == 404
    assert response.get_json() == {"error": "no host has reported yet"}


def test_hosts_lists_status(client, one_host, sql):
    sql("INSERT INTO hosts (name, last_seen) VALUES ('pool-0', now() - interval '10 minutes')")
    body = client.get("/api/hosts").get_json()
    by_name = {h["name"]: h for h in body["hosts"]}
    assert list(by_name) == ["pool-0", "pool-1"]
    assert by_name["pool-1"]["status"] == "online"
    assert by_name["pool-1"]["agent_version"] == "0.1.0"
    assert by_name["pool-1"]["disk_percent"] == 80.0
    assert by_name["pool-1"]["pool_hashrate"] == 1.25e9
    assert by_name["pool-0"]["status"] == "stale"
    assert 590 <= by_name["pool-0"]["last_seen_age_seconds"] <= 700


def test_overview_json(client, one_host):
    body = client.get("/api/hosts/pool-1/overview").get_json()
    assert body["host"]["status"] == "online"
    assert body["system"]["cpu_percent"] == 37.5
    assert body["system"]["memory_percent"] == 37.5
    assert body["disks"]["/"]["level"] == "warn"
    assert body["disks"]["/data"]["level"] == "ok"
    pool = body["pools"]["ergo-solo"]
    assert pool["effort_percent"] == 87.3 and pool["miners"] == 42 and pool["state"] == "up"
    assert body["node"]["sync_text"] == "7 blocks behind"
    assert body["node"]["state"] == "syncing"


@pytest.mark.parametrize("lag, text, state", [(0, "synced", "up"), (1, "synced", "up"),
                                              (2, "2 blocks behind", "syncing"),
                                              (12345, "12,345 blocks behind", "syncing")])
def test_node_sync_text(client, runner, rds, lag, text, state):
    xadd(rds, "pool-1", pool_host_batch(sync_lag=lag))
    ingest(runner)
    node = client.get("/api/hosts/pool-1/overview").get_json()["node"]
    assert (node["sync_text"], node["state"]) == (text, state)


def test_overview_unknown_host_is_404_json(client):
    response = client.get("/api/hosts/ghost/overview")
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown host 'ghost'"}


def test_unknown_api_route_is_json(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert "error" in response.get_json()


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "reachable"}


def test_database_down_is_a_503_naming_the_server(redis_url):
    from panel import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://x@127.0.0.1:1/pw", "REDIS_URL": redis_url})
    response = app.test_client().get("/api/hosts")
    assert response.status_code == 503
    assert "PostgreSQL at 127.0.0.1:1/pw cannot be reached" in response.get_json()["error"]
    page = app.test_client().get("/")
    assert page.status_code == 503
    assert "cannot be reached" in page.get_data(as_text=True)
