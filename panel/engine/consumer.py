"""The engine's main loop: discover sample streams, read them with a consumer group, store, ack.

Order of operations per read (every entry one XREADGROUP returns, stored in one transaction):
PostgreSQL commit, then XACK. An entry read but not acknowledged
(crash, Redis or PostgreSQL outage) stays in the group's pending list and is read again: at start
the engine claims every pending entry of the group (earlier engine processes had other consumer
names), after a reconnect it re-reads its own pending entries, and every rescan it claims entries
left idle by consumers that died. The batch id makes those replays store nothing twice.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import socket
import threading
import time
from urllib.parse import urlsplit

import psycopg
import redis

from agent.contract import ENGINE_GROUP, STREAM_PREFIX, host_from_stream_key, valid_host_name
from panel import db
from panel.engine.batches import IncomingBatch, MalformedEntry, parse_entry
from panel.engine.rollups import Retention, run_rollups
from panel.engine.store import SampleStore, SchemaMissing
from panel.engine.tasks import PeriodicTask, TaskRunner

log = logging.getLogger(__name__)

READ_COUNT = 100
PARSE_CHUNK = 100  # entries parsed while PostgreSQL inserts the previous ones
ORPHAN_IDLE_MS = 60_000
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
SUMMARY_EVERY_SECONDS = 60.0
ROLLUP_EVERY_SECONDS = 60.0
ROLLUP_BACKLOG_SECONDS = 5.0  # sooner while a backlog (first run, long outage) is worked off


class EngineUnavailable(RuntimeError):
    """Redis or PostgreSQL cannot be reached (raised only by ``run(once=True)``)."""


def describe_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class Engine:
    """Ingest every ``pw:samples:<host>`` stream into PostgreSQL until stopped."""

    def __init__(self, database_url: str, redis_url: str, *, block_ms: int = 1000,
                 rescan_seconds: float = 5.0, consumer: str | None = None,
                 retention: Retention | None = None, rollup_every: float = ROLLUP_EVERY_SECONDS,
                 tasks: list[PeriodicTask] | None = None, task_config: dict | None = None):
        self.database_url = database_url
        self.redis_url = redis_url
        self.block_ms = block_ms
        self.rescan_seconds = rescan_seconds
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.where_redis = describe_redis(redis_url)
        self.where_db = db.describe(database_url)
        self.redis = redis.Redis.from_url(
            redis_url, socket_connect_timeout=5, socket_timeout=block_ms / 1000 + 10,
        )
        self.retention = retention or Retention()
        self.tasks = TaskRunner(tasks or [], database_url, self.redis, task_config)
        self.rollup_every = rollup_every
        self._next_rollup = time.monotonic() + min(rollup_every, 10.0)
        self.stored = 0  # batches stored (not counting duplicates), for tests and the summary line
        self._stop = threading.Event()
        self._store: SampleStore | None = None
        self._streams: dict[bytes, str] = {}  # stream key -> host
        self._ignored: set[bytes] = set()
        self._next_scan = 0.0
        self._replay_own = False
        self._failures = 0
        self._down: str | None = None
        self._summary = {"batches": 0, "duplicates": 0, "rejected": 0, "samples": 0}
        self._next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS

    # -- control ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self, once: bool = False) -> None:
        """Run until ``stop()``; with ``once``, ingest what is available now and return."""
        log.info("engine %s: reading %s*, Redis at %s, PostgreSQL at %s",
                 self.consumer, STREAM_PREFIX, self.where_redis, self.where_db)
        try:
            while not self._stop.is_set():
                try:
                    self._connect_db()
                    if once:
                        self._drain()
                        return
                    self._step()
                    self._recovered()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self._failed(f"Redis at {self.where_redis} is unreachable ({exc})", once)
                except (psycopg.OperationalError, psycopg.InterfaceError, db.DatabaseUnavailable) as exc:
                    self._drop_db()
                    self._failed(f"PostgreSQL at {self.where_db} failed ({_first_line(exc)})", once)
                except SchemaMissing as exc:
                    self._drop_db()
                    self._failed(f"PostgreSQL at {self.where_db}: {exc}", once)
                except Exception as exc:
                    # A bug or an unexpected server answer: the entry stays pending, so nothing is
                    # lost; log it loudly and retry after a pause rather than exit and restart-loop.
                    if once:
                        raise
                    log.exception("unexpected error while ingesting")
                    self._failed(f"unexpected {type(exc).__name__}", once)
        finally:
            self._drop_db()
            self.tasks.close()
            self.redis.close()
            self._log_summary(force=True)

    # -- one round ----------------------------------------------------------------------------

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._next_scan:
            self._discover()
            for key in list(self._streams):
                self._claim(key, ORPHAN_IDLE_MS)
            self._next_scan = now + self.rescan_seconds
        if self._replay_own:
            self._read_own_pending()
        self.tasks.run_due()
        wait = min(self.block_ms / 1000, self.tasks.seconds_until_due())  # a read never holds up a task
        if not self._streams:
            self._stop.wait(min(wait, max(0.0, self._next_scan - time.monotonic())))
            return
        if self._read_new(block=max(1, int(wait * 1000)) if wait > 0 else None):
            self.tasks.ingested()
        self._log_summary()
        self._rollups_if_due()

    def _rollups_if_due(self) -> None:
        """Rollups and retention once a minute, between reads, on the ingest connection."""
        if time.monotonic() < self._next_rollup:
            return
        report = run_rollups(self._store.conn, self.retention)
        log.log(logging.INFO if any(report.deleted.values()) or report.late or report.backlog else logging.DEBUG,
                "rollup: %s", report.line())
        self._next_rollup = time.monotonic() + (ROLLUP_BACKLOG_SECONDS if report.backlog else self.rollup_every)

    def _drain(self) -> None:
        self._discover()
        self._read_own_pending()
        while not self._stop.is_set() and self._read_new(block=None):
            pass

    def _discover(self) -> None:
        """Find new streams, create the group on each and claim what earlier engines left pending."""
        for key in self.redis.scan_iter(match=STREAM_PREFIX + "*", count=1000, _type="STREAM"):
            if key in self._streams or key in self._ignored:
                continue
            try:
                host = host_from_stream_key(key)
            except (ValueError, UnicodeDecodeError):
                host = ""
            if not valid_host_name(host):
                log.warning("ignoring stream %r: host names are %s", key, "letters, digits, '-', '_', '.'")
                self._ignored.add(key)
                continue
            try:
                self.redis.xgroup_create(key, ENGINE_GROUP, id="0", mkstream=True)
                log.info("new sample stream %s: consumer group %s created", _text(key), ENGINE_GROUP)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._streams[key] = host
            self._claim(key, 0)

    def _claim(self, key: bytes, min_idle_ms: int) -> None:
        """Take over and ingest pending entries idle for at least ``min_idle_ms``."""
        start = "0-0"
        while not self._stop.is_set():
            reply = self._guarded(key, lambda s=start: self.redis.xautoclaim(
                key, ENGINE_GROUP, self.consumer, min_idle_ms, start_id=s, count=READ_COUNT))
            if reply is None:
                return
            start, messages = reply[0], reply[1]
            if messages:
                log.info("claimed %d pending entries of %s", len(messages), _text(key))
                self._handle([(key, entry_id, fields) for entry_id, fields in messages])
            if _text(start) == "0-0":
                return

    def _read_own_pending(self) -> None:
        """Re-read entries delivered to this consumer but not acknowledged (id 0)."""
        for key in list(self._streams):
            while not self._stop.is_set():
                reply = self._guarded(key, lambda k=key: self.redis.xreadgroup(
                    ENGINE_GROUP, self.consumer, {k: "0"}, count=READ_COUNT))
                entries = [(key, entry_id, fields) for _k, batch in _stream_items(reply) for entry_id, fields in batch]
                if not entries:
                    break
                self._handle(entries)
        self._replay_own = False

    def _read_new(self, block: int | None) -> int:
        if not self._streams:
            return 0
        try:
            reply = self.redis.xreadgroup(ENGINE_GROUP, self.consumer, dict.fromkeys(self._streams, ">"),
                                          count=READ_COUNT, block=block)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("a stream or its consumer group disappeared (%s): rescanning", exc)
            self._streams.clear()
            self._next_scan = 0.0
            return 0
        entries = [(key, entry_id, fields) for key, batch in _stream_items(reply) for entry_id, fields in batch]
        self._handle(entries)
        return len(entries)

    def _guarded(self, key: bytes, command):
        """Run a per-stream command; a stream deleted meanwhile is forgotten instead of failing."""
        try:
            return command()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._streams.pop(key, None)
            return None

    # -- one read ------------------------------------------------------------------------------

    def _handle(self, entries: list[tuple[bytes, bytes, dict | None]]) -> None:
        """Store the entries of one read in one transaction, then acknowledge them all.

        Entries that cannot be read, or that PostgreSQL refuses, are recorded in rejected_batches
        (and acknowledged) without holding back the others. If anything else fails, nothing is
        acknowledged: every entry stays pending and is read again (replays store nothing twice).
        """
        if not entries:
            return
        with _cyclic_gc_paused():
            self._store_read(entries)
        self._ack(entries)

    def _store_read(self, entries: list[tuple[bytes, bytes, dict | None]]) -> None:
        work = []
        for key, entry_id, fields in entries:
            if fields:  # an entry deleted from the stream while pending has none: only ack it
                work.append((self._streams.get(key) or host_from_stream_key(key), _text(entry_id), fields))
        fields_of = {(host, stream_id): fields for host, stream_id, fields in work}
        malformed: list[tuple[str, str, str]] = []

        def parse(chunk: list[tuple[str, str, dict]]) -> list[IncomingBatch]:
            batches = []
            for host, stream_id, fields in chunk:
                try:
                    batches.append(parse_entry(host, stream_id, fields))
                except MalformedEntry as exc:
                    malformed.append((host, stream_id, _first_line(exc)))
            return batches

        # Parsed chunk by chunk, when the store asks: the store writes one chunk while the next is parsed.
        chunks = (parse(work[i:i + PARSE_CHUNK]) for i in range(0, len(work), PARSE_CHUNK))
        result = self._store.ingest_read({host for host, _stream_id, _fields in work}, chunks)
        for host, stream_id, reason in malformed:
            self._reject(host, stream_id, fields_of[(host, stream_id)], reason)
        for batch, reason in result.refused:
            self._reject(batch.host, batch.stream_id, fields_of[(batch.host, batch.stream_id)], reason)
        self.stored += len(result.stored)
        self._summary["batches"] += len(result.stored)
        self._summary["samples"] += sum(len(b.values) for b in result.stored)
        self._summary["duplicates"] += len(result.duplicates)

    def _ack(self, entries: list[tuple[bytes, bytes, dict | None]]) -> None:
        """One XACK per stream for all of its entries, sent together (after the commit, never before)."""
        ids: dict[bytes, list[bytes]] = {}
        for key, entry_id, _fields in entries:
            ids.setdefault(key, []).append(entry_id)
        with self.redis.pipeline(transaction=False) as pipe:
            for key, entry_ids in ids.items():
                pipe.xack(key, ENGINE_GROUP, *entry_ids)
            pipe.execute()

    def _reject(self, host: str, stream_id: str, fields: dict, reason: str) -> None:
        log.warning("rejected entry %s of host %s: %s (kept in rejected_batches)", stream_id, host, reason)
        payload = "; ".join(f"{_text(k)}={_text(v)}" for k, v in fields.items())
        self._store.reject(host, stream_id, reason, payload)
        self._summary["rejected"] += 1

    # -- connections and failures ------------------------------------------------------------

    def _connect_db(self) -> None:
        if self._store is not None and not self._store.conn.closed:
            return
        self._drop_db()
        conn = db.connect(self.database_url)
        try:
            self._store = SampleStore(conn)
        except BaseException:
            conn.close()
            raise

    def _drop_db(self) -> None:
        if self._store is not None:
            self._store.conn.close()
            self._store = None

    def _failed(self, problem: str, once: bool) -> None:
        self._replay_own = True
        if once:
            raise EngineUnavailable(problem)
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** self._failures)
        delay *= random.uniform(0.8, 1.2)
        self._failures += 1
        log.error("%s: retrying in %.1f s", problem, delay)
        self._down = problem
        self._stop.wait(delay)

    def _recovered(self) -> None:
        if self._down:
            log.info("connections are back (was: %s)", self._down)
        self._down = None
        self._failures = 0

    def _log_summary(self, force: bool = False) -> None:
        if not force and time.monotonic() < self._next_summary:
            return
        self._next_summary = time.monotonic() + SUMMARY_EVERY_SECONDS
        s = self._summary
        if any(s.values()):
            log.info("ingested %d batches (%d samples) from %d streams; %d duplicates skipped, %d rejected",
                     s["batches"], s["samples"], len(self._streams), s["duplicates"], s["rejected"])
        self._summary = dict.fromkeys(s, 0)


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Hold Python's cyclic garbage collector while one read is parsed and stored.

    A read creates a few container objects per sample (hundreds of thousands for a backlog) that
    live until it is stored; with the collector on, the allocations trigger collections that
    traverse all of them again and again: 0.80 s instead of 0.62 s for the ingest benchmark
    (docs/performance.md). Parsed JSON holds no reference cycles, so reference counting frees
    everything; collection resumes afterwards.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _stream_items(reply) -> list[tuple[bytes, list]]:
    """XREADGROUP's reply as (key, entries) pairs, for RESP2 (list) and RESP3 (dict) alike."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, entries) for k, entries in reply]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
