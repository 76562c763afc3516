"""Miningcore's REST API: per-pool and network figures from ``GET /api/pools``.

Miningcore omits null properties, so every field may be missing (``poolStats`` is absent on a
fresh pool, ``lastPoolBlockTime`` before the first block): a missing or non-numeric field gives
no sample, never an error. Error bodies are plain text even when labelled JSON.

oliverw's build answers **500** on ``/api/pools`` when no share was written since the last block
(oliverw/miningcore#1530). Then each configured or previously seen pool is read from
``/api/pools/{id}`` instead.

Up semantics: ``poolwarden_pool_up{pool}`` says whether Miningcore answered for that pool;
``poolwarden_collector_up{collector="miningcore"}`` is 1 only when the collector produced the
data of every known pool (a working fallback counts). When the API is down each known pool (the
configured ids plus every id seen since the agent started) gets ``pool_up 0`` and the collector
is reported down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import requests

from agent.collectors.base import Collector, CollectorFailed, describe_request_error
from agent.contract import Sample, finite

log = logging.getLogger("agent.collectors.miningcore")

# metric name -> path of keys inside PoolInfo
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("poolwarden_pool_hashrate_hps", ("poolStats", "poolHashrate")),
    ("poolwarden_pool_miners", ("poolStats", "connectedMiners")),
    ("poolwarden_pool_shares_per_second", ("poolStats", "sharesPerSecond")),
    ("poolwarden_pool_effort_ratio", ("poolEffort",)),
    ("poolwarden_pool_blocks_total", ("totalBlocks",)),
    ("poolwarden_pool_paid_total", ("totalPaid",)),
    ("poolwarden_pool_fee_percent", ("poolFeePercent",)),
    ("poolwarden_network_hashrate_hps", ("networkStats", "networkHashrate")),
    ("poolwarden_network_difficulty", ("networkStats", "networkDifficulty")),
    ("poolwarden_network_height", ("networkStats", "blockHeight")),
    ("poolwarden_network_peers", ("networkStats", "connectedPeers")),
)
TIMESTAMPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("poolwarden_pool_last_block_timestamp_seconds", ("lastPoolBlockTime",)),
    ("poolwarden_network_last_block_timestamp_seconds", ("networkStats", "lastNetworkBlockTime")),
)


def dig(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if finite(value) else None


def parse_timestamp(value: Any) -> float | None:
    """Miningcore's ISO-8601 dates (``...Z``, up to 7 fractional digits; no zone = UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def pool_samples(pool: dict[str, Any]) -> list[Sample]:
    """The samples of one PoolInfo object (``pool_up 1`` included)."""
    labels = {"pool": str(pool["id"])}
    samples = [Sample("poolwarden_pool_up", 1.0, labels)]
    for name, path in FIELDS:
        value = as_number(dig(pool, path))
        if value is not None:
            samples.append(Sample(name, value, labels))
    for name, path in TIMESTAMPS:
        value = parse_timestamp(dig(pool, path))
        if value is not None:
            samples.append(Sample(name, value, labels))
    return samples


def short_body(response: requests.Response) -> str:
    text = (response.text or "").strip().replace("\n", " ")
    return text[:200] or "(empty body)"


class MiningcoreCollector(Collector):
    """Reads ``{api_url}/api/pools`` (only ``pool_ids`` if given) into pool and network samples."""

    name = "miningcore"
    METRICS = (
        "poolwarden_pool_up",
        "poolwarden_pool_api_response_seconds",
        *(name for name, _ in FIELDS),
        *(name for name, _ in TIMESTAMPS),
    )

    def __init__(self, session: requests.Session, api_url: str, pool_ids: Sequence[str] = (),
                 timeout: float = 5.0):
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.pool_ids = tuple(pool_ids)
        self.timeout = timeout
        self.known_ids: dict[str, None] = dict.fromkeys(self.pool_ids)  # ordered set

    def collect(self) -> list[Sample]:
        url = f"{self.api_url}/api/pools"
        start = time.perf_counter()
        try:
            response = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CollectorFailed(f"Miningcore API at {url}: {describe_request_error(exc, self.timeout)}",
                                  self.down_samples()) from None
        timing = Sample("poolwarden_pool_api_response_seconds", round(time.perf_counter() - start, 6))

        if response.status_code == 200:
            try:
                pools = response.json()["pools"]
                if not isinstance(pools, list):
                    raise TypeError("'pools' is not a list")
            except (ValueError, KeyError, TypeError) as exc:
                raise CollectorFailed(f"Miningcore API at {url} answered 200 with an unexpected body "
                                      f"({exc}): {short_body(response)}", [timing, *self.down_samples()]) from None
            try:
                return [timing, *self.from_pools([p for p in pools if isinstance(p, dict) and "id" in p])]
            except CollectorFailed as exc:
                raise CollectorFailed(str(exc), [timing, *exc.samples]) from None

        reason = f"Miningcore API at {url} answered HTTP {response.status_code}: {short_body(response)}"
        if response.status_code >= 500 and self.known_ids:
            log.info("%s; reading each pool from /api/pools/{id} instead (oliverw/miningcore#1530)", reason)
            try:
                return [timing, *self.from_each_pool()]
            except CollectorFailed as exc:
                raise CollectorFailed(f"{reason}; {exc}", [timing, *exc.samples]) from None
        raise CollectorFailed(reason, [timing, *self.down_samples()])

    def from_pools(self, pools: list[dict[str, Any]]) -> list[Sample]:
        samples: list[Sample] = []
        answered = set()
        for pool in pools:
            pool_id = str(pool["id"])
            if self.pool_ids and pool_id not in self.pool_ids:
                continue
            self.known_ids.setdefault(pool_id)
            answered.add(pool_id)
            samples += pool_samples(pool)
        missing = [p for p in self.known_ids if p not in answered]
        if missing:
            samples += self.down_samples(missing)
            raise CollectorFailed(f"Miningcore's /api/pools lists no pool {', '.join(missing)} "
                                  "(disabled, renamed, or a typo in miningcore.poolIds?)", samples)
        return samples

    def from_each_pool(self) -> list[Sample]:
        samples: list[Sample] = []
        failures = []
        for pool_id in list(self.known_ids):
            url = f"{self.api_url}/api/pools/{pool_id}"
            try:
                response = self.session.get(url, timeout=self.timeout)
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}: {short_body(response)}")
                pool = response.json()["pool"]
                if not isinstance(pool, dict):
                    raise ValueError("'pool' is not an object")
                pool.setdefault("id", pool_id)
            except requests.RequestException as exc:
                failures.append(f"{url}: {describe_request_error(exc, self.timeout)}")
                samples += self.down_samples([pool_id])
                continue
            except (ValueError, KeyError) as exc:
                failures.append(f"{url}: {exc}")
                samples += self.down_samples([pool_id])
                continue
            samples += pool_samples(pool)
        if failures:
            raise CollectorFailed("fallback per pool failed: " + "; ".join(failures), samples)
        return samples

    def down_samples(self, pool_ids: Sequence[str] | None = None) -> list[Sample]:
        ids = self.known_ids if pool_ids is None else pool_ids
        return [Sample("poolwarden_pool_up", 0.0, {"pool": p}) for p in ids]

    def close(self) -> None:
        self.session.close()
