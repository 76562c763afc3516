"""Miningcore's PostgreSQL: health every cycle, table sizes and dead rows on a slower cadence.

``postgresql``: reachable, client connections against ``max_connections``, the longest running
query and the oldest open transaction (an idle-in-transaction session stops vacuum from cleaning
the ``shares`` table), and the database size (the panel derives its growth).

``postgresql_tables``: ``pg_total_relation_size`` and the live/dead row estimates of every user
table (shares, blocks, payments, balances, balance_changes, minerstats, poolstats, ...) with the
time of its last (auto)vacuum, from ``pg_stat_user_tables``.

Both keep one connection open between runs (reconnecting after a failure) with a short
``statement_timeout``, so a run costs a few catalogue reads, not a new backend.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from agent.collectors.base import Collector, CollectorFailed
from agent.collectors.components import describe_db_error
from agent.contract import Sample

log = logging.getLogger("agent.collectors.postgresql")

HEALTH_SQL = """
SELECT current_database(),
       pg_database_size(current_database()),
       current_setting('max_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0) FROM pg_stat_activity
         WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()),
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND backend_type = 'client backend' AND pid <> pg_backend_pid())
"""

TABLES_SQL = """
SELECT CASE WHEN schemaname = 'public' THEN relname ELSE schemaname || '.' || relname END,
       pg_total_relation_size(relid), n_live_tup, n_dead_tup,
       extract(epoch FROM greatest(last_vacuum, last_autovacuum))
FROM pg_stat_user_tables ORDER BY 1
"""


class _Connection:
    """One lazily opened autocommit connection, dropped after any error."""

    def __init__(self, dsn: str, timeout: float):
        self.dsn = dsn
        self.timeout = timeout
        self.conn: Any = None

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        try:
            if self.conn is None or self.conn.closed:
                timeout_ms = int(max(self.timeout, 0.1) * 1000)
                self.conn = psycopg.connect(self.dsn, connect_timeout=max(int(self.timeout), 1), autocommit=True,
                                            application_name="poolwarden-agent",
                                            options=f"-c statement_timeout={timeout_ms}")
            return self.conn.execute(sql).fetchall()
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class PostgresHealthCollector(Collector):
    name = "postgresql"
    METRICS = ("poolwarden_postgres_up", "poolwarden_postgres_response_seconds", "poolwarden_postgres_connections",
               "poolwarden_postgres_max_connections", "poolwarden_postgres_longest_query_seconds",
               "poolwarden_postgres_longest_transaction_seconds", "poolwarden_postgres_database_size_bytes")

    def __init__(self, dsn: str, timeout: float = 5.0):
        self.db = _Connection(dsn, timeout)

    def collect(self) -> list[Sample]:
        start = time.perf_counter()
        try:
            (name, size, max_conn, conns, longest_query, longest_xact), = self.db.query(HEALTH_SQL)
        except Exception as exc:
            raise CollectorFailed(f"Miningcore's {describe_db_error(exc)}",
                                  [Sample("poolwarden_postgres_up", 0.0)]) from None
        return [
            Sample("poolwarden_postgres_up", 1.0),
            Sample("poolwarden_postgres_response_seconds", round(time.perf_counter() - start, 6)),
            Sample("poolwarden_postgres_connections", float(conns)),
            Sample("poolwarden_postgres_max_connections", float(max_conn)),
            Sample("poolwarden_postgres_longest_query_seconds", round(float(longest_query), 3)),
            Sample("poolwarden_postgres_longest_transaction_seconds", round(float(longest_xact), 3)),
            Sample("poolwarden_postgres_database_size_bytes", float(size), {"database": name}),
        ]

    def close(self) -> None:
        self.db.close()


class PostgresTablesCollector(Collector):
    name = "postgresql_tables"
    METRICS = ("poolwarden_postgres_table_size_bytes", "poolwarden_postgres_table_live_rows",
               "poolwarden_postgres_table_dead_rows", "poolwarden_postgres_table_last_vacuum_timestamp_seconds")
    every = 60.0

    def __init__(self, dsn: str, timeout: float = 5.0):
        self.db = _Connection(dsn, timeout)

    def collect(self) -> list[Sample]:
        try:
            rows = self.db.query(TABLES_SQL)
        except Exception as exc:
            raise CollectorFailed(f"Miningcore's {describe_db_error(exc)}") from None
        samples = []
        for table, size, live, dead, vacuumed in rows:
            labels = {"table": table}
            samples += [Sample("poolwarden_postgres_table_size_bytes", float(size), labels),
                        Sample("poolwarden_postgres_table_live_rows", float(live), labels),
                        Sample("poolwarden_postgres_table_dead_rows", float(dead), labels)]
            if vacuumed is not None:
                samples.append(Sample("poolwarden_postgres_table_last_vacuum_timestamp_seconds",
                                      round(float(vacuumed), 3), labels))
        return samples

    def close(self) -> None:
        self.db.close()
