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

    The slow component-size collector runs in a background thread (``background=True``); each of
    its results, stamped with when it was measured, rides along in the next batch once. With
    ``background=False`` (``--once``) it runs inline.
    """

    def __init__(self, config: Config, fast: list[Collector], slow: Collector | None,
                 publisher: Publisher | None = None, background: bool = True):
        self.config = config
        self.host = config.host
        self.fast = fast
        self.slow = slow
        self.publisher = publisher
        self.version = agent_version()
        self.seq = 0
        self.interval = float(config.monitoring.intervals.collect_seconds)
        self.started_at = psutil.Process().create_time()
        self.background: BackgroundCollector | None = None
        if slow is not None and background:
            self.background = BackgroundCollector(slow, config.monitoring.intervals.component_sizes_seconds).start()

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
        """Run every collector once and return the batch (not yet published)."""
        ts = time.time()
        samples: list[Sample] = []
        for collector in self.fast:
            samples += run_collector(collector).all_samples()
        if self.background is not None:
            if self.seq == 0:
                self.background.wait_first(min(5.0, self.interval / 2))
            result = self.background.take()
            if result is not None:
                samples += result.all_samples()
        elif self.slow is not None:
            samples += run_collector(self.slow).all_samples()
        samples.append(Sample("poolwarden_agent_info", 1.0, {"version": self.version}))
        if self.publisher is not None:
            samples += [Sample("poolwarden_spool_batches", float(len(self.publisher.spool))),
                        Sample("poolwarden_spool_dropped_total", float(self.publisher.spool.dropped))]
        events = [self.started_event()] if self.seq == 0 else []
        self.seq += 1
        return Batch(ts=ts, samples=samples, events=events, seq=self.seq, agent_version=self.version)

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
                except OSError as exc:  # Redis down and the spool not writable (disk full?)
                    log.error("batch %d lost: Redis unreachable and the spool in %s is not writable: %s",
                              batch.seq, self.publisher.spool.dir, exc)
            if on_batch is not None:
                on_batch(batch)
            done += 1
            if cycles is not None and done >= cycles:
                break
            now = time.time()
            stop.wait(max((math.floor(now / interval) + 1) * interval - now, 0.0))
        return done

    def close(self) -> None:
        if self.background is not None:
            self.background.stop()
        else:
            if self.slow is not None:
                self.slow.close()
        for collector in self.fast:
            collector.close()
        if self.publisher is not None:
            self.publisher.close()
