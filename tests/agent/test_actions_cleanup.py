"""cleanup against a real PostgreSQL in Miningcore's schema: statistics past retention go, and a share goes
only when no pending block's (or the next block's) PPLNS window can still read it.

The shares are laid out so the windows are easy to reason about: every share scores exactly 1/128
(difficulty 1 × 256 / network difficulty 32768), so a PPLNS window of factor 2 is the 256 newest shares
before a block, and sums are exact in floating point.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg
import pytest

from agent.actions import ActionFailed
from agent.actions.cleanup import WINDOW_SAFETY, run_cleanup
from agent.contract import ParamError, validate_params
from tests.agent.test_actions_backup import action_context, seed_miningcore

SCORE = 1 / 128
FACTOR = 2.0
TRUE_WINDOW = int(FACTOR / SCORE)  # 256 shares: what Miningcore reads
SAFE_WINDOW = math.ceil(FACTOR * WINDOW_SAFETY / SCORE)  # what poolwarden keeps (a little more)
PPLNS = {"payoutScheme": "PPLNS", "payoutSchemeConfig": {"factor": FACTOR}}
MC_CONFIG = {"pools": [{"id": pid, "coin": "ergo", "paymentProcessing": PPLNS}
                       for pid in ("ergo1", "ergo2", "ergo3", "ergo6")]
             + [{"id": "ergo4", "coin": "ergo", "paymentProcessing": {"payoutScheme": "PROP"}}]}


def share_time(now: datetime, i: int, hours_apart: int) -> datetime:
    return now - timedelta(minutes=1) - timedelta(hours=i * hours_apart)


class Layout:
    """Miningcore's schema with constructed shares, blocks and statistics; ``now`` is the test's clock."""

    def __init__(self, dsn: str, partitioned: bool = False):
        self.dsn = dsn
        self.now = datetime.now(UTC).replace(microsecond=0)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(resources.files("poolsim").joinpath("schema.sql").read_text(encoding="utf-8"))
            if partitioned:  # Miningcore's createdb_postgresql_11_appendix.sql: one partition per pool
                conn.execute("DROP TABLE shares")
                conn.execute("CREATE TABLE shares (poolid TEXT NOT NULL, blockheight BIGINT NOT NULL, "
                             "difficulty DOUBLE PRECISION NOT NULL, networkdifficulty DOUBLE PRECISION NOT NULL, "
                             "miner TEXT NOT NULL, worker TEXT NULL, useragent TEXT NULL, ipaddress TEXT NOT NULL, "
                             "source TEXT NULL, created TIMESTAMPTZ NOT NULL) PARTITION BY LIST (poolid)")
                conn.execute("CREATE INDEX idx_shares_created ON shares(created)")
                conn.execute("CREATE INDEX idx_shares_miner_difficulty ON shares(miner, difficulty)")
                for n in range(1, 7):
                    conn.execute(f"CREATE TABLE shares_ergo{n} PARTITION OF shares FOR VALUES IN ('ergo{n}')")

    def shares(self, pool: str, count: int, hours_apart: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO shares (poolid, blockheight, difficulty, networkdifficulty, miner, worker, useragent, "
                "ipaddress, source, created) SELECT %s, 1000, 1.0, 32768.0, 'miner' || (i %% 5), 'rig', 'lolMiner', "
                "'10.0.0.1', NULL, %s - make_interval(hours => i * %s) FROM generate_series(0, %s - 1) i",
                (pool, self.now - timedelta(minutes=1), hours_apart, count))

    def block(self, pool: str, status: str, created: datetime, height: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO blocks (poolid, blockheight, networkdifficulty, status, "
                         "transactionconfirmationdata, created) VALUES (%s, %s, 32768, %s, 'nonce', %s)",
                         (pool, height, status, created))

    def stats(self, pool: str, hours: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO poolstats (poolid, created) SELECT %s, %s - make_interval(hours => i) - "
                         "interval '30 minutes' FROM generate_series(0, %s - 1) i", (pool, self.now, hours))
            conn.execute("INSERT INTO minerstats (poolid, miner, worker, created) SELECT %s, 'm' || w, '', "
                         "%s - make_interval(hours => i) - interval '30 minutes' "
                         "FROM generate_series(0, %s - 1) i, generate_series(1, 2) w", (pool, self.now, hours))

    def share_ages(self, pool: str, hours_apart: int) -> set[int]:
        """The indexes ``i`` (age in steps) of the shares still on file."""
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT created FROM shares WHERE poolid = %s", (pool,)).fetchall()
        base = self.now - timedelta(minutes=1)
        return {round((base - r[0]).total_seconds() / 3600 / hours_apart) for r in rows}

    def count(self, table: str, pool: str | None = None) -> int:
        with psycopg.connect(self.dsn) as conn:
            if pool is None:
                return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            return conn.execute(f"SELECT count(*) FROM {table} WHERE poolid = %s", (pool,)).fetchone()[0]


@pytest.fixture(params=["plain", "partitioned"])
def layout(fresh_db, request):
    """Five pools, each showing one rule:

    ergo1  hourly shares for 100 days, a pending block 1200 h ago (and a confirmed and an orphaned one
           further back, which read nothing any more): its window decides the cut-off;
    ergo2  a share every 6 h, a pending block 90 days ago with fewer than a window of shares before it:
           every share is kept;
    ergo3  a share every 6 h for 100 days, no unpaid block: the next block's window reaches ~70 days back;
    ergo4  PROP: nothing is provably unneeded;
    ergo5  not in Miningcore's config: unknown rules, nothing deleted;
    ergo6  hourly shares, no unpaid block: the retention of 30 days decides.

    Once with Miningcore's plain ``shares`` table, once with its partitioned variant.
    """
    lay = Layout(fresh_db, partitioned=request.param == "partitioned")
    lay.shares("ergo1", 2400, 1)
    lay.block("ergo1", "pending", share_time(lay.now, 1200, 1), 1200)
    lay.block("ergo1", "confirmed", share_time(lay.now, 1900, 1), 1100)
    lay.block("ergo1", "orphaned", share_time(lay.now, 2200, 1), 1000)
    lay.shares("ergo2", 400, 6)
    lay.block("ergo2", "pending", share_time(lay.now, 360, 6), 500)
    lay.shares("ergo3", 400, 6)
    lay.block("ergo3", "confirmed", share_time(lay.now, 390, 6), 400)
    lay.shares("ergo4", 400, 6)
    lay.shares("ergo5", 400, 6)
    lay.block("ergo5", "pending", share_time(lay.now, 200, 6), 600)
    lay.shares("ergo6", 2400, 1)
    lay.stats("ergo1", 200 * 24)
    return lay


@pytest.fixture
def mc_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MC_CONFIG))
    return str(path)


PARAMS = {"dry_run": False, "include_shares": True, "stats_retention_days": 90, "shares_retention_days": 30,
          "batch_size": 100}


def test_cleanup_never_deletes_a_share_an_unpaid_block_needs(layout, mc_config):
    ctx = action_context(layout.dsn, config_file=mc_config)
    result = run_cleanup(ctx, validate_params("cleanup", PARAMS))

    # ergo1: the pending block 1200 h ago reads the 256 shares before it; everything from the block's
    # window on survives, everything older than the (slightly larger) safe window is gone
    kept = layout.share_ages("ergo1", 1)
    assert set(range(1200, 1200 + TRUE_WINDOW)) <= kept
    assert kept == set(range(0, 1200 + SAFE_WINDOW))
    info = result["shares"]["pools"]["ergo1"]
    assert info["unpaid_blocks"] == 1 and info["cutoff_from"] == "PPLNS window" and info["rows"] == 2400 - len(kept)
    # shares between 30 days (the retention) and the window: a retention-only rule would have lost them
    assert set(range(30 * 24, 1200 + TRUE_WINDOW)) <= kept

    # ergo2: the window cannot be filled: all kept
    assert layout.count("shares", "ergo2") == 400
    assert "not filled" in result["shares"]["pools"]["ergo2"]["kept_all"]
    # ergo3: no unpaid block: the next block's window (from an hour ago) keeps ~70 days of shares
    assert layout.share_ages("ergo3", 6) == set(range(0, 1 + SAFE_WINDOW))
    # ergo4 (PROP) and ergo5 (not configured): untouched
    assert layout.count("shares", "ergo4") == 400 and layout.count("shares", "ergo5") == 400
    assert "PROP is not PPLNS" in result["shares"]["pools"]["ergo4"]["kept_all"]
    assert "not in Miningcore's config.json" in result["shares"]["pools"]["ergo5"]["kept_all"]
    # ergo6: the window is short, the 30 days of retention decide
    assert layout.share_ages("ergo6", 1) == set(range(0, 30 * 24))
    assert result["shares"]["pools"]["ergo6"]["cutoff_from"] == "retention"

    # statistics: 90 days kept
    assert layout.count("poolstats") == 90 * 24 and layout.count("minerstats") == 90 * 24 * 2
    tables = result["tables"]
    assert tables["poolstats"]["rows"] == 110 * 24 and tables["minerstats"]["rows"] == 110 * 24 * 2
    deleted_shares = (2400 - (1200 + SAFE_WINDOW)) + (400 - (1 + SAFE_WINDOW)) + (2400 - 30 * 24)
    assert tables["shares"]["rows"] == deleted_shares
    assert tables["shares"]["batches"] >= deleted_shares // 100  # in batches of 100
    assert result["summary"].startswith(f"deleted {110 * 24:,} poolstats, {110 * 24 * 2:,} minerstats, "
                                        f"{deleted_shares:,} shares")
    assert any("shares of pool ergo1: 1 unpaid block(s)" in line for line in ctx.lines)


def test_dry_run_counts_exactly_what_a_real_run_deletes_and_deletes_nothing(layout, mc_config):
    before = {t: layout.count(t) for t in ("shares", "poolstats", "minerstats")}
    dry = run_cleanup(action_context(layout.dsn, config_file=mc_config),
                      validate_params("cleanup", {**PARAMS, "dry_run": True}))
    assert {t: layout.count(t) for t in before} == before
    assert dry["summary"].startswith("dry run: would delete") and dry["dry_run"] is True
    real = run_cleanup(action_context(layout.dsn, config_file=mc_config), validate_params("cleanup", PARAMS))
    for table in before:
        assert dry["tables"][table]["rows"] == real["tables"][table]["rows"] > 0
        assert layout.count(table) == before[table] - real["tables"][table]["rows"]


def test_without_include_shares_no_share_is_touched(layout):
    before = layout.count("shares")
    result = run_cleanup(action_context(layout.dsn),
                         validate_params("cleanup", {**PARAMS, "include_shares": False, "stats_retention_days": 7}))
    assert layout.count("shares") == before and "shares" not in result["tables"]
    assert layout.count("poolstats") == 7 * 24 and "(shares not included)" in result["summary"]


def test_shares_need_miningcore_config_and_nothing_is_deleted_without_it(layout, tmp_path):
    before = {t: layout.count(t) for t in ("shares", "poolstats")}
    with pytest.raises(ActionFailed, match=r"set miningcore.configFile in pool.json \(nothing was deleted\)"):
        run_cleanup(action_context(layout.dsn), validate_params("cleanup", PARAMS))
    broken = tmp_path / "broken.json"
    broken.write_text("{\"pools\": [")
    with pytest.raises(ActionFailed, match="is not valid JSON"):
        run_cleanup(action_context(layout.dsn, config_file=str(broken)), validate_params("cleanup", PARAMS))
    assert {t: layout.count(t) for t in before} == before


def test_on_poolsim_history_pending_blocks_keep_every_share(fresh_db, tmp_path):
    """poolsim's few hours of history: its pending blocks' windows are not filled, so no share may go."""
    seed_miningcore(fresh_db)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"pools": [{"id": "ergo1", "coin": "ergo",
                                             "paymentProcessing": {"payoutScheme": "PPLNS"}}]}))
    with psycopg.connect(fresh_db) as conn:
        before = conn.execute("SELECT count(*) FROM shares").fetchone()[0]
    result = run_cleanup(action_context(fresh_db, config_file=str(config)),
                         validate_params("cleanup", {**PARAMS, "shares_retention_days": 7}))
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM shares").fetchone()[0] == before
    pool = result["shares"]["pools"]["ergo1"]
    assert pool["unpaid_blocks"] >= 1 and "kept_all" in pool and pool["factor"] == 2.0


@pytest.mark.parametrize(("params", "message"), [
    ({"stats_retention_days": 1}, "stats_retention_days: must be at least 7"),
    ({"shares_retention_days": 0}, "shares_retention_days: must be at least 7"),
    ({"batch_size": 10}, "batch_size: must be at least 100"),
    ({"batch_size": 10**9}, "batch_size: must be at most 1000000"),
    ({"dry_run": "no"}, "dry_run: must be true or false"),
    ({"include_shares": 1}, "include_shares: must be true or false"),
    ({"tables": ["shares"]}, "tables: is not a parameter of cleanup"),
])
def test_bad_parameters_are_refused_with_a_clear_message(params, message):
    with pytest.raises(ParamError, match=message):
        validate_params("cleanup", params)
