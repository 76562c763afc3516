"""Miningcore's Prometheus ``/metrics``: valid and invalid share rates, stratum connections and
submit latency per pool, and the process's start time and memory.

The text format is parsed here (``parse_prometheus``: a few dozen lines, no dependency). Counters
become rates from this collector's own deltas between runs. Miningcore's counters restart at 0
with the process (reference/miningcore.md §3.1): a changed ``process_start_time_seconds`` or a
counter that went down marks a reset, and the rate for that interval is then computed from 0 at
the process start, or left out when the start time is unknown.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from agent.collectors.base import Collector, CollectorFailed, describe_request_error
from agent.collectors.miningcore import short_body
from agent.contract import Sample

_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            if text[pos:].strip(" ,"):
                raise ValueError(f"bad label set {{{text}}}")
            break
        value = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], match.group(2))
        out.append((match.group(1), value))
        pos = match.end()
    return tuple(sorted(out))


def _value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("nan",):
        return math.nan
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def parse_prometheus(text: str) -> Series:
    """``{(name, sorted label pairs): value}`` from the Prometheus text exposition format (0.0.4).
    Comments, ``# HELP``/``# TYPE`` lines and timestamps are skipped; a malformed line raises ValueError."""
    series: Series = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"line {number} is not a Prometheus sample: {line[:80]!r}")
        name, labels, value = match.groups()
        try:
            series[(name, _labels(labels or ""))] = _value(value)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return series


def by_label(series: Series, name: str, label: str, **match: str) -> Iterator[tuple[str, float]]:
    for (n, labels), value in series.items():
        if n != name:
            continue
        d = dict(labels)
        if label in d and all(d.get(k) == v for k, v in match.items()):
            yield d[label], value


def single(series: Series, name: str) -> float | None:
    value = series.get((name, ()))
    return value if value is not None and math.isfinite(value) else None


class MiningcoreMetricsCollector(Collector):
    """Reads ``metrics_url`` (Miningcore's ``/metrics``) into per-pool share rates."""

    name = "miningcore_metrics"
    METRICS = (
        "poolwarden_miningcore_metrics_response_seconds",
        "poolwarden_miningcore_start_time_seconds",
        "poolwarden_miningcore_resident_memory_bytes",
        "poolwarden_pool_connections",
        "poolwarden_pool_valid_shares_total",
        "poolwarden_pool_invalid_shares_total",
        "poolwarden_pool_valid_shares_per_second",
        "poolwarden_pool_invalid_shares_per_second",
        "poolwarden_pool_invalid_share_ratio",
        "poolwarden_pool_submit_seconds",
    )

    def __init__(self, session: requests.Session, metrics_url: str, pool_ids: tuple[str, ...] = (),
                 timeout: float = 5.0, clock: Callable[[], float] = time.time):
        self.session = session
        self.url = metrics_url
        self.pool_ids = tuple(pool_ids)
        self.timeout = timeout
        self.clock = clock
        self.previous: dict[str, Any] | None = None  # {"t", "start", "pools": {pool: (valid, invalid, sum, count)}}

    def collect(self) -> list[Sample]:
        start = time.perf_counter()
        try:
            response = self.session.get(self.url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CollectorFailed(
                f"Miningcore metrics at {self.url}: {describe_request_error(exc, self.timeout)}") from None
        timing = Sample("poolwarden_miningcore_metrics_response_seconds", round(time.perf_counter() - start, 6))
        if response.status_code != 200:
            hint = " (is the agent's address in Miningcore's api.metricsIpWhitelist?)" if response.status_code == 403 \
                else ""
            raise CollectorFailed(f"Miningcore metrics at {self.url} answered HTTP {response.status_code}{hint}: "
                                  f"{short_body(response)}", [timing])
        try:
            series = parse_prometheus(response.text)
        except ValueError as exc:
            raise CollectorFailed(f"Miningcore metrics at {self.url}: unreadable: {exc}", [timing]) from None
        return [timing, *self.samples(series, self.clock())]

    def samples(self, series: Series, now: float) -> list[Sample]:
        out: list[Sample] = []
        started = single(series, "process_start_time_seconds")
        if started is not None:
            out.append(Sample("poolwarden_miningcore_start_time_seconds", started))
        working_set = single(series, "process_working_set_bytes")
        if working_set is not None:
            out.append(Sample("poolwarden_miningcore_resident_memory_bytes", working_set))

        counters: dict[str, list[float]] = {}
        for metric, index in (("miningcore_valid_shares_total", 0), ("miningcore_invalid_shares_total", 1)):
            for pool, value in by_label(series, metric, "pool"):
                counters.setdefault(pool, [math.nan] * 4)[index] = value
        for pool, value in by_label(series, "miningcore_stratum_request_execution_time_sum", "pool",
                                    method="mining.submit"):
            counters.setdefault(pool, [math.nan] * 4)[2] = value
        for pool, value in by_label(series, "miningcore_stratum_request_execution_time_count", "pool",
                                    method="mining.submit"):
            counters.setdefault(pool, [math.nan] * 4)[3] = value
        if self.pool_ids:
            counters = {p: c for p, c in counters.items() if p in self.pool_ids}

        for pool, value in by_label(series, "miningcore_pool_connections", "pool"):
            if not self.pool_ids or pool in self.pool_ids:
                out.append(Sample("poolwarden_pool_connections", value, {"pool": pool}))

        previous = self.previous
        restarted = previous is not None and started is not None and previous["start"] is not None \
            and started != previous["start"]
        for pool, (valid, invalid, submit_sum, submit_count) in counters.items():
            labels = {"pool": pool}
            if math.isfinite(valid):
                out.append(Sample("poolwarden_pool_valid_shares_total", valid, labels))
            if math.isfinite(invalid):
                out.append(Sample("poolwarden_pool_invalid_shares_total", invalid, labels))
            before = previous["pools"].get(pool) if previous else None
            if before is None:
                continue
            reset = restarted or any(now_v < then_v for now_v, then_v in zip((valid, invalid, submit_sum, submit_count),
                                                                                  before, strict=True)
                                     if math.isfinite(now_v) and math.isfinite(then_v))
            if reset:
                # counted from 0 since the process started, if that start is known and after our last read
                if started is None or started < previous["t"] or now <= started:
                    continue
                elapsed, base = now - started, (0.0, 0.0, 0.0, 0.0)
            else:
                elapsed, base = now - previous["t"], before
            if elapsed <= 0:
                continue
            d_valid, d_invalid = valid - base[0], invalid - base[1]
            if math.isfinite(d_valid):
                out.append(Sample("poolwarden_pool_valid_shares_per_second", round(d_valid / elapsed, 6), labels))
            if math.isfinite(d_invalid):
                out.append(Sample("poolwarden_pool_invalid_shares_per_second", round(d_invalid / elapsed, 6), labels))
            if math.isfinite(d_valid) and math.isfinite(d_invalid) and d_valid + d_invalid > 0:
                out.append(Sample("poolwarden_pool_invalid_share_ratio",
                                  round(d_invalid / (d_valid + d_invalid), 6), labels))
            d_sum, d_count = submit_sum - base[2], submit_count - base[3]
            if math.isfinite(d_sum) and math.isfinite(d_count) and d_count > 0:
                out.append(Sample("poolwarden_pool_submit_seconds", round(d_sum / d_count / 1000, 6), labels))
        self.previous = {"t": now, "start": started, "pools": {p: tuple(c) for p, c in counters.items()}}
        return out

    def close(self) -> None:
        self.session.close()
