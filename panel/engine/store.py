"""Writing batches into PostgreSQL: all the entries of one stream read in one transaction, duplicate-safe.

Per read (every entry one XREADGROUP returns, any number of hosts), in one transaction: one upsert
of the hosts and the rollup watermark (read FOR SHARE), then per chunk of entries one insert of
their batch ids (a batch whose id is already there is a replay and writes nothing else), one
update of the hosts' agent version and newest batch time, the series not known yet (two
statements, only when there are any) and one binary ``COPY`` of the samples straight into
``samples``; at the end one upsert of ``latest``, the late minutes for the rollups and the events.
Series ids are cached, so the steady state runs no ``SELECT`` per batch. The next chunk is parsed
while PostgreSQL inserts the previous one's rows (``ingest_read``).

A sample already stored under another batch id (the same series and time twice) makes the direct
COPY fail; that chunk's samples then go through a staging table with ``ON CONFLICT DO NOTHING``,
inside the same transaction (a savepoint), so duplicates never cost more than that chunk.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from typing import TypeVar

import psycopg
import psycopg.errors

from panel.engine.batches import IncomingBatch, SeriesSig, label_text

log = logging.getLogger(__name__)

MAX_REJECTED_PAYLOAD = 64 * 1024

# What PostgreSQL (or psycopg, encoding a parameter) refuses because of what an entry holds: the
# entry is refused, the others of its read are stored. Connection failures are none of these.
CONTENT_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded,
                  UnicodeEncodeError)

# Binary COPY: a timestamptz is int64 microseconds since 2000-01-01 UTC.
PG_EPOCH_US = 946_684_800 * 1_000_000
MINUTE_US = 60 * 1_000_000
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
SAMPLE_ROW = struct.Struct(">hiqiqid")  # 3 fields: (8) series_id, (8) ts, (8) value

COPY_SAMPLES = "COPY samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
COPY_STAGED = "COPY incoming_samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
US_TO_TIMESTAMPTZ = "timestamptz 'epoch' + {} * interval '1 microsecond'"

T = TypeVar("T")
_NOT_YET = object()
_NO_SERIES: dict[SeriesSig, int] = {}


class SchemaMissing(RuntimeError):
    """The panel database has not been migrated."""


@dataclass
class StoreResult:
    stored: list[IncomingBatch] = field(default_factory=list)
    duplicates: list[IncomingBatch] = field(default_factory=list)
    # Batches PostgreSQL refused, with the reason: the caller records them as rejected.
    refused: list[tuple[IncomingBatch, str]] = field(default_factory=list)

    def merge(self, other: StoreResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.refused += other.refused


def canonical_labels(pairs: tuple[tuple[str, object], ...]) -> str:
    """Labels as the ``series.labels`` jsonb text: keys sorted, values as strings."""
    return json.dumps({k: label_text(v) for k, v in pairs}, sort_keys=True)


class SampleStore:
    """Ingests batches over one autocommit connection (transactions are explicit)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        # host id -> series -> series id; only ids whose creating transaction committed
        self._series: dict[int, dict[SeriesSig, int]] = {}
        if conn.execute("SELECT to_regclass('ingested_batches')").fetchone()[0] is None:
            raise SchemaMissing("the panel database has no tables yet: run 'poolwarden-panel migrate' first")
        # Staging table for the rare read that repeats a stored sample; emptied by every commit.
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_samples "
            "(series_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
        )

    def ingest(self, batch: IncomingBatch) -> bool:
        """Store one batch; False when its id was already stored (nothing is written twice)."""
        result = self.ingest_read([batch.host], [[batch]])
        if result.refused:
            raise psycopg.DataError(result.refused[0][1])
        return bool(result.stored)

    def ingest_read(self, hosts: Iterable[str], chunks: Iterable[list[IncomingBatch]]) -> StoreResult:
        """Store the batches of one read in one transaction.

        ``hosts`` names every host the batches come from. ``chunks`` gives the batches a few at a
        time and may parse them only when asked: the next chunk is asked for while PostgreSQL
        inserts the samples of the previous one (already sent, waiting in the socket buffers), so
        parsing and inserting overlap instead of taking turns.

        If PostgreSQL refuses something an entry holds, the transaction is rolled back and the
        batches are stored one transaction each, so only the offending ones are refused. Any other
        failure (connection, server) propagates with nothing committed.
        """
        chunks = iter(chunks)
        taken: list[IncomingBatch] = []

        def remembered() -> Iterator[list[IncomingBatch]]:
            for chunk in chunks:
                taken.extend(chunk)
                yield chunk

        try:
            return self._store_together(sorted(set(hosts)), remembered())
        except CONTENT_ERRORS as exc:
            for chunk in chunks:  # the batches not parsed yet when PostgreSQL refused something
                taken.extend(chunk)
            if len(taken) == 1:
                return StoreResult(refused=[(taken[0], _first_line(exc))])
            log.info("PostgreSQL refused part of a read of %d entries (%s): storing them one by one",
                     len(taken), _first_line(exc))
        result = StoreResult()
        for batch in taken:
            result.merge(self.ingest_read([batch.host], [[batch]]))
        return result

    # -- one transaction ------------------------------------------------------------------------

    def _store_together(self, hosts: list[str], chunks: Iterator[list[IncomingBatch]]) -> StoreResult:
        result = StoreResult()
        seen: set[tuple[str, str]] = set()
        created: dict[int, dict[SeriesSig, int]] = {}
        newest = _Newest()
        late_minutes: set[int] = set()
        with self.conn.transaction():
            host_ids = self._upsert_hosts(hosts)
            watermark_us = self._rollup_watermark_us()

            def prepare_next() -> tuple[list[IncomingBatch], list[list[int | None]]] | None:
                chunk = next(chunks, None)
                return None if chunk is None else (chunk, self._cached_ids(chunk, host_ids, created))

            upcoming = prepare_next()
            while upcoming is not None:
                new, series_ids = self._claim(*upcoming, seen, host_ids, result)
                if not new:
                    upcoming = prepare_next()
                    continue
                result.stored += new
                self._update_hosts(new, host_ids)
                self._create_series(new, series_ids, host_ids, created)
                upcoming = self._write_samples(new, series_ids, host_ids, watermark_us, newest, late_minutes,
                                               meanwhile=prepare_next)
            if result.stored:
                self._upsert_latest(newest.values)
                self._mark_late(late_minutes)
                self._insert_events(result.stored, host_ids)
        for host_id, series in created.items():
            self._series.setdefault(host_id, {}).update(series)
        for batch in result.duplicates:
            log.debug("batch %s of %s already stored: skipped", batch.batch_id, batch.host)
        return result

    def _claim(self, batches: list[IncomingBatch], series_ids: list[list[int | None]], seen: set[tuple[str, str]],
               host_ids: dict[str, int], result: StoreResult) -> tuple[list[IncomingBatch], list[list[int | None]]]:
        """The batches (and their series ids) never stored before; the others go to ``result.duplicates``."""
        candidates = []
        for batch, ids in zip(batches, series_ids, strict=True):
            if (batch.host, batch.batch_id) in seen:  # the same batch twice in one read: a replay
                result.duplicates.append(batch)
            else:
                seen.add((batch.host, batch.batch_id))
                candidates.append((batch, ids))
        fresh = self._claim_batch_ids([batch for batch, _ids in candidates], host_ids) if candidates else set()
        new, new_ids = [], []
        for batch, ids in candidates:
            if (host_ids[batch.host], batch.batch_id) in fresh:
                new.append(batch)
                new_ids.append(ids)
            else:
                result.duplicates.append(batch)
        return new, new_ids

    def _upsert_hosts(self, names: list[str]) -> dict[str, int]:
        rows = self.conn.execute(
            "INSERT INTO hosts (name) SELECT n FROM unnest(%s::text[]) AS n ORDER BY n "
            "ON CONFLICT (name) DO UPDATE SET last_seen = now() RETURNING name, id",
            (names,),
        ).fetchall()
        return dict(rows)

    def _claim_batch_ids(self, batches: list[IncomingBatch], host_ids: dict[str, int]) -> set[tuple[int, str]]:
        """Record the batch ids; returns the (host id, batch id) of those never stored before."""
        rows = self.conn.execute(
            "INSERT INTO ingested_batches (host_id, batch_id, stream_id, ts, sample_count) "
            "SELECT * FROM unnest(%s::int[], %s::text[], %s::text[], %s::timestamptz[], %s::int[]) ORDER BY 1, 2 "
            "ON CONFLICT DO NOTHING RETURNING host_id, batch_id",
            ([host_ids[b.host] for b in batches], [b.batch_id for b in batches], [b.stream_id for b in batches],
             [b.ts for b in batches], [b.sample_count for b in batches]),
        ).fetchall()
        return set(rows)

    def _update_hosts(self, batches: list[IncomingBatch], host_ids: dict[str, int]) -> None:
        """Newest batch time per host, and the agent version of the newest batch that names one
        (an old batch replayed late must not move either back)."""
        newest: dict[int, datetime] = {}
        version: dict[int, tuple[str, datetime]] = {}
        for b in batches:
            host_id = host_ids[b.host]
            if host_id not in newest or b.ts >= newest[host_id]:
                newest[host_id] = b.ts
            if b.agent_version and (host_id not in version or b.ts >= version[host_id][1]):
                version[host_id] = (b.agent_version, b.ts)
        ids = sorted(newest)
        self.conn.execute(
            "UPDATE hosts h SET"
            " agent_version = CASE WHEN u.version IS NOT NULL"
            "   AND (h.last_batch_ts IS NULL OR u.version_ts >= h.last_batch_ts)"
            "   THEN u.version ELSE h.agent_version END,"
            " last_batch_ts = GREATEST(h.last_batch_ts, u.newest)"
            " FROM unnest(%s::int[], %s::timestamptz[], %s::text[], %s::timestamptz[])"
            "   AS u(id, newest, version, version_ts)"
            " WHERE h.id = u.id",
            (ids, [newest[i] for i in ids], [version.get(i, (None, None))[0] for i in ids],
             [version.get(i, (None, None))[1] for i in ids]),
        )

    def _rollup_watermark_us(self) -> int | None:
        """Where the 1 m rollup is done, read FOR SHARE (see rollups.py): older samples are late."""
        row = self.conn.execute(
            "SELECT (extract(epoch FROM done_until) * 1000000)::bigint FROM rollup_state "
            "WHERE resolution = '1m' FOR SHARE"
        ).fetchone()
        return row[0] if row else None

    def _cached_ids(self, batches: list[IncomingBatch], host_ids: dict[str, int],
                    created: dict[int, dict[SeriesSig, int]]) -> list[list[int | None]]:
        """The series id of every sample, per batch, as far as known (None: not created yet)."""
        all_ids = []
        for batch in batches:
            host_id = host_ids[batch.host]
            ids = list(map(self._series.get(host_id, _NO_SERIES).get, batch.series))
            if host_id in created and None in ids:
                more = created[host_id]
                ids = [more.get(sig) if series_id is None else series_id
                       for sig, series_id in zip(batch.series, ids, strict=True)]
            all_ids.append(ids)
        return all_ids

    def _create_series(self, batches: list[IncomingBatch], series_ids: list[list[int | None]],
                       host_ids: dict[str, int], created: dict[int, dict[SeriesSig, int]]) -> None:
        """Create the series not known yet (two statements for all), fill in their ids and note
        them in ``created``."""
        incomplete = [(batch, ids) for batch, ids in zip(batches, series_ids, strict=True) if None in ids]
        if not incomplete:
            return
        unknown: set[tuple[int, SeriesSig]] = set()
        for batch, ids in incomplete:
            host_id = host_ids[batch.host]
            unknown.update((host_id, sig)
                           for sig, series_id in zip(batch.series, ids, strict=True) if series_id is None)
        missing: dict[tuple[int, str, str], list[SeriesSig]] = {}  # as stored -> as the agents wrote it
        for host_id, sig in unknown:
            missing.setdefault((host_id, sig[0], canonical_labels(sig[1])), []).append(sig)
        keys = sorted(missing)
        columns = ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys])
        self.conn.execute(
            "INSERT INTO series (host_id, name, labels) "
            "SELECT h, n, l::jsonb FROM unnest(%s::int[], %s::text[], %s::text[]) AS t(h, n, l) ORDER BY 1, 2, 3 "
            "ON CONFLICT DO NOTHING",
            columns,
        )
        rows = self.conn.execute(
            "SELECT t.i, s.id FROM unnest(%s::int[], %s::text[], %s::text[]) WITH ORDINALITY AS t(h, n, l, i) "
            "JOIN series s ON s.host_id = t.h AND s.name = t.n AND s.labels = t.l::jsonb",
            columns,
        ).fetchall()
        for position, series_id in rows:
            key = keys[position - 1]
            for sig in missing[key]:
                created.setdefault(key[0], {})[sig] = series_id
        for batch, ids in incomplete:
            more = created[host_ids[batch.host]]
            ids[:] = [more[sig] if series_id is None else series_id
                      for sig, series_id in zip(batch.series, ids, strict=True)]

    def _write_samples(self, batches: list[IncomingBatch], series_ids: list[list[int]], host_ids: dict[str, int],
                       watermark_us: int | None, newest: _Newest, late_minutes: set[int], meanwhile: Callable[[], T],
                       ) -> T:
        """COPY the samples (noting the newest per series and the late minutes); returns what
        ``meanwhile`` returns, called once the rows are sent, while PostgreSQL inserts them."""
        packed: list[bytes] = [COPY_HEADER]

        def rows(i: int) -> bytes:
            batch = batches[i]
            newest.note(host_ids[batch.host], batch, series_ids[i])
            if watermark_us is not None and batch.oldest_us < watermark_us:
                late_minutes.update(us - us % MINUTE_US for _sig, us, _value in batch.rows() if us < watermark_us)
            packed.append(_copy_rows(batch, series_ids[i]))
            return packed[-1]

        upcoming: T | object = _NOT_YET
        with self.conn.cursor() as cur:
            try:
                with self.conn.transaction(), cur.copy(COPY_SAMPLES) as copy:
                    copy.write(COPY_HEADER)
                    for i in range(len(batches)):
                        copy.write(rows(i))
                    copy.write(COPY_TRAILER)
                    upcoming = meanwhile()
            except psycopg.errors.UniqueViolation:
                # A (series, ts) already stored under another batch id, or twice in this read.
                log.info("a read repeats samples already stored: storing it through the staging table")
                for i in range(len(packed) - 1, len(batches)):  # in case the error came before all were packed
                    rows(i)
                with cur.copy(COPY_STAGED) as copy:
                    copy.write(b"".join((*packed, COPY_TRAILER)))
                cur.execute("INSERT INTO samples (series_id, ts, value) "
                            "SELECT series_id, ts, value FROM incoming_samples ON CONFLICT DO NOTHING")
                cur.execute("TRUNCATE incoming_samples")
        return meanwhile() if upcoming is _NOT_YET else upcoming

    def _upsert_latest(self, newest: dict[int, tuple[int, float]]) -> None:
        """Newest sample per series; an old batch replayed late must not move latest back."""
        if not newest:
            return
        ids = sorted(newest)
        self.conn.execute(
            "INSERT INTO latest (series_id, ts, value) "
            f"SELECT s, {US_TO_TIMESTAMPTZ.format('t')}, v FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) "
            "AS u(s, t, v) ORDER BY s "
            "ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, value = excluded.value "
            "WHERE latest.ts <= excluded.ts",
            (ids, [newest[i][0] for i in ids], [newest[i][1] for i in ids]),
        )

    def _mark_late(self, minutes: set[int]) -> None:
        """Minutes already rolled up that just received samples: the next rollup run redoes them."""
        if minutes:
            self.conn.execute(
                "INSERT INTO rollup_dirty (resolution, bucket) "
                f"SELECT '1m', {US_TO_TIMESTAMPTZ.format('m')} FROM unnest(%s::bigint[]) AS m ORDER BY 2 "
                "ON CONFLICT DO NOTHING",
                (sorted(minutes),),
            )

    def _insert_events(self, batches: list[IncomingBatch], host_ids: dict[str, int]) -> None:
        events = sorted((host_ids[b.host], eid, kind, ts, json.dumps(data))
                        for b in batches for eid, kind, ts, data in b.events)
        if events:
            columns = list(zip(*events, strict=True))
            self.conn.execute(
                "INSERT INTO events (host_id, event_id, kind, ts, data) "
                "SELECT h, e, k, t, d::jsonb FROM unnest(%s::int[], %s::text[], %s::text[], %s::timestamptz[], "
                "%s::text[]) AS u(h, e, k, t, d) ON CONFLICT DO NOTHING",
                [list(c) for c in columns],
            )

    def reject(self, host: str, stream_id: str, reason: str, payload: str) -> None:
        """Keep an entry that cannot be ingested, so it can be acknowledged without being lost."""
        clean = payload.replace("\x00", "\\0")[:MAX_REJECTED_PAYLOAD]
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO rejected_batches (host, stream_id, reason, payload) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (host, stream_id, reason.replace("\x00", "\\0")[:2000], clean),
            )


def _copy_rows(batch: IncomingBatch, series_ids: list[int]) -> bytes:
    """A batch's samples as binary COPY rows, packed in C (``map`` over the columns)."""
    if batch.times is None:
        times: Iterable[int] = repeat(batch.ts_us - PG_EPOCH_US)
    else:
        times = [us - PG_EPOCH_US for us in batch.times]
    return b"".join(map(SAMPLE_ROW.pack, repeat(3), repeat(8), series_ids, repeat(8), times, repeat(8),
                        batch.values))


class _Newest:
    """The newest (time, value) per series over a read, for ``latest``.

    A batch whose samples all carry its ts, no older than anything of its host seen in this read
    (the usual case: each agent's batches arrive in order), replaces its series' entries in one
    ``dict.update``; any other batch is compared sample by sample.
    """

    def __init__(self) -> None:
        self.values: dict[int, tuple[int, float]] = {}
        self._host_newest: dict[int, int] = {}

    def note(self, host_id: int, batch: IncomingBatch, series_ids: list[int]) -> None:
        if not series_ids:
            return
        host_newest = self._host_newest.get(host_id)
        if batch.times is None and (host_newest is None or batch.ts_us >= host_newest):
            self.values.update(zip(series_ids, zip(repeat(batch.ts_us), batch.values, strict=False), strict=True))
            self._host_newest[host_id] = batch.ts_us
            return
        values = self.values
        times = batch.times or repeat(batch.ts_us)
        for series_id, us, value in zip(series_ids, times, batch.values, strict=False):
            seen = values.get(series_id)
            if seen is None or us >= seen[0]:
                values[series_id] = (us, value)
        newest_here = max(batch.times) if batch.times else batch.ts_us
        self._host_newest[host_id] = max(newest_here, host_newest or newest_here)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
