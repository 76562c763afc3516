"""The database stays consistent with itself and with the API (run after the faults have moved time)."""

from __future__ import annotations

from functools import partial

import psycopg
import requests

get = partial(requests.get, timeout=30)
delete = partial(requests.delete, timeout=30)


def test_db_consistency(sim, module_db):
    sim.find_block()
    sim.step(86400)  # a day of live simulation: blocks found, confirmed, credited, paid
    pool = get(sim.urls["api"] + "/api/pools/ergo1").json()["pool"]
    state = get(sim.urls["control"] + "/state").json()
    with psycopg.connect(module_db) as conn:
        paid = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM payments").fetchone()[0]
        assert float(paid) == pool["totalPaid"]
        counts = dict(conn.execute("SELECT status, COUNT(*) FROM blocks GROUP BY status").fetchall())
        assert sum(counts.values()) == pool["totalBlocks"] == state["blocks"]["total"]
        for status in ("pending", "confirmed", "orphaned"):
            assert counts.get(status, 0) == state["blocks"][status]
        mismatches = conn.execute(
            """
            SELECT b.address, b.amount, c.total FROM balances b
            JOIN (SELECT poolid, address, SUM(amount) AS total FROM balance_changes GROUP BY poolid, address) c
              USING (poolid, address)
            WHERE b.amount <> c.total
            """).fetchall()
        assert mismatches == []
        orphan_rows = conn.execute(
            "SELECT COUNT(*) FROM balances b WHERE NOT EXISTS "
            "(SELECT 1 FROM balance_changes c WHERE c.address = b.address)").fetchone()[0]
        assert orphan_rows == 0
        unclassified = conn.execute(
            "SELECT COUNT(*) FROM blocks WHERE (hash IS NULL) <> (status = 'orphaned' OR effort IS NULL)"
        ).fetchone()[0]
        assert unclassified == 0
        bad_progress = conn.execute(
            "SELECT COUNT(*) FROM blocks WHERE status = 'confirmed' AND confirmationprogress <> 1").fetchone()[0]
        assert bad_progress == 0
        newest_confirmed = conn.execute(
            "SELECT MAX(created) FROM blocks WHERE status = 'confirmed'").fetchone()[0]
        oldest_share = conn.execute("SELECT MIN(created) FROM shares").fetchone()[0]
        assert oldest_share >= newest_confirmed
        per_tx = conn.execute(
            "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM payments GROUP BY transactionconfirmationdata) x"
        ).fetchone()[0]
        assert per_tx > 1
