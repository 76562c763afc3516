"""``cleanup``: delete old statistics and, when asked, shares no block's payout can still read.

**Statistics.** ``poolstats`` and ``minerstats`` rows older than ``stats_retention_days`` (Miningcore's
own StatsRecorder does the same after ``statistics.cleanupDays``, 180 by default).

**Shares** (``include_shares``), per pool, only when it can be proven that no payout will read them.
Miningcore's PPLNS payout for a block reads the pool's shares backwards from the block's ``created``
time, scoring each ``difficulty × multiplier / networkdifficulty`` (the multiplier is 256 for Ergo),
until the scores add up to the window ``factor`` (``payoutSchemeConfig.factor``, default 2.0); it
does that when the block is confirmed, so every block that is neither confirmed nor orphaned
(``pending``, or any status Miningcore may add) will still read its window. The next block the pool
finds will read one too. Reading windows backwards is monotonic — a later block's window never
starts earlier than an earlier block's — so the oldest share any of them can read is where the
window of the *oldest* unpaid block (or, with none, of a block found now) is filled. The cut-off is
the older of that point and ``shares_retention_days`` ago; only shares strictly older are deleted.
To stay on the safe side:

* the window is computed ``WINDOW_SAFETY`` times larger than configured (rounding between float and
  Miningcore's decimal, shares with equal timestamps at its 50,000-row page boundaries);
* "a block found now" is placed ``NEXT_BLOCK_MARGIN`` in the past (a block row written late);
* when a window cannot be filled by the shares on file, every older share may be read: that pool's
  shares are all kept;
* the factor, payout scheme and coin come from Miningcore's ``config.json`` (``miningcore.configFile``):
  without it nothing about shares can be proven, and the action refuses before deleting anything;
  a pool that is not PPLNS (PROP reads every share since the last block), not Ergo, or not in the
  file keeps all its shares.

Deletes run in batches of ``batch_size`` rows (oldest first), each its own transaction, so the
table is never locked for long and an interrupted run leaves a consistent state. A dry run only
counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from agent.actions import ActionContext, ActionFailed
from agent.actions.backup import connect, describe_dsn, first_line, miningcore_dsn
from agent.config import Config

STATS_TABLES = ("poolstats", "minerstats")
DONE_STATUSES = ("confirmed", "orphaned")  # every other status still has a payout to come
DEFAULT_FACTOR = 2.0  # Miningcore's PPLNS default window
SHARE_MULTIPLIERS = {"ergo": 256.0}  # ErgoPayoutHandler.AdjustShareDifficulty
WINDOW_SAFETY = 1.10
NEXT_BLOCK_MARGIN = timedelta(hours=1)
PROGRESS_EVERY_SECONDS = 5.0

# distinct pool ids through the (poolid, ...) index: a loose index scan, not a full-table DISTINCT
POOL_IDS_SQL = """
WITH RECURSIVE p AS (
    (SELECT poolid FROM {table} ORDER BY poolid LIMIT 1)
    UNION ALL
    SELECT (SELECT t.poolid FROM {table} t WHERE t.poolid > p.poolid ORDER BY t.poolid LIMIT 1)
    FROM p WHERE p.poolid IS NOT NULL
)
SELECT poolid FROM p WHERE poolid IS NOT NULL
"""

# where the PPLNS window read backwards from %(t)s is filled: the newest share at which the scores
# (newest first) reach the window; None when the shares on file cannot fill it
WINDOW_START_SQL = """
SELECT created FROM (
    SELECT created, sum(difficulty * %(multiplier)s / NULLIF(networkdifficulty, 0))
               OVER (ORDER BY created DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS score
    FROM shares WHERE poolid = %(pool)s AND created <= %(t)s
) w
WHERE score >= %(window)s
ORDER BY created DESC
LIMIT 1
"""


@dataclass(frozen=True)
class PoolRules:
    """What a pool's payout reads, from Miningcore's config.json; ``problem`` says why it is unknown."""

    pool_id: str
    scheme: str = ""
    factor: float = DEFAULT_FACTOR
    multiplier: float = 0.0
    problem: str | None = None


@dataclass
class Target:
    table: str
    pool: str
    cutoff: datetime
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0


@dataclass
class SharePlan:
    targets: list[Target] = field(default_factory=list)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)


def _key(obj: Any, name: str) -> Any:
    """Miningcore reads its config case-insensitively (Newtonsoft): so do we."""
    if not isinstance(obj, dict):
        return None
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    return None


def read_pool_rules(config: Config) -> dict[str, PoolRules]:
    """Each pool's payout scheme, PPLNS factor and share multiplier, or ``ActionFailed`` when unknowable."""
    path = config.pool.miningcore.config_file
    if not path:
        raise ActionFailed("include_shares needs Miningcore's config.json to know each pool's payout scheme and "
                           "PPLNS window: set miningcore.configFile in pool.json (nothing was deleted)")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ActionFailed(f"cannot read Miningcore's config {path}: {exc.strerror or exc} (nothing was deleted)"
                           ) from None
    except ValueError as exc:
        raise ActionFailed(f"Miningcore's config {path} is not valid JSON: {exc} (nothing was deleted)") from None
    pools = _key(doc, "pools")
    if not isinstance(pools, list):
        raise ActionFailed(f"Miningcore's config {path} has no pools list (nothing was deleted)")
    rules: dict[str, PoolRules] = {}
    for pool in pools:
        pool_id = _key(pool, "id")
        if not isinstance(pool_id, str):
            continue
        payments = _key(pool, "paymentProcessing") or {}
        scheme = str(_key(payments, "payoutScheme") or "")
        coin = str(_key(pool, "coin") or "")
        factor_raw = _key(_key(payments, "payoutSchemeConfig"), "factor")
        try:
            factor = float(factor_raw) if factor_raw is not None else DEFAULT_FACTOR
        except (TypeError, ValueError):
            factor = DEFAULT_FACTOR
        if factor <= 0:
            factor = DEFAULT_FACTOR
        problem = None
        if scheme.upper() != "PPLNS":
            problem = (f"payout scheme {scheme or '(none)'} is not PPLNS: its payouts may read every share since "
                       "the last block, so none is provably unneeded")
        elif coin.lower() not in SHARE_MULTIPLIERS:
            problem = f"coin {coin or '(none)'}: only Ergo pools' PPLNS share weighting is known to poolwarden"
        rules[pool_id] = PoolRules(pool_id, scheme, factor, SHARE_MULTIPLIERS.get(coin.lower(), 0.0), problem)
    return rules


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _pool_ids(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(sql.SQL(POOL_IDS_SQL).format(table=sql.Identifier(table)))]


def _share_pools(conn: psycopg.Connection, rules: dict[str, PoolRules]) -> list[str]:
    """Pools that have shares: those in Miningcore's config, in ``blocks`` or in ``poolstats``, checked with
    an index probe each. A DISTINCT over ``shares`` could scan the whole table (the partitioned variant has
    no index that starts with poolid); a pool found nowhere else keeps its shares anyway."""
    candidates = set(rules)
    for table in ("blocks", "poolstats"):
        if _exists(conn, table):
            candidates.update(_pool_ids(conn, table))
    exists = "SELECT EXISTS (SELECT 1 FROM shares WHERE poolid = %s)"
    return sorted(p for p in candidates if conn.execute(exists, (p,)).fetchone()[0])


def window_start(conn: psycopg.Connection, pool: str, t: datetime, window: float,
                 multiplier: float) -> datetime | None:
    row = conn.execute(WINDOW_START_SQL, {"pool": pool, "t": t, "window": window,
                                          "multiplier": multiplier}).fetchone()
    return row[0] if row else None


def plan_shares(conn: psycopg.Connection, rules: dict[str, PoolRules], now: datetime,
                retention_days: int) -> SharePlan:
    """The cut-off per pool, and why; pools whose shares cannot be judged get no target."""
    plan = SharePlan()
    floor = now - timedelta(days=retention_days)
    for pool in _share_pools(conn, rules):
        rule = rules.get(pool)
        info: dict[str, Any] = {}
        plan.pools[pool] = info
        if rule is None:
            info["kept_all"] = "the pool is not in Miningcore's config.json: its payout rules are unknown"
            continue
        if rule.problem:
            info["kept_all"] = rule.problem
            continue
        unpaid = conn.execute(
            "SELECT count(*), min(created) FROM blocks WHERE poolid = %s AND status <> ALL(%s)",
            (pool, list(DONE_STATUSES))).fetchone() if _exists(conn, "blocks") else (0, None)
        next_block = now - NEXT_BLOCK_MARGIN
        oldest_reader = min(unpaid[1], next_block) if unpaid[1] is not None else next_block
        window = rule.factor * WINDOW_SAFETY
        start = window_start(conn, pool, oldest_reader, window, rule.multiplier)
        info.update({"unpaid_blocks": unpaid[0], "oldest_unpaid_block": _iso(unpaid[1]),
                     "oldest_reader": _iso(oldest_reader), "factor": rule.factor, "window_used": window,
                     "multiplier": rule.multiplier, "window_start": _iso(start)})
        if start is None:
            info["kept_all"] = (f"the PPLNS window read from {_iso(oldest_reader)} is not filled by the shares on "
                                "file: every older share may still be read")
            continue
        cutoff = min(floor, start)
        info["cutoff"] = _iso(cutoff)
        info["cutoff_from"] = "retention" if cutoff == floor else "PPLNS window"
        plan.targets.append(Target("shares", pool, cutoff))
    return plan


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _count(conn: psycopg.Connection, target: Target) -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE poolid = %s AND created < %s").format(sql.Identifier(target.table))
    return conn.execute(query, (target.pool, target.cutoff)).fetchone()[0]


def _delete(ctx: ActionContext, conn: psycopg.Connection, target: Target, batch_size: int) -> None:
    """Oldest first, ``batch_size`` rows per statement; autocommit makes each batch its own transaction.
    The outer conditions repeat the inner ones, so a batch can only ever remove rows past the cut-off."""
    table = sql.Identifier(target.table)
    query = sql.SQL(
        "DELETE FROM {t} WHERE poolid = %(pool)s AND created < %(cutoff)s AND ctid = ANY(ARRAY("
        "SELECT ctid FROM {t} WHERE poolid = %(pool)s AND created < %(cutoff)s ORDER BY created LIMIT %(n)s))"
    ).format(t=table)
    args = {"pool": target.pool, "cutoff": target.cutoff, "n": batch_size}
    t0 = last_report = time.monotonic()
    while True:
        cur = conn.execute(query, args)
        target.batches += 1
        target.rows += max(cur.rowcount, 0)
        if cur.rowcount < batch_size:
            break
        if time.monotonic() - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = time.monotonic()
            ctx.say(f"{target.table} ({target.pool}): {target.rows:,} rows deleted so far")
    target.seconds = time.monotonic() - t0


def run_cleanup(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    dry_run = params["dry_run"]
    batch_size = params["batch_size"]
    dsn = miningcore_dsn(ctx.config)
    rules = read_pool_rules(ctx.config) if params["include_shares"] else None
    started = time.monotonic()
    with connect(dsn, autocommit=True, purpose="cleanup") as conn:
        now = conn.execute("SELECT now()").fetchone()[0]
        stats_cutoff = now - timedelta(days=params["stats_retention_days"])
        targets: list[Target] = []
        missing, considered = [], []
        for table in STATS_TABLES:
            if not _exists(conn, table):
                missing.append(table)
                continue
            considered.append(table)
            targets += [Target(table, pool, stats_cutoff) for pool in _pool_ids(conn, table)]
        ctx.say(f"{'dry run: counting' if dry_run else 'deleting'} poolstats and minerstats older than "
                f"{params['stats_retention_days']} days ({_iso(stats_cutoff)}) in {describe_dsn(dsn)}")
        shares: dict[str, Any] = {"included": rules is not None}
        if rules is not None:
            if not _exists(conn, "shares"):
                missing.append("shares")
            else:
                considered.append("shares")
                plan = plan_shares(conn, rules, now, params["shares_retention_days"])
                shares["pools"] = plan.pools
                for pool, info in plan.pools.items():
                    if "kept_all" in info:
                        ctx.say(f"shares of pool {pool}: all kept: {info['kept_all']}")
                    else:
                        ctx.say(f"shares of pool {pool}: {info['unpaid_blocks']} unpaid block(s); the oldest share "
                                f"a payout can read is from {info['window_start']}; "
                                f"{'counting' if dry_run else 'deleting'} shares older than {info['cutoff']}")
                targets += plan.targets
        try:
            for target in targets:
                if dry_run:
                    target.rows = _count(conn, target)
                else:
                    _delete(ctx, conn, target, batch_size)
        except psycopg.Error as exc:
            done = sum(t.rows for t in targets)
            raise ActionFailed(f"clean-up stopped on {target.table} ({target.pool}): {first_line(exc)}; "
                               f"{done:,} rows were {'counted' if dry_run else 'deleted'} before",
                               {"tables": _per_table(targets, considered)}) from None
    duration = time.monotonic() - started
    tables = _per_table(targets, considered)
    for table, info in tables.items():
        ctx.say(f"{table}: {info['rows']:,} rows {'would go' if dry_run else 'deleted'}"
                + ("" if dry_run else f" in {info['batches']} batch(es), {info['seconds']:.1f} s"))
    if rules is not None:
        for pool, info in shares.get("pools", {}).items():
            info["rows"] = sum(t.rows for t in targets if t.table == "shares" and t.pool == pool)
    verb = "would delete" if dry_run else "deleted"
    counted = ", ".join(f"{info['rows']:,} {table}" for table, info in tables.items()) or "nothing"
    summary = (("dry run: " if dry_run else "") + f"{verb} {counted} in {duration:.1f} s"
               + ("" if rules is not None else " (shares not included)"))
    return {"summary": summary, "dry_run": dry_run, "now": _iso(now), "stats_cutoff": _iso(stats_cutoff),
            "tables": tables, "shares": shares, "missing_tables": missing, "batch_size": batch_size,
            "duration_seconds": round(duration, 3)}


def _per_table(targets: list[Target], tables: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {t: {"rows": 0, "batches": 0, "seconds": 0.0, "pools": {}} for t in tables}
    for target in targets:
        info = out.setdefault(target.table, {"rows": 0, "batches": 0, "seconds": 0.0, "pools": {}})
        info["rows"] += target.rows
        info["batches"] += target.batches
        info["seconds"] = round(info["seconds"] + target.seconds, 3)
        info["pools"][target.pool] = {"rows": target.rows, "cutoff": _iso(target.cutoff)}
    return out
