"""Miningcore's PostgreSQL health and table sizes, against a real server holding poolsim's
Miningcore-schema database."""

from __future__ import annotations

import threading
import time

import psycopg

from agent.collectors import PostgresHealthCollector, PostgresTablesCollector, run_collector

HEALTH = {"poolwarden_postgres_up", "poolwarden_postgres_response_seconds", "poolwarden_postgres_connections",
          "poolwarden_postgres_max_connections", "poolwarden_postgres_longest_query_seconds",
          "poolwarden_postgres_longest_transaction_seconds", "poolwarden_postgres_database_size_bytes"}
TABLES = {"poolwarden_postgres_table_size_bytes", "poolwarden_postgres_table_live_rows",
          "poolwarden_postgres_table_dead_rows", "poolwarden_postgres_table_last_vacuum_timestamp_seconds"}


def seeded(dsn: str) -> None:
    from poolsim import PoolSim

    PoolSim(seed=7, dsn=dsn, paused=True, history_days=0.3).setup().stop()


def test_health_with_a_long_query(fresh_db):
    seeded(fresh_db)
    collector = PostgresHealthCollector(fresh_db, timeout=5)
    sleeper = threading.Thread(target=lambda: psycopg.connect(fresh_db).execute("SELECT pg_sleep(1.5)"))
    sleeper.start()
    time.sleep(0.6)
    try:
        result = run_collector(collector)
    finally:
        sleeper.join()
        collector.close()
    assert result.ok, result.error
    assert {s.name for s in result.samples} == HEALTH
    v = {s.name: s.value for s in result.samples}
    assert v["poolwarden_postgres_up"] == 1
    assert v["poolwarden_postgres_connections"] >= 2
    assert v["poolwarden_postgres_max_connections"] >= v["poolwarden_postgres_connections"]
    assert 0.4 < v["poolwarden_postgres_longest_query_seconds"] < 5
    dbname = fresh_db.rsplit("/", 1)[1]
    size = [s for s in result.samples if s.name == "poolwarden_postgres_database_size_bytes"][0]
    assert size.labels == {"database": dbname} and size.value > 1_000_000


def test_table_sizes_and_dead_rows(fresh_db):
    seeded(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM shares WHERE ctid IN (SELECT ctid FROM shares LIMIT 50)")
        conn.execute("ANALYZE shares")
        conn.execute("VACUUM poolstats")
    collector = PostgresTablesCollector(fresh_db, timeout=5)
    try:
        time.sleep(0.6)  # statistics reach pg_stat_user_tables within PGSTAT flush time
        result = run_collector(collector)
    finally:
        collector.close()
    assert result.ok, result.error
    assert {s.name for s in result.samples} == TABLES
    by = {(s.name, s.labels["table"]): s.value for s in result.samples}
    for table in ("shares", "blocks", "payments", "balances", "balance_changes", "minerstats", "poolstats"):
        assert by[("poolwarden_postgres_table_size_bytes", table)] > 0, table
    assert by[("poolwarden_postgres_table_dead_rows", "shares")] >= 50
    assert ("poolwarden_postgres_table_last_vacuum_timestamp_seconds", "poolstats") in by


def test_database_down(refused_url):
    port = refused_url.rsplit(":", 1)[1]
    result = run_collector(PostgresHealthCollector(f"postgresql://postgres:secret@127.0.0.1:{port}/mc", timeout=2))
    assert not result.ok and "secret" not in result.error and "Connection refused" in result.error
    assert [(s.name, s.value) for s in result.samples] == [("poolwarden_postgres_up", 0.0)]
