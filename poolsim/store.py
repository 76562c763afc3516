"""PostgreSQL side of poolsim: Miningcore's schema, batched writes (COPY) and reads for the API."""

from __future__ import annotations

from contextlib import contextmanager
from decimal import Decimal
from importlib import resources

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from poolsim.engine import Batch, Block

SHARE_COLUMNS = ("poolid, blockheight, difficulty, networkdifficulty, miner, worker, useragent, ipaddress, "
                 "source, created")
POOLSTATS_COLUMNS = ("poolid, connectedminers, poolhashrate, sharespersecond, networkhashrate, networkdifficulty, "
                     "lastnetworkblocktime, blockheight, connectedpeers, created")
MINERSTATS_COLUMNS = "poolid, miner, worker, hashrate, sharespersecond, created"
BLOCK_COLUMNS = ("id, poolid, blockheight, networkdifficulty, status, type, confirmationprogress, effort, "
                 "transactionconfirmationdata, miner, reward, source, hash, created")
BALANCE_CHANGE_COLUMNS = "poolid, address, amount, usage, tags, created"
PAYMENT_COLUMNS = "poolid, coin, address, amount, transactionconfirmationdata, created"


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached; the message names host and port for the operator."""


def describe_dsn(dsn: str) -> str:
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured DSN"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    try:
        conn = psycopg.connect(dsn, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DatabaseUnavailable(f"PostgreSQL at {describe_dsn(dsn)} is unreachable: {first}") from exc
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


def _configure(conn: psycopg.Connection) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


class Store:
    """One writer connection (used by the simulation thread) and a small pool for API reads."""

    def __init__(self, dsn: str, pool_id: str, readers: int = 8):
        self.dsn = dsn
        self.pool_id = pool_id
        self.writer = connect(dsn, autocommit=True)
        self.readers = ConnectionPool(dsn, min_size=1, max_size=readers, open=True, configure=_configure,
                                      kwargs={"autocommit": True}, name="poolsim-readers")

    def close(self) -> None:
        self.readers.close()
        self.writer.close()

    @contextmanager
    def read(self):
        with self.readers.connection() as conn:
            yield conn

    # -------------------------------------------------------------- schema and history
    def ensure_schema(self) -> None:
        sql = resources.files("poolsim").joinpath("schema.sql").read_text(encoding="utf-8")
        with self.writer.transaction():
            self.writer.execute(sql)

    def has_history(self) -> bool:
        row = self.writer.execute(
            "SELECT EXISTS (SELECT 1 FROM poolstats WHERE poolid = %(p)s) "
            "OR EXISTS (SELECT 1 FROM blocks WHERE poolid = %(p)s)", {"p": self.pool_id}).fetchone()
        return bool(row[0])

    def load_snapshot(self) -> dict:
        conn = self.writer
        cur = conn.cursor(row_factory=dict_row)
        blocks = []
        for r in cur.execute("SELECT * FROM blocks WHERE poolid = %s ORDER BY id", (self.pool_id,)):
            block = Block(id=r["id"], height=r["blockheight"], network_difficulty=r["networkdifficulty"],
                          nonce=r["transactionconfirmationdata"], miner=r["miner"],
                          created=r["created"].timestamp(), status=r["status"],
                          confirmation_progress=r["confirmationprogress"], effort=r["effort"],
                          reward=r["reward"] if r["reward"] is not None else Decimal("0E-12"), hash=r["hash"])
            block.classified = r["effort"] is not None or r["hash"] is not None or r["status"] != "pending"
            block.true_effort = r["effort"] or 0.0
            blocks.append(block)
        balances = {
            r["address"]: [r["amount"], r["created"].timestamp(), r["updated"].timestamp()]
            for r in cur.execute("SELECT * FROM balances WHERE poolid = %s", (self.pool_id,))
        }
        last = cur.execute("SELECT * FROM poolstats WHERE poolid = %s ORDER BY created DESC LIMIT 1",
                           (self.pool_id,)).fetchone()
        paid = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM payments WHERE poolid = %s",
                            (self.pool_id,)).fetchone()[0]
        effort = 0.0
        if blocks:
            newest = max(blocks, key=lambda b: b.created)
            effort = conn.execute(
                "SELECT COALESCE(SUM(difficulty * 256 / networkdifficulty), 0) FROM shares "
                "WHERE poolid = %s AND created > to_timestamp(%s)", (self.pool_id, newest.created)).fetchone()[0]
        return {"blocks": blocks, "balances": balances, "last_poolstats": last, "total_paid": paid,
                "round_effort": float(effort)}

    # -------------------------------------------------------------- writing
    def flush(self, batch: Batch, balances: list[tuple]) -> None:
        """Write a batch in one transaction; ``balances`` are the new absolute balance rows."""
        if batch.empty():
            return
        conn = self.writer
        with conn.transaction(), conn.cursor() as cur:
            if batch.share_cutoff is not None:
                cur.execute("DELETE FROM shares WHERE poolid = %s AND created < %s",
                            (self.pool_id, batch.share_cutoff))
            self._copy(cur, "shares", SHARE_COLUMNS, batch.shares)
            self._copy(cur, "poolstats", POOLSTATS_COLUMNS, batch.poolstats)
            self._copy(cur, "minerstats", MINERSTATS_COLUMNS, batch.minerstats)
            if batch.new_blocks:
                self._copy(cur, "blocks", BLOCK_COLUMNS,
                           [b.row(self.pool_id) for b in batch.new_blocks.values()])
                cur.execute("SELECT setval('blocks_id_seq', GREATEST((SELECT MAX(id) FROM blocks), 1))")
            if batch.dirty_blocks:
                cur.executemany(
                    "UPDATE blocks SET status = %s, confirmationprogress = %s, effort = %s, reward = %s, "
                    "hash = %s WHERE id = %s",
                    [(b.status, b.confirmation_progress, b.effort, b.reward, b.hash, b.id)
                     for b in batch.dirty_blocks.values()])
            self._copy(cur, "balance_changes", BALANCE_CHANGE_COLUMNS, batch.balance_changes)
            self._copy(cur, "payments", PAYMENT_COLUMNS, batch.payments)
            if balances:
                cur.executemany(
                    "INSERT INTO balances (poolid, address, amount, created, updated) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (poolid, address) DO UPDATE SET amount = EXCLUDED.amount, "
                    "updated = EXCLUDED.updated", balances)

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: str, columns: str, rows: list[tuple]) -> None:
        if not rows:
            return
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
