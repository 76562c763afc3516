"""What every collector shares: the Collector base class and the isolating runner.

A collector is a class with one method, ``collect() -> list[Sample]``, its dependencies passed
in, and its metric names declared as data in ``METRICS`` (after Prometheus client_python and
Glances plugins). ``run_collector`` calls it, times it and turns any failure into
``poolwarden_collector_up{collector=...} 0`` so one broken source never stops the agent.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from agent.contract import METRICS, Event, Sample

log = logging.getLogger("agent.collectors")

UP = "poolwarden_collector_up"
DURATION = "poolwarden_collector_duration_seconds"


class CollectorFailed(Exception):
    """Raised by a collector that could not produce all of its data.

    ``samples`` holds what it did produce (e.g. ``poolwarden_pool_up 0``): they are still sent,
    but the collector is reported as down.
    """

    def __init__(self, message: str, samples: list[Sample] | None = None):
        super().__init__(message)
        self.samples = samples or []


class Collector:
    """Base class: subclasses set ``name`` and ``METRICS`` and implement ``collect()``."""

    name: ClassVar[str] = ""
    METRICS: ClassVar[tuple[str, ...]] = ()
    every: float | None = None  # seconds between runs; None = every cycle (the runner may override)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [m for m in cls.METRICS if m not in METRICS]
        if unknown:
            raise TypeError(f"{cls.__name__} declares metrics missing from agent.contract.METRICS: {unknown}")

    def collect(self) -> list[Sample | Event]:
        """Samples (and, for the few collectors that read events, Event records)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Called once the batch holding this run's events is safely in Redis or the spool: a
        collector that keeps a cursor persists it here, so a lost batch is read again."""

    def commit_memory(self) -> None:
        """Like ``commit`` but without touching the disk (``--print`` runs)."""

    def close(self) -> None:
        """Release resources (sessions, threads); the default has none."""


def describe_request_error(exc: Exception, timeout: float) -> str:
    """A requests exception as one line an operator can act on."""
    import requests

    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text:
            return "connection refused: is it running and listening there?"
        if "Name or service not known" in text or "Failed to resolve" in text:
            return "host name does not resolve"
        return f"cannot connect ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class CollectorResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    ok: bool = True
    duration: float = 0.0
    error: str | None = None
    ts: float = 0.0  # when the run started
    cached: bool = False  # True for a background result: its samples carry their own ts
    events: list[Event] = field(default_factory=list)

    def status_samples(self) -> list[Sample]:
        labels = {"collector": self.name}
        ts = self.ts if self.cached else 0.0
        return [Sample(UP, 1.0 if self.ok else 0.0, labels, ts),
                Sample(DURATION, round(self.duration, 6), labels, ts)]

    def all_samples(self) -> list[Sample]:
        return [*self.samples, *self.status_samples()]


def run_collector(collector: Collector) -> CollectorResult:
    """Run one collector, never raising: failures are logged and reported as up=0."""
    ts = time.time()
    start = time.perf_counter()
    try:
        samples, ok, error = collector.collect(), True, None
    except CollectorFailed as exc:
        samples, ok, error = exc.samples, False, str(exc)
        log.warning("collector %s: %s", collector.name, exc)
    except Exception as exc:  # any bug or outage in one collector must not stop the others
        samples, ok, error = [], False, f"{type(exc).__name__}: {exc}"
        log.warning("collector %s failed: %s", collector.name, error, exc_info=log.isEnabledFor(logging.DEBUG))
    duration = time.perf_counter() - start
    events = [s for s in samples if isinstance(s, Event)]
    if events:
        samples = [s for s in samples if not isinstance(s, Event)]
    undeclared = {s.name for s in samples} - set(collector.METRICS)
    if undeclared:  # a programming error: keep the declared ones, say which were dropped
        log.error("collector %s emitted undeclared metrics %s; dropped", collector.name, sorted(undeclared))
        samples = [s for s in samples if s.name in collector.METRICS]
    return CollectorResult(collector.name, samples, ok, duration, error, ts, events=events)


def timed_out(collector: Collector, started: float, timeout: float, still_running: bool = False) -> CollectorResult:
    """The result of a run that did not finish within its time bound."""
    error = (f"previous run still running after {time.time() - started:.0f} s" if still_running
             else f"no result within {timeout:g} s (still running in the background)")
    log.warning("collector %s: %s", collector.name, error)
    return CollectorResult(collector.name, [], False, timeout if not still_running else time.time() - started,
                           error, started)


class BackgroundCollector:
    """Runs a slow collector in its own thread every ``every`` seconds and keeps the result.

    ``take()`` hands each finished run over once (its samples stamped with when they were
    measured) and None in between, so the fast collectors never wait for it and a measurement is
    sent once rather than repeated in every batch (the panel would store it again each time).
    """

    def __init__(self, collector: Collector, every: float):
        self.collector = collector
        self.name = collector.name
        self.every = every
        self._result: CollectorResult | None = None
        self._taken = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.running_since: float | None = None  # wall time the current run started

    def start(self) -> BackgroundCollector:
        self._thread = threading.Thread(target=self._loop, name=f"collector-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.every)

    def refresh(self) -> CollectorResult:
        self.running_since = time.time()
        try:
            result = run_collector(self.collector)
        finally:
            self.running_since = None
        result.cached = True
        for i, s in enumerate(result.samples):  # stamp cached samples with when they were measured
            if not s.ts:
                result.samples[i] = Sample(s.name, s.value, s.labels, result.ts)
        with self._lock:
            self._result, self._taken = result, False
        self._ready.set()
        return result

    def wait_first(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the first run to finish (so small hosts get sizes in
        the first batch)."""
        self._ready.wait(timeout)

    def result(self) -> CollectorResult | None:
        """The last finished run, taken or not."""
        with self._lock:
            return self._result

    def take(self) -> CollectorResult | None:
        """The last finished run if it was not handed over yet, else None."""
        with self._lock:
            if self._result is None or self._taken:
                return None
            self._taken = True
            return self._result

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.collector.close()


@dataclass
class Scheduled:
    """A collector with its cadence (``every`` seconds, 0 = every cycle) and time bound."""

    collector: Collector
    every: float = 0.0
    timeout: float = 10.0
    last_start: float = float("-inf")  # monotonic
    started: float = 0.0  # wall clock, for the report
    future: object = None


class Scheduler:
    """Runs the fast collectors of one cycle concurrently, each within its own time bound.

    A collector that does not answer within ``timeout`` is reported down (``up 0``, duration =
    the bound) and the cycle goes on; its thread is left to finish and the collector is not
    started again while it still runs (it is reported down at each due time instead), so a hung
    source costs one thread, never a pile of them.
    """

    SLACK = 1.0  # a collector due in less than this is run now (cycles start on wall-clock ticks)

    def __init__(self, items: list[Scheduled]):
        from concurrent.futures import ThreadPoolExecutor

        self.items = items
        self.pool = ThreadPoolExecutor(max_workers=max(len(items), 1), thread_name_prefix="collector")

    def run_cycle(self) -> list[tuple[Scheduled, CollectorResult]]:
        from concurrent.futures import TimeoutError as FutureTimeout

        now = time.monotonic()
        submitted: list[Scheduled] = []
        out: list[tuple[Scheduled, CollectorResult]] = []
        for item in self.items:
            due = now - item.last_start >= item.every - self.SLACK
            if item.future is not None and not item.future.done():
                if due:
                    item.last_start = now
                    out.append((item, timed_out(item.collector, item.started, item.timeout, still_running=True)))
                continue
            item.future = None  # a late result of a timed-out run is dropped: it was reported down
            if not due:
                continue
            item.last_start, item.started = now, time.time()
            item.future = self.pool.submit(run_collector, item.collector)
            submitted.append(item)
        for item in sorted(submitted, key=lambda i: i.timeout):
            try:
                result = item.future.result(timeout=max(now + item.timeout - time.monotonic(), 0.0))
                item.future = None
                out.append((item, result))
            except FutureTimeout:
                out.append((item, timed_out(item.collector, item.started, item.timeout)))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
