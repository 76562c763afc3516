"""Periodic work the engine does between stream reads: alert evaluation, maintenance job
bookkeeping and schedules, and whatever later parts add.

A task is a function ``run(ctx)`` with a cadence. Each task has its own PostgreSQL connection
(``ctx.conn``, opened on first use and reopened after a failure), so a slow or failing task never
holds the ingest transaction, and one task's failure is logged and retried at its next turn
without stopping the others or the ingest.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from panel import db

log = logging.getLogger(__name__)


@dataclass
class TaskContext:
    database_url: str
    redis: redis.Redis
    config: Mapping[str, Any] = field(default_factory=dict)
    _conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.database_url)
        return self._conn

    def reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
        self._conn = None


@dataclass
class PeriodicTask:
    """``run(ctx)`` every ``every_seconds``. Its result may ask for more: ``run_again_in`` (seconds:
    something it knows falls due then, like a pending alert's ``for``) and ``wake`` (names of tasks
    to run right after it, in the same round). With ``after_ingest`` it also runs as soon as new
    batches were ingested, but not sooner than that many seconds (nor 4 times its last run's
    duration) after its last start."""

    name: str
    every_seconds: float
    run: Callable[[TaskContext], Any]
    next_at: float = 0.0
    failures: int = 0
    context: TaskContext | None = None
    after_ingest: float | None = None
    started_at: float = 0.0
    took: float = 0.0


class TaskRunner:
    def __init__(self, tasks: list[PeriodicTask], database_url: str, redis_client: redis.Redis,
                 config: Mapping[str, Any] | None = None):
        self.tasks = tasks
        for task in tasks:
            task.context = TaskContext(database_url, redis_client, config or {})

    def run_due(self, now: float | None = None) -> None:
        for task in self.tasks:
            current = time.monotonic() if now is None else now
            if current < task.next_at:
                continue
            try:
                task.started_at = time.monotonic()
                result = task.run(task.context)
                if task.context._conn is not None and not task.context._conn.closed:
                    task.context._conn.rollback()  # never leave a transaction open between turns
                if task.failures:
                    log.info("task %s: working again", task.name)
                task.failures = 0
                task.took = time.monotonic() - task.started_at
                task.next_at = time.monotonic() + task.every_seconds
                self._follow_up(task, result)
            except Exception as exc:  # noqa: BLE001 - isolated: logged, retried later
                task.failures += 1
                level = logging.ERROR if task.failures in (1, 10, 100) else logging.DEBUG
                log.log(level, "task %s failed (%d in a row): %s", task.name, task.failures, exc,
                        exc_info=task.failures == 1)
                task.context.reset()
                task.next_at = time.monotonic() + min(task.every_seconds * 2 ** min(task.failures, 5), 300)

    def _follow_up(self, task: PeriodicTask, result: Any) -> None:
        again = getattr(result, "run_again_in", None)
        if again is not None:
            task.next_at = min(task.next_at, time.monotonic() + max(float(again), 0.01))
        for name in getattr(result, "wake", ()):
            for other in self.tasks:
                if other.name == name and not other.failures:
                    other.next_at = 0.0

    def ingested(self) -> None:
        """New batches were stored: the tasks that judge them run soon."""
        for task in self.tasks:
            if task.after_ingest is not None and not task.failures:
                task.next_at = min(task.next_at, task.started_at + max(task.after_ingest, 4 * task.took))

    def seconds_until_due(self) -> float:
        """How long the engine may wait for new entries before a task is due."""
        return max(0.0, min((t.next_at for t in self.tasks), default=math.inf) - time.monotonic())

    def close(self) -> None:
        for task in self.tasks:
            task.context.reset()


def default_tasks(config: Mapping[str, Any]) -> list[PeriodicTask]:
    """The tasks ``poolwarden-panel engine`` runs."""
    from panel import notify
    from panel.alerts.evaluator import make_task
    from panel.maintenance.sync import TICK_SECONDS, tick

    return [
        PeriodicTask("maintenance", TICK_SECONDS, tick),
        make_task(config),  # before notify: what it fires is told in the same round
        PeriodicTask("notify", notify.TICK_SECONDS, notify.tick),
    ]
