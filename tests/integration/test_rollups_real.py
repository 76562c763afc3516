"""Rollups over what the real agent sent: poolsim -> agent -> engine -> samples -> 1 m rollups ->
the 24 h graph API, which reads the rollups. The rollup pass is the engine's own function, run with
its clock moved past the settle time (two minutes) instead of waiting for it."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from panel.engine.rollups import SETTLE_SECONDS, run_rollups
from tests.integration.conftest import HOST, sign_in_client, wait_until

pytestmark = pytest.mark.slow


def test_rollups_of_real_samples_match_the_raw_data_and_feed_the_graphs(stack):
    stack["run_engine"]()
    agent = stack["run_agent"]("--cycles", "8", "--interval", "1")
    assert agent.proc.wait(timeout=120) == 0, agent.tail()
    with psycopg.connect(stack["pw_dsn"], autocommit=True) as conn:
        wait_until(lambda: conn.execute("SELECT count(*) FROM ingested_batches").fetchone()[0] == 8, 30,
                   "the engine to ingest every batch")
        newest = conn.execute("SELECT max(ts) FROM samples").fetchone()[0]
        report = run_rollups(conn, now=newest + timedelta(seconds=SETTLE_SECONDS + 61))
        assert report.done_until["1m"] > newest

        mismatched = conn.execute("""
            WITH raw AS (
                SELECT series_id, date_trunc('minute', ts) AS bucket, min(value) AS mn, max(value) AS mx,
                       sum(value) AS sm, count(*) AS n
                FROM samples GROUP BY 1, 2)
            SELECT count(*) FILTER (WHERE r.series_id IS NULL OR abs(r.sm - m.sum) > 1e-6 * greatest(1, abs(r.sm))
                                    OR r.mn <> m.min OR r.mx <> m.max OR r.n <> m.count),
                   count(*)
            FROM samples_1m m FULL JOIN raw r USING (series_id, bucket)""").fetchone()
        assert mismatched[0] == 0 and mismatched[1] > 100, mismatched

    from panel import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": stack["pw_dsn"], "REDIS_URL": stack["redis_url"],
                      "SECRET_KEY": "t", "SECRETS_KEY": stack["panel_env"]["POOLWARDEN_SECRETS_KEY"]})
    client = app.test_client()
    sign_in_client(client, stack)
    answer = client.get(f"/api/hosts/{HOST}/series?name=poolwarden_pool_hashrate_hps&range=24h")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["resolution"] == "1m" and body["series"] and body["timestamps"], json.dumps(body)[:1500]
    with psycopg.connect(stack["pw_dsn"]) as conn:
        rolled = conn.execute(
            "SELECT m.bucket, m.sum / m.count FROM samples_1m m JOIN series r ON r.id = m.series_id "
            "WHERE r.name = 'poolwarden_pool_hashrate_hps' ORDER BY 1").fetchall()
    shown = [v for s in body["series"] for v in s["values"] if v is not None]
    averages = [avg for _, avg in rolled]
    # the graph's 2-minute steps average the 1-minute buckets: every point lies within their range
    assert shown and averages, (shown, rolled)
    assert all(min(averages) - 1e-6 <= v <= max(averages) + 1e-6 for v in shown), (shown, rolled)
