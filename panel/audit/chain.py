"""The hash chain of the audit log: canonical row content, appending a link, verifying the chain.

A row's hash is ``sha256(canonical_json(content) + prev_hash)`` where the content is every column
except ``id``, ``prev_hash`` and ``hash``. The id (the row's position) is left out on purpose: the
links alone fix the order, so a row moved elsewhere still hashes correctly and ``verify`` can say
"moved" instead of "changed".
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Json

GENESIS_HASH = "0" * 64
CONTENT_FIELDS = ("ts", "actor", "address", "action", "object_type", "object_id", "before", "after", "details")
VERIFY_BATCH = 2000


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept, NaN refused: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types, so what is stored reads back (and hashes) identically.

    Datetimes become ISO strings, sets sorted lists, NaN/infinity and other objects their ``str``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=canonical_json)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def ts_text(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def content_of(row: dict[str, Any]) -> dict[str, Any]:
    content = {name: row[name] for name in CONTENT_FIELDS}
    content["ts"] = ts_text(row["ts"])
    return content


def row_hash(content: dict[str, Any], prev_hash: str) -> str:
    return hashlib.sha256((canonical_json(content) + prev_hash).encode("utf-8")).hexdigest()


def append(conn: psycopg.Connection, *, actor: str, address: str | None, action: str, object_type: str | None,
           object_id: str | None, before: Any, after: Any, details: dict[str, Any]) -> dict[str, Any]:
    """Append one row, in the connection's current transaction (or a new one); returns the row."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        head = cur.execute(
            "SELECT last_id, last_hash, clock_timestamp() AS now FROM audit_chain_head FOR UPDATE"
        ).fetchone()
        if head is None:
            raise RuntimeError("audit_chain_head is empty: the audit migration did not complete")
        row = {
            "id": head["last_id"] + 1, "ts": head["now"], "actor": actor, "address": address, "action": action,
            "object_type": object_type, "object_id": object_id,
            "before": json_safe(before), "after": json_safe(after), "details": json_safe(details) or {},
            "prev_hash": head["last_hash"],
        }
        row["hash"] = row_hash(content_of(row), row["prev_hash"])
        dumps = canonical_json
        cur.execute(
            "INSERT INTO audit_log (id, ts, actor, address, action, object_type, object_id, before, after,"
            " details, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (row["id"], row["ts"], actor, address, action, object_type, object_id,
             None if row["before"] is None else Json(row["before"], dumps),
             None if row["after"] is None else Json(row["after"], dumps),
             Json(row["details"], dumps), row["prev_hash"], row["hash"]),
        )
    return row


# -- verification ---------------------------------------------------------------------------------


@dataclass
class Problem:
    kind: str     # changed, removed, inserted, reordered, head
    row_id: int | None
    message: str


@dataclass
class Verification:
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.intact:
            if not self.rows:
                return "audit chain intact: no rows yet"
            return (f"audit chain intact: {self.rows} rows, ids {self.first_id}..{self.last_id}, "
                    f"head {self.last_hash[:16]}")
        return f"audit chain TAMPERED: {len(self.problems)} problems in {self.rows} rows"


def _rows(conn: psycopg.Connection) -> Iterator[dict[str, Any]]:
    """All rows by id, in batches (keyset paging keeps memory flat on a long log)."""
    after = 0
    with conn.cursor(row_factory=dict_row) as cur:
        while True:
            batch = cur.execute(
                "SELECT * FROM audit_log WHERE id > %s ORDER BY id LIMIT %s", (after, VERIFY_BATCH)
            ).fetchall()
            yield from batch
            if len(batch) < VERIFY_BATCH:
                return
            after = batch[-1]["id"]


def _id_with_hash(conn: psycopg.Connection, value: str) -> int | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT id FROM audit_log WHERE hash = %s ORDER BY id LIMIT 1", (value,)).fetchone()
    return row[0] if row else None


def verify(conn: psycopg.Connection) -> Verification:
    """Walk the chain by id and name every row that was changed, removed, inserted or moved.

    Checks per row: its content still hashes to its stored hash (else *changed*); its id follows the
    previous id (a gap means rows were *removed*); its prev_hash is the previous row's hash. A broken
    link is explained by where the prev_hash points: to a later row (rows *reordered*), to an earlier
    row (rows in between *removed*), or nowhere (the row before it was *inserted*, or a removed row
    was renumbered over). Finally the chain head must name the last row (else the tail was cut).
    """
    result = Verification()
    prev: dict[str, Any] | None = None
    for row in _rows(conn):
        result.rows += 1
        if result.first_id is None:
            result.first_id = row["id"]
        if row_hash(content_of(row), row["prev_hash"]) != row["hash"]:
            result.problems.append(Problem(
                "changed", row["id"], f"row {row['id']} was changed: its content no longer matches its hash"))
        expected_id = prev["id"] + 1 if prev else 1
        expected_prev = prev["hash"] if prev else GENESIS_HASH
        if row["id"] != expected_id:
            result.problems.append(Problem(
                "removed", row["id"], f"{_span(expected_id, row['id'] - 1)} removed (the log jumps from "
                f"row {expected_id - 1} to row {row['id']})"))
        elif row["prev_hash"] != expected_prev:
            if prev is not None and row["prev_hash"] == prev["prev_hash"]:
                result.problems.append(Problem(
                    "inserted", prev["id"],
                    f"row {prev['id']} was inserted: row {row['id']} chains to the row before it"))
            else:
                result.problems.append(_broken_link(conn, row, prev))
        prev = row
    if prev is not None:
        result.last_id, result.last_hash = prev["id"], prev["hash"]
    with conn.cursor(row_factory=tuple_row) as cur:
        head = cur.execute("SELECT last_id, last_hash FROM audit_chain_head").fetchone()
    if head is None:
        result.problems.append(Problem("head", None, "the chain head row is missing"))
    elif (head[0], head[1]) != ((prev or {}).get("id", 0), result.last_hash):
        last = prev["id"] if prev else 0
        if head[0] > last:
            message = f"{_span(last + 1, head[0])} removed from the end (the chain head names row {head[0]})"
            kind = "removed"
        else:
            message = f"the chain head names row {head[0]} but the log ends at row {last}: rows appended by hand?"
            kind = "inserted"
        result.problems.append(Problem(kind, head[0], message))
    return result


def _span(first: int, last: int) -> str:
    return f"row {first} was" if first == last else f"rows {first}..{last} were"


def _broken_link(conn: psycopg.Connection, row: dict[str, Any], prev: dict[str, Any] | None) -> Problem:
    """Explain a row whose prev_hash is not its predecessor's hash, by where that prev_hash points."""
    target = _id_with_hash(conn, row["prev_hash"]) if row["prev_hash"] != GENESIS_HASH else 0
    prev_id = prev["id"] if prev else 0
    if target is None:
        return Problem("removed", row["id"],
                       f"row {row['id']} does not chain to row {prev_id}: the row it followed is gone "
                       f"(removed with the ids renumbered, or row {prev_id} replaced and re-hashed)")
    if target > row["id"]:
        return Problem("reordered", row["id"], f"row {row['id']} is out of order: it chains after row {target}")
    return Problem("reordered", row["id"],
                   f"row {row['id']} chains after row {target}, not after row {prev_id}: "
                   f"{_span(target + 1, prev_id)} moved or inserted in front of it")
