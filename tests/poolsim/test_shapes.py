"""Every endpoint answers with the reference fixtures' field names and JSON types."""

from __future__ import annotations

import re

from tests.poolsim.shapes import FIXTURES, assert_shape, load_fixture

# keys Miningcore omits when null (documented in fixtures/README.md and miningcore.md §2.3)
POOL_OPTIONAL = {"poolStats", "lastPoolBlockTime", "addressInfoLink"}


def test_pools_matches_fixture(sim, http):
    r = http.get(sim.urls["api"] + "/api/pools")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert_shape(r.json(), load_fixture("miningcore/api_pools.json"))
    pool = r.json()["pools"][0]
    assert pool["paymentProcessing"]["payoutSchemeConfig"] == [[[]]]
    assert "shareBasedBanning" not in pool
    assert isinstance(pool["poolStats"]["sharesPerSecond"], int)
    assert isinstance(pool["poolStats"]["poolHashrate"], int)
    # decimals keep 12 places, live lastNetworkBlockTime has 7 fractional digits
    assert re.search(r'"totalPaid": \d+\.\d{12}\b', r.text)
    assert re.search(r'"lastNetworkBlockTime": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"', r.text)
    assert re.search(r'"lastPoolBlockTime": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z"', r.text)
    stats = pool["networkStats"]
    assert stats["networkHashrate"] == stats["networkDifficulty"] / 120
    assert stats["networkDifficulty"] > 1e15
    assert 1_600_000 < stats["blockHeight"] < 1_700_000


def test_pool_matches_fixture(sim, http):
    r = http.get(sim.urls["api"] + "/api/pools/ergo1")
    assert_shape(r.json(), load_fixture("miningcore/api_pools_ergo1.json"))


def test_blocks_match_fixture(sim, http):
    r = http.get(sim.urls["api"] + "/api/pools/ergo1/blocks", params={"pageSize": 50})
    blocks = r.json()
    assert blocks, "3 days of history hold blocks"
    assert_shape(blocks, load_fixture("miningcore/api_pools_ergo1_blocks.json"))
    assert {b["status"] for b in blocks} == {"pending", "confirmed", "orphaned"}
    for b in blocks:
        assert re.fullmatch(r"[0-9a-f]{16}", b["transactionConfirmationData"])
        assert ("hash" in b) == ("infoLink" in b)
        if b["status"] == "orphaned":
            assert b["reward"] == 0 and "hash" not in b
        if b["status"] == "confirmed":
            assert b["confirmationProgress"] == 1 and b["reward"] > 5
    assert re.search(r'"reward": \d+\.\d{12}\b', r.text)


def test_v2_blocks_match_fixture(sim, http):
    r = http.get(sim.urls["api"] + "/api/v2/pools/ergo1/blocks")
    assert_shape(r.json(), load_fixture("miningcore/api_v2_pools_ergo1_blocks.json"))
    assert list(r.json()) == ["pageCount", "result", "success"]


def test_payments_match_fixture(sim, http):
    r = http.get(sim.urls["api"] + "/api/pools/ergo1/payments")
    payments = r.json()
    assert payments
    assert_shape(payments, load_fixture("miningcore/api_pools_ergo1_payments.json"))
    assert "poolId" not in payments[0] and "id" not in payments[0]
    txs = [p["transactionConfirmationData"] for p in payments]
    assert len(set(txs)) < len(txs), "one payout transaction pays many addresses"


def test_miners_and_miner_match_fixtures(sim, http):
    api = sim.urls["api"]
    miners = http.get(api + "/api/pools/ergo1/miners").json()
    assert_shape(miners, load_fixture("miningcore/api_pools_ergo1_miners.json"))
    address = miners[0]["miner"]
    for mode in ("Hour", "Day", "Month"):
        r = http.get(f"{api}/api/pools/ergo1/miners/{address}", params={"perfMode": mode})
        assert r.status_code == 200
        body = r.json()
        assert_shape(body, load_fixture("miningcore/api_pools_ergo1_miners_address.json"),
                     optional={"lastPayment", "lastPaymentLink", "performance"})
        assert body["performanceSamples"]
    assert "performance" in http.get(f"{api}/api/pools/ergo1/miners/{address}").json()


def test_unknown_miner_gives_zeros(sim, http):
    body = http.get(sim.urls["api"] + "/api/pools/ergo1/miners/9nobody").json()
    assert body == {"pendingShares": 0, "pendingBalance": 0, "totalPaid": 0, "todayPaid": 0,
                    "performanceSamples": []}


def test_performance_matches_fixture(sim, http):
    api = sim.urls["api"]
    for params in ({}, {"r": "Day", "i": "Hour"}, {"r": "Month", "i": "Day"}, {"r": "month"}):
        r = http.get(api + "/api/pools/ergo1/performance", params=params)
        body = r.json()
        assert body["stats"]
        assert_shape(body, load_fixture("miningcore/api_pools_ergo1_performance.json"))
        assert all(s["validSharesPerSecond"] == 0 for s in body["stats"])
    day = http.get(api + "/api/pools/ergo1/performance", params={"r": "Day"}).json()["stats"]
    assert 24 <= len(day) <= 25
    hour = http.get(api + "/api/pools/ergo1/performance", params={"r": "Hour"})
    assert (hour.status_code, hour.text) == (200, "invalid interval")


def test_admin_gc_and_health(sim, http):
    api = sim.urls["api"]
    gc = http.get(api + "/api/admin/stats/gc").json()
    assert_shape(gc, load_fixture("miningcore/api_admin_stats_gc.json"))
    assert re.fullmatch(r"\d+ MB", gc["memAllocated"])
    health = http.get(api + "/api/health-check")
    assert health.status_code == 200 and health.text == "👍"


def test_metrics_match_fixture(sim, http):
    text = http.get(sim.urls["api"] + "/metrics").text
    reference = (FIXTURES / "miningcore" / "metrics.txt").read_text()
    meta = [line for line in reference.splitlines() if line.startswith(("# HELP", "# TYPE"))]
    ours = [line for line in text.splitlines() if line.startswith(("# HELP", "# TYPE"))]
    assert ours == meta
    series = {line.split(" ")[0] for line in reference.splitlines() if line and not line.startswith("#")}
    got = {line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert series == got


def test_error_bodies(sim, http):
    api = sim.urls["api"]
    r = http.get(api + "/api/pools/xyz")
    assert (r.status_code, r.text) == (404, "Unknown pool xyz")
    assert r.headers["Content-Type"].startswith("application/json")
    r = http.get(api + "/api/pools/xyz/blocks")
    assert (r.status_code, r.text) == (404, "Unknown pool xyz")
    assert http.get(api + "/api/pools/ergo1/blocks", params={"state": "bogus"}).status_code == 400


def test_node_info_matches_fixture(sim, http):
    r = http.get(sim.urls["node"] + "/info")
    info = r.json()
    assert_shape(info, load_fixture("ergo/info.json"))
    assert list(info) == list(load_fixture("ergo/info.json"))
    assert '"subblocksPerBlock":null' in r.text
    assert isinstance(info["difficulty"], int) and info["difficulty"] > 2**50
    assert info["fullHeight"] + 1 == http.get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"][
        "networkStats"]["blockHeight"]


def test_node_endpoints_match_fixtures(sim, http):
    node = sim.urls["node"]
    peers = http.get(node + "/peers/connected").json()
    assert peers
    assert_shape(peers, load_fixture("ergo/peers_connected.json"), optional={"restApiUrl"})
    headers = http.get(node + "/blocks/lastHeaders/2").json()
    assert_shape(headers, load_fixture("ergo/blocks_lastHeaders_2.json"))
    assert headers[0]["height"] + 1 == headers[1]["height"]
    assert headers[1]["parentId"] == headers[0]["id"]
    assert isinstance(headers[0]["difficulty"], str)
    assert_shape(http.get(node + "/mining/candidate").json(), load_fixture("ergo/mining_candidate.json"))
    status = http.get(node + "/wallet/status", headers={"api_key": "hello"})
    assert_shape(status.json(), load_fixture("ergo/wallet_status.json"))
    balances = http.get(node + "/wallet/balances", headers={"api_key": "hello"}).json()
    assert_shape(balances, load_fixture("ergo/wallet_balances.json"))


def test_node_errors(sim, http):
    node = sim.urls["node"]
    for headers in ({}, {"api_key": "wrong"}):
        r = http.get(node + "/wallet/status", headers=headers)
        assert r.status_code == 403
        assert r.json() == load_fixture("ergo/error_403.json")
    r = http.get(node + "/blocks/lastHeaders/16385")
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == 400 and body["reason"] == "bad.request" and isinstance(body["detail"], str)
    assert len(http.get(node + "/blocks/lastHeaders/16384").json()) == 16384
