"""Paging semantics of Miningcore's list endpoints."""

from __future__ import annotations


def _created(items):
    return [i["created"] for i in items]


def test_blocks_paging_and_order(sim, http):
    url = sim.urls["api"] + "/api/pools/ergo1/blocks"
    everything = http.get(url, params={"pageSize": 100}).json()
    assert _created(everything) == sorted(_created(everything), reverse=True)
    assert len(http.get(url).json()) == min(15, len(everything))
    first = http.get(url, params={"page": 0, "pageSize": 2}).json()
    second = http.get(url, params={"page": 1, "pageSize": 2}).json()
    assert first + second == everything[:4]
    beyond = http.get(url, params={"page": 100, "pageSize": 2}).json()
    assert beyond == []


def test_blocks_state_filter(sim, http):
    url = sim.urls["api"] + "/api/pools/ergo1/blocks"
    everything = http.get(url, params={"pageSize": 100}).json()
    confirmed = http.get(url, params={"pageSize": 100, "state": "confirmed"}).json()
    assert confirmed == [b for b in everything if b["status"] == "confirmed"]
    two = http.get(url, params=[("pageSize", 100), ("state", "Pending"), ("state", "2")]).json()
    assert two == [b for b in everything if b["status"] in ("pending", "orphaned")]


def test_v2_page_count_floors_and_ignores_state(sim, http):
    api = sim.urls["api"]
    total = len(http.get(api + "/api/pools/ergo1/blocks", params={"pageSize": 100}).json())
    for size in (1, 2, 3, total + 1):
        body = http.get(api + "/api/v2/pools/ergo1/blocks", params={"pageSize": size, "state": "orphaned"}).json()
        assert body["pageCount"] == total // size
        assert body["success"] is True
        assert all(b["status"] == "orphaned" for b in body["result"])


def test_payments_paging(sim, http):
    api = sim.urls["api"]
    everything = http.get(api + "/api/pools/ergo1/payments", params={"pageSize": 1000}).json()
    assert _created(everything) == sorted(_created(everything), reverse=True)
    page1 = http.get(api + "/api/pools/ergo1/payments", params={"page": 1, "pageSize": 5}).json()
    assert page1 == everything[5:10]
    v2 = http.get(api + "/api/v2/pools/ergo1/payments", params={"pageSize": 7}).json()
    assert v2["pageCount"] == len(everything) // 7


def test_miners_paging(sim, http):
    url = sim.urls["api"] + "/api/pools/ergo1/miners"
    everything = http.get(url, params={"pageSize": 100}).json()
    assert [m["hashrate"] for m in everything] == sorted((m["hashrate"] for m in everything), reverse=True)
    assert http.get(url, params={"page": 1, "pageSize": 3}).json() == everything[3:6]
