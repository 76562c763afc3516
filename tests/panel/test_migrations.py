"""Migrations: applied in order on a fresh database, recorded, re-run as a no-op, safe concurrently."""

from __future__ import annotations

import threading

import psycopg
import pytest

from panel import create_app
from panel.migrations import apply_migrations, available_migrations, pending_migrations

TABLES = {"schema_migrations", "hosts", "series", "samples", "latest", "ingested_batches", "events",
          "rejected_batches"}


def tables(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows}


def recorded(dsn):
    with psycopg.connect(dsn) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_migrations_are_numbered_files_in_order():
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == "0001"


def test_apply_on_fresh_database_then_rerun_is_a_noop(fresh_db):
    applied = apply_migrations(fresh_db)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    assert TABLES <= tables(fresh_db)
    assert pending_migrations(fresh_db) == []

    assert apply_migrations(fresh_db) == []
    assert recorded(fresh_db) == [m.version for m in available_migrations()]


def test_concurrent_runs_apply_each_migration_once(fresh_db):
    results, errors = [], []

    def run():
        try:
            results.append(apply_migrations(fresh_db))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(available_migrations())]
    assert recorded(fresh_db) == [m.version for m in available_migrations()]


def test_migrate_command(fresh_db):
    app = create_app({"TESTING": True, "DATABASE_URL": fresh_db})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["migrate"])
    assert first.exit_code == 0, first.output
    assert "applied 0001_samples" in first.output
    again = runner.invoke(args=["migrate"])
    assert again.exit_code == 0
    assert "up to date" in again.output


def test_migrate_command_names_an_unreachable_server():
    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/poolwarden"})
    result = app.test_cli_runner().invoke(args=["migrate"])
    assert result.exit_code == 1
    assert "PostgreSQL at 127.0.0.1:1/poolwarden cannot be reached" in result.output


@pytest.mark.parametrize("table, column", [
    ("samples", "ts"), ("hosts", "last_batch_ts"), ("events", "data"), ("series", "labels"),
])
def test_schema_has_expected_columns(db_url, table, column):
    with psycopg.connect(db_url) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
            (table, column)).fetchone()
    assert found
