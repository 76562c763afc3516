"""A pool's recent blocks and payments, from the block/payment events the agent sends.

Each block has several events over its life (``block_found``, then ``block_confirmed`` or
``block_orphaned``), each carrying the block's fields as Miningcore showed them at that time; the
newest event of a block gives its current status.
"""

from __future__ import annotations

from typing import Any

import psycopg

from panel.hosts.overview import iso

BLOCK_KINDS = ["block_found", "block_confirmed", "block_orphaned"]
STATUS_LEVEL = {"confirmed": "ok", "pending": "warn", "orphaned": "crit"}


def recent_blocks(conn: psycopg.Connection, host_id: int, pool: str, limit: int = 25) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM ("
        "  SELECT DISTINCT ON (data->>'height', data->>'nonce') kind, ts, data FROM events"
        "  WHERE host_id = %s AND kind = ANY(%s) AND data->>'pool' = %s"
        "  ORDER BY data->>'height', data->>'nonce', ts DESC, kind <> 'block_found' DESC"
        ") AS newest ORDER BY (data->>'height')::bigint DESC NULLS LAST LIMIT %s",
        (host_id, BLOCK_KINDS, pool, limit),
    ).fetchall()
    blocks = []
    for row in rows:
        data = row["data"]
        status = data.get("status") or {"block_confirmed": "confirmed", "block_orphaned": "orphaned"}.get(
            row["kind"], "pending")
        blocks.append({
            "height": data.get("height"),
            "status": status,
            "level": STATUS_LEVEL.get(status, "unknown"),
            "effort": data.get("effort"),
            "reward": data.get("reward"),
            "miner": data.get("miner"),
            "hash": data.get("hash"),
            "created": data.get("created"),
            "updated": iso(row["ts"]),
        })
    return blocks


def recent_payments(conn: psycopg.Connection, host_id: int, pool: str, limit: int = 25) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT ts, data FROM events WHERE host_id = %s AND kind = 'payment_sent' AND data->>'pool' = %s "
        "ORDER BY ts DESC LIMIT %s",
        (host_id, pool, limit),
    ).fetchall()
    return [{"ts": iso(row["ts"]), "address": row["data"].get("address"), "amount": row["data"].get("amount"),
             "tx": row["data"].get("tx")} for row in rows]
