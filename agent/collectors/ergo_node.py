"""The Ergo node's health from ``GET /info`` (no key needed; ``api_key`` is sent if configured).

Heights, difficulty and peers are null while the node loads its state: those samples are left
out, not sent as 0. ``difficulty`` is a big integer written as a JSON number; Python's json reads
it as an exact int. ``poolwarden_node_up`` is 0 when the node does not answer or answers with
an error; the collector is then reported down too.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from agent.collectors.base import Collector, CollectorFailed, describe_request_error
from agent.collectors.miningcore import as_number, short_body
from agent.contract import Sample

DIRECT = (
    ("poolwarden_node_full_height", "fullHeight"),
    ("poolwarden_node_headers_height", "headersHeight"),
    ("poolwarden_node_max_peer_height", "maxPeerHeight"),
    ("poolwarden_node_peers", "peersCount"),
    ("poolwarden_node_mempool_transactions", "unconfirmedCount"),
    ("poolwarden_node_difficulty", "difficulty"),
)


def info_samples(info: dict[str, Any], now_ms: float) -> list[Sample]:
    """Samples from one /info body; ``now_ms`` is used when the node sends no ``currentTime``."""
    samples = []
    for name, key in DIRECT:
        value = as_number(info.get(key))
        if value is not None:
            samples.append(Sample(name, value))
    full = as_number(info.get("fullHeight"))
    tops = [v for v in (as_number(info.get("headersHeight")), as_number(info.get("maxPeerHeight"))) if v is not None]
    if full is not None and tops:
        samples.append(Sample("poolwarden_node_sync_lag_blocks", max(tops) - full))
    if isinstance(info.get("isMining"), bool):
        samples.append(Sample("poolwarden_node_is_mining", 1.0 if info["isMining"] else 0.0))
    last_seen = as_number(info.get("lastSeenMessageTime"))
    current = as_number(info.get("currentTime")) or now_ms
    if last_seen is not None:
        samples.append(Sample("poolwarden_node_last_message_age_seconds", max(current - last_seen, 0.0) / 1000.0))
    return samples


class ErgoNodeCollector(Collector):
    name = "ergo_node"
    METRICS = (
        "poolwarden_node_up",
        "poolwarden_node_response_seconds",
        *(name for name, _ in DIRECT),
        "poolwarden_node_sync_lag_blocks",
        "poolwarden_node_is_mining",
        "poolwarden_node_last_message_age_seconds",
        "poolwarden_node_tip_timestamp_seconds",
        "poolwarden_node_tip_age_seconds",
    )

    def __init__(self, session: requests.Session, url: str, api_key: str | None = None, timeout: float = 5.0):
        self.session = session
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.tip: tuple[float, float] | None = None  # (headersHeight, newest header's timestamp ms)

    def collect(self) -> list[Sample]:
        url = f"{self.url}/info"
        headers = {"api_key": self.api_key} if self.api_key else {}
        down = Sample("poolwarden_node_up", 0.0)
        start = time.perf_counter()
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CollectorFailed(f"Ergo node at {url}: {describe_request_error(exc, self.timeout)}",
                                  [down]) from None
        timing = Sample("poolwarden_node_response_seconds", round(time.perf_counter() - start, 6))
        if response.status_code != 200:
            raise CollectorFailed(f"Ergo node at {url} answered HTTP {response.status_code}: "
                                  f"{short_body(response)}", [down, timing])
        try:
            info = response.json()
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise CollectorFailed(f"Ergo node at {url} answered with an unreadable body ({exc}): "
                                  f"{short_body(response)}", [down, timing]) from None
        samples = [Sample("poolwarden_node_up", 1.0), timing, *info_samples(info, time.time() * 1000)]
        return samples + self.tip_samples(headers, samples, as_number(info.get("headersHeight")))

    def tip_samples(self, headers: dict[str, str], samples: list[Sample], height: float | None) -> list[Sample]:
        """Age of the newest header from ``/blocks/lastHeaders/1``, asked only when the headers
        height moved since the last ask (the age of an unchanged tip is computed). A failure here
        keeps the /info samples and marks the collector down."""
        if height is not None and self.tip is not None and self.tip[0] == height:
            stamp = self.tip[1]
            return [Sample("poolwarden_node_tip_timestamp_seconds", stamp / 1000),
                    Sample("poolwarden_node_tip_age_seconds", round(max(time.time() - stamp / 1000, 0.0), 3))]
        url = f"{self.url}/blocks/lastHeaders/1"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}: {short_body(response)}")
            body = response.json()
            stamp = as_number(body[-1].get("timestamp")) if isinstance(body, list) and body else None
        except requests.RequestException as exc:
            raise CollectorFailed(f"Ergo node at {url}: {describe_request_error(exc, self.timeout)}", samples) from None
        except (ValueError, AttributeError) as exc:
            raise CollectorFailed(f"Ergo node at {url}: {exc}", samples) from None
        if stamp is None:
            return []  # no header yet (a node that just started)
        self.tip = (height, stamp) if height is not None else None
        return [Sample("poolwarden_node_tip_timestamp_seconds", stamp / 1000),
                Sample("poolwarden_node_tip_age_seconds", round(max(time.time() - stamp / 1000, 0.0), 3))]

    def close(self) -> None:
        self.session.close()
