"""Writing batches into PostgreSQL: one transaction per batch, duplicate-safe."""

from __future__ import annotations

import json
import logging

import psycopg
from psycopg.types.json import Jsonb

from panel.engine.batches import IncomingBatch
from panel.engine.rollups import MARK_LATE_SAMPLES, ORIGIN

log = logging.getLogger(__name__)

MAX_REJECTED_PAYLOAD = 64 * 1024

SeriesKey = tuple[int, str, tuple[tuple[str, str], ...]]


def series_key(host_id: int, name: str, labels: dict[str, str]) -> SeriesKey:
    return host_id, name, tuple(sorted(labels.items()))


class SchemaMissing(RuntimeError):
    """The panel database has not been migrated."""


class SampleStore:
    """Ingests batches over one autocommit connection (transactions are explicit)."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._series: dict[SeriesKey, int] = {}  # only ids whose creating transaction committed
        if conn.execute("SELECT to_regclass('ingested_batches')").fetchone()[0] is None:
            raise SchemaMissing("the panel database has no tables yet: run 'poolwarden-panel migrate' first")
        # Staging table for COPY; emptied by every commit.
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_samples "
            "(series_id bigint, ts timestamptz, value double precision) ON COMMIT DELETE ROWS"
        )

    def ingest(self, batch: IncomingBatch) -> bool:
        """Store a batch; False when its id was already stored (nothing is written twice)."""
        new_series: dict[SeriesKey, int] = {}
        with self.conn.transaction():
            host_id = self.conn.execute(
                "INSERT INTO hosts (name) VALUES (%s) "
                "ON CONFLICT (name) DO UPDATE SET last_seen = now() RETURNING id",
                (batch.host,),
            ).fetchone()[0]
            first_time = self.conn.execute(
                "INSERT INTO ingested_batches (host_id, batch_id, stream_id, ts, sample_count) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING true",
                (host_id, batch.batch_id, batch.stream_id, batch.ts, batch.sample_count),
            ).fetchone()
            if not first_time:
                log.debug("batch %s of %s already stored: skipped", batch.batch_id, batch.host)
                return False
            self.conn.execute(
                "UPDATE hosts SET"
                " agent_version = CASE WHEN last_batch_ts IS NULL OR %(ts)s >= last_batch_ts"
                "   THEN COALESCE(NULLIF(%(version)s, ''), agent_version) ELSE agent_version END,"
                " last_batch_ts = GREATEST(last_batch_ts, %(ts)s)"
                " WHERE id = %(id)s",
                {"ts": batch.ts, "version": batch.agent_version, "id": host_id},
            )
            if batch.samples:
                new_series = self._resolve_series(host_id, batch)
                self._write_samples(host_id, batch, new_series)
            if batch.events:
                with self.conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO events (host_id, event_id, kind, ts, data) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(host_id, eid, kind, ts, Jsonb(data)) for eid, kind, ts, data in batch.events],
                    )
        self._series.update(new_series)
        return True

    def _resolve_series(self, host_id: int, batch: IncomingBatch) -> dict[SeriesKey, int]:
        """Ids of the series this batch needs that are not cached yet (created when missing)."""
        missing: dict[SeriesKey, tuple[str, str]] = {}
        for name, labels, _ts, _value in batch.samples:
            key = series_key(host_id, name, labels)
            if key not in self._series:
                missing[key] = (name, json.dumps(labels, sort_keys=True))
        if not missing:
            return {}
        names = [name for name, _ in missing.values()]
        labels = [lab for _, lab in missing.values()]
        self.conn.execute(
            "INSERT INTO series (host_id, name, labels) "
            "SELECT %s, n, l::jsonb FROM unnest(%s::text[], %s::text[]) AS t(n, l) "
            "ON CONFLICT DO NOTHING",
            (host_id, names, labels),
        )
        rows = self.conn.execute(
            "SELECT s.id, s.name, s.labels FROM series s "
            "JOIN unnest(%s::text[], %s::text[]) AS t(n, l) ON s.name = t.n AND s.labels = t.l::jsonb "
            "WHERE s.host_id = %s",
            (names, labels, host_id),
        ).fetchall()
        return {series_key(host_id, name, lab): series_id for series_id, name, lab in rows}

    def _write_samples(self, host_id: int, batch: IncomingBatch, new_series: dict[SeriesKey, int]) -> None:
        with self.conn.cursor() as cur:
            with cur.copy("COPY incoming_samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "timestamptz", "float8"])
                for name, labels, ts, value in batch.samples:
                    key = series_key(host_id, name, labels)
                    copy.write_row((self._series.get(key) or new_series[key], ts, value))
            cur.execute(
                "INSERT INTO samples (series_id, ts, value) "
                "SELECT series_id, ts, value FROM incoming_samples ON CONFLICT DO NOTHING"
            )
            # Newest sample per series; an old batch replayed late must not move latest back.
            cur.execute(
                "INSERT INTO latest (series_id, ts, value) "
                "SELECT DISTINCT ON (series_id) series_id, ts, value FROM incoming_samples "
                "ORDER BY series_id, ts DESC "
                "ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, value = excluded.value "
                "WHERE latest.ts <= excluded.ts"
            )
            # Samples for minutes already rolled up (a spool replay, a slow agent): redo those minutes.
            cur.execute(MARK_LATE_SAMPLES, {"origin": ORIGIN})

    def reject(self, host: str, stream_id: str, reason: str, payload: str) -> None:
        """Keep an entry that cannot be ingested, so it can be acknowledged without being lost."""
        clean = payload.replace("\x00", "\\0")[:MAX_REJECTED_PAYLOAD]
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO rejected_batches (host, stream_id, reason, payload) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (host, stream_id, reason.replace("\x00", "\\0")[:2000], clean),
            )
