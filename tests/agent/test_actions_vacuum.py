"""vacuum and vacuum_full against a real PostgreSQL holding poolsim's Miningcore data."""

from __future__ import annotations

import psycopg
import pytest

from agent.actions import ActionFailed
from agent.actions import vacuum as vacuum_module
from agent.actions.vacuum import run_vacuum, run_vacuum_full
from agent.contract import MININGCORE_TABLES, ParamError, validate_params
from tests.agent.test_actions_backup import action_context, seed_miningcore


def delete_rows(dsn: str, table: str, fraction: float) -> int:
    """Delete a share of a table's rows and make the backend publish its statistics before returning.
    Autovacuum is switched off on the table first, so the dead rows wait for the action."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        leaves = [r[0] for r in conn.execute(
            "SELECT relid::regclass::text FROM pg_partition_tree(%s::regclass) WHERE isleaf", (table,))] or [table]
        for leaf in leaves:
            conn.execute(f"ALTER TABLE {leaf} SET (autovacuum_enabled = off)")
        cur = conn.execute(f"DELETE FROM {table} WHERE random() < %s", (fraction,))
        conn.execute("SELECT pg_stat_force_next_flush()")  # flushed before the server answers this one
        return cur.rowcount


def dead_tuples(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = %s", (table,)).fetchone()[0]


def test_vacuum_reports_dead_tuples_before_and_after(fresh_db):
    seed_miningcore(fresh_db)
    deleted_shares = delete_rows(fresh_db, "shares", 0.5)
    deleted_stats = delete_rows(fresh_db, "minerstats", 0.3)
    assert deleted_shares > 1000 and deleted_stats > 100
    ctx = action_context(fresh_db)
    result = run_vacuum(ctx, validate_params("vacuum", {"tables": ["minerstats", "shares"]}))

    assert list(result["tables"]) == ["shares", "minerstats"]  # the catalogue's order
    shares = result["tables"]["shares"]
    assert shares["dead_tuples_before"] >= deleted_shares
    assert shares["dead_tuples_after"] == 0 and result["tables"]["minerstats"]["dead_tuples_after"] == 0
    assert result["tables"]["minerstats"]["dead_tuples_before"] >= deleted_stats
    assert shares["seconds"] >= 0 and shares["live_tuples_after"] > 1000
    assert result["dead_tuples_before"] >= deleted_shares + deleted_stats and result["dead_tuples_after"] == 0
    assert result["summary"].startswith("VACUUM (ANALYZE) on 2 table(s)")
    assert any(line.endswith("s") and "shares: dead tuples" in line for line in ctx.lines)
    assert dead_tuples(fresh_db, "shares") == 0  # what PostgreSQL itself now says
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL FROM pg_stat_user_tables "
                            "WHERE relname = 'shares'").fetchone()[0]


def test_vacuum_of_all_tables_skips_the_ones_this_database_lacks(fresh_db):
    seed_miningcore(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP TABLE miner_settings")
    result = run_vacuum(action_context(fresh_db), validate_params("vacuum", {}))
    assert set(result["tables"]) == set(MININGCORE_TABLES) - {"miner_settings"}
    assert result["skipped"] == {"miner_settings": "no such table in this database"}
    assert "skipped miner_settings" in result["summary"]


def test_a_role_that_does_not_own_the_tables_is_told_not_given_a_false_success(fresh_db):
    """PostgreSQL skips a table its caller does not own with only a WARNING; the action says so."""
    seed_miningcore(fresh_db)
    role = f"reader_{abs(hash(fresh_db)) % 10**8}"
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        reader_dsn = fresh_db.replace("postgresql://postgres@", f"postgresql://{role}@")
        with pytest.raises(ActionFailed) as info:
            run_vacuum(action_context(reader_dsn), validate_params("vacuum", {"tables": ["shares"]}))
        assert f"the database role {role} does not own it" in info.value.message
        assert info.value.details["tables"] == {}
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            conn.execute(f"DROP ROLE {role}")


def test_vacuum_full_gives_space_back_and_warns_about_the_lock(fresh_db):
    seed_miningcore(fresh_db)
    delete_rows(fresh_db, "shares", 0.9)
    ctx = action_context(fresh_db)
    result = run_vacuum_full(ctx, validate_params("vacuum_full", {"tables": ["shares"]}))
    shares = result["tables"]["shares"]
    assert shares["size_bytes_after"] < shares["size_bytes_before"] * 0.5
    assert result["freed_bytes"] == shares["size_bytes_before"] - shares["size_bytes_after"] > 0
    assert shares["dead_tuples_after"] == 0
    assert result["command"] == "VACUUM (FULL, ANALYZE)" and "given back to the disk" in result["summary"]
    assert "LOCKS each table" in ctx.lines[0] and any("shares: LOCKED" in line for line in ctx.lines)


def test_vacuum_full_gives_up_on_a_table_it_cannot_lock(fresh_db, monkeypatch):
    seed_miningcore(fresh_db)
    monkeypatch.setattr(vacuum_module, "FULL_LOCK_TIMEOUT", "300ms")
    reader = psycopg.connect(fresh_db)
    reader.execute("SELECT 1 FROM shares LIMIT 1")  # an open transaction holds a lock on shares
    try:
        with pytest.raises(ActionFailed) as exc:
            run_vacuum_full(action_context(fresh_db), validate_params("vacuum_full", {"tables": ["shares", "blocks"]}))
    finally:
        reader.close()
    assert exc.value.message.startswith("VACUUM (FULL, ANALYZE) failed on shares")
    assert "could not lock it within 300ms" in exc.value.details["failed"]["shares"]
    assert "blocks" in exc.value.details["tables"]  # the other table was still done


@pytest.mark.parametrize(("action", "params", "message"), [
    ("vacuum", {"tables": ["shares; DROP TABLE blocks"]}, "tables: unknown 'shares; DROP TABLE blocks'"),
    ("vacuum", {"tables": []}, "tables: must be a non-empty list"),
    ("vacuum", {"tables": "shares"}, "tables: must be a non-empty list"),
    ("vacuum_full", {}, "tables: is required"),
    ("vacuum_full", {"tables": ["pg_authid"]}, "tables: unknown 'pg_authid'"),
])
def test_bad_parameters_are_refused_with_a_clear_message(action, params, message):
    with pytest.raises(ParamError, match=message):
        validate_params(action, params)


def test_without_a_database_configured_it_says_what_to_set():
    with pytest.raises(ActionFailed, match="miningcore.database.dsn"):
        run_vacuum(action_context(None), validate_params("vacuum", {}))


def test_vacuum_of_partitioned_shares_counts_every_partition(fresh_db):
    """Miningcore's partitioned shares variant: the parent is vacuumed, the figures are its partitions'."""
    from tests.agent.test_actions_cleanup import Layout

    layout = Layout(fresh_db, partitioned=True)
    layout.shares("ergo1", 3000, 1)
    layout.shares("ergo2", 3000, 1)
    deleted = delete_rows(fresh_db, "shares", 0.5)
    result = run_vacuum(action_context(fresh_db), validate_params("vacuum", {"tables": ["shares"]}))
    shares = result["tables"]["shares"]
    assert shares["dead_tuples_before"] == deleted and shares["dead_tuples_after"] == 0
    assert shares["live_tuples_after"] == 6000 - deleted and shares["size_bytes_after"] > 0
