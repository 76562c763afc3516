"""One agent process: run the collectors each cycle, build a Batch, hand it to the publisher."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

import psutil

from agent.collectors import BackgroundCollector, Collector, build_collectors, run_collector
from agent.collectors.base import CollectorResult, Scheduled, Scheduler
from agent.config import Config
from agent.contract import Batch, Event, Sample
from agent.publisher import Publisher, Spool

log = logging.getLogger("agent")


def agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("poolwarden")
    except PackageNotFoundError:
        return "0.0.0"


class Agent:
    """Collect → batch → publish. ``publisher`` None means "build batches only" (``--print``).

    The fast collectors run concurrently each cycle, each at its own cadence and within its own
    time bound (``Scheduler``): one that hangs is reported down and never delays the batch. The
    slow ones (directory and Docker disk sizes) run in background threads
    (``background=True``); each of their results, stamped with when it was measured, rides along
    in the next batch once. With ``background=False`` (``--once``) they run inline.

    Every batch carries ``poolwarden_agent_heartbeat_timestamp_seconds``, so the panel can tell a
    silent host from one whose collectors all fail.
    """

    def __init__(self, config: Config, fast: list[Collector], slow: Collector | list[Collector] | None,
                 publisher: Publisher | None = None, background: bool = True):
        self.config = config
        self.host = config.host
        self.fast = fast
        self.slow: list[Collector] = [] if slow is None else (list(slow) if isinstance(slow, list) else [slow])
        self.publisher = publisher
        self.version = agent_version()
        self.seq = 0
        self.interval = float(config.monitoring.intervals.collect_seconds)
        self.process = psutil.Process()
        self.started_at = self.process.create_time()
        self.scheduler = Scheduler([self._scheduled(c) for c in fast])
        self.backgrounds: list[BackgroundCollector] = []
        self._ran: list[Collector] = []
        if background:
            sizes_every = config.monitoring.intervals.component_sizes_seconds
            self.backgrounds = [BackgroundCollector(c, self._every(c, sizes_every)).start() for c in self.slow]

    def _every(self, collector: Collector, default: float) -> float:
        settings = self.config.monitoring.collectors.get(collector.name)
        if settings is not None and settings.every_seconds is not None:
            return float(settings.every_seconds)
        return float(collector.every if collector.every is not None else default)

    def _scheduled(self, collector: Collector) -> Scheduled:
        intervals = self.config.monitoring.intervals
        settings = self.config.monitoring.collectors.get(collector.name)
        timeout = intervals.collector_timeout_seconds
        if settings is not None and settings.timeout_seconds is not None:
            timeout = settings.timeout_seconds
        return Scheduled(collector, every=self._every(collector, 0.0), timeout=float(timeout))

    @property
    def background(self) -> BackgroundCollector | None:
        """The first background collector (the component sizes), for older callers."""
        return self.backgrounds[0] if self.backgrounds else None

    @classmethod
    def from_config(cls, config: Config, publish: bool = True, background: bool = True) -> Agent:
        fast, slow = build_collectors(config, user_agent=f"poolwarden-agent/{agent_version()}")
        publisher = None
        if publish:
            settings = config.monitoring.agent
            spool = Spool(settings.spool_dir, settings.spool_max_batches)
            publisher = Publisher.from_url(settings.redis_url, config.host, spool)
        return cls(config, fast, slow, publisher, background)

    def started_event(self) -> Event:
        """Stable for this process (host + process start time), so replays are ingested once."""
        return Event(
            id=f"agent_started:{self.host}:{int(self.started_at * 1000)}",
            kind="agent_started",
            ts=self.started_at,
            data={"version": self.version, "pid": os.getpid(), "config": self.config.summary()},
        )

    def cycle(self) -> Batch:
        """Run every due collector once and return the batch (not yet published). Never raises:
        whatever fails, a batch with the heartbeat goes out."""
        ts = time.time()
        start = time.perf_counter()
        samples: list[Sample] = []
        events = [self.started_event()] if self.seq == 0 else []
        try:
            results: list[CollectorResult] = [r for _item, r in self.scheduler.run_cycle()]
            if self.backgrounds:
                if self.seq == 0:
                    deadline = time.monotonic() + min(5.0, self.interval / 2)
                    for bg in self.backgrounds:
                        bg.wait_first(max(deadline - time.monotonic(), 0.0))
                for bg in self.backgrounds:
                    result = bg.take()
                    if result is not None:
                        results.append(result)
                    elif bg.running_since is not None and time.time() - bg.running_since > max(bg.every, 600):
                        results.append(CollectorResult(bg.name, [], False, time.time() - bg.running_since,
                                                       "still running", ts))
            else:
                results += [run_collector(c) for c in self.slow]
            for result in results:
                samples += result.all_samples()
                events += result.events
            self._ran = [c for c in [*self.fast, *self.slow] if c.name in {r.name for r in results if r.ok or r.events}]
        except Exception as exc:  # a bug here must still let the heartbeat out
            log.exception("collection cycle failed: %s", exc)
        samples.append(Sample("poolwarden_agent_info", 1.0, {"version": self.version}))
        if self.publisher is not None:
            samples += [Sample("poolwarden_spool_batches", float(len(self.publisher.spool))),
                        Sample("poolwarden_spool_dropped_total", float(self.publisher.spool.dropped))]
        samples += self.self_samples(ts, time.perf_counter() - start)
        self.seq += 1
        return Batch(ts=ts, samples=samples, events=events, seq=self.seq, agent_version=self.version)

    def self_samples(self, ts: float, cycle_seconds: float) -> list[Sample]:
        out = [Sample("poolwarden_agent_heartbeat_timestamp_seconds", round(ts, 3)),
               Sample("poolwarden_agent_cycle_seconds", round(cycle_seconds, 6))]
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_times()
                rss = self.process.memory_info().rss
            out += [Sample("poolwarden_agent_resident_memory_bytes", float(rss)),
                    Sample("poolwarden_agent_cpu_seconds_total", round(cpu.user + cpu.system, 3))]
        except psutil.Error:
            pass
        return out

    def commit(self, persist: bool = True) -> None:
        """The last batch is safe (in Redis or the spool): let event readers move their cursors."""
        for collector in self._ran:
            try:
                collector.commit() if persist else collector.commit_memory()
            except Exception as exc:  # a cursor that cannot be saved is read again: duplicates, not losses
                log.error("collector %s: cannot save its cursor: %s", collector.name, exc)
        self._ran = []

    def run(self, cycles: int | None, interval: float, stop: threading.Event,
            on_batch: Callable[[Batch], None] | None = None) -> int:
        """Cycle until ``stop`` is set or ``cycles`` are done; cycles after the first start on
        multiples of ``interval`` (wall clock), so every host samples at the same moments."""
        self.interval = interval
        done = 0
        while not stop.is_set():
            batch = self.cycle()
            if self.publisher is not None:
                try:
                    sent = self.publisher.publish(batch)
                    log.info("batch %d: %d samples %s", batch.seq, len(batch.samples),
                             "sent" if sent else f"spooled ({len(self.publisher.spool)} waiting)")
                    self.commit()
                except OSError as exc:  # Redis down and the spool not writable (disk full?)
                    log.error("batch %d lost: Redis unreachable and the spool in %s is not writable: %s",
                              batch.seq, self.publisher.spool.dir, exc)
            else:
                self.commit(persist=False)  # --print: never move the cursors on disk
            if on_batch is not None:
                on_batch(batch)
            done += 1
            if cycles is not None and done >= cycles:
                break
            now = time.time()
            stop.wait(max((math.floor(now / interval) + 1) * interval - now, 0.0))
        return done

    def close(self) -> None:
        for bg in self.backgrounds:
            bg.stop()
        if not self.backgrounds:
            for collector in self.slow:
                collector.close()
        self.scheduler.close()
        for collector in self.fast:
            collector.close()
        if self.publisher is not None:
            self.publisher.close()
