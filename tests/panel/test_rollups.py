"""Rollups (1 m, 1 h) and retention: exact aggregates, idempotent re-runs, late samples, what is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from agent.contract import Batch, Sample
from panel.engine.rollups import Retention, run_rollups
from tests.panel.helpers import ingest, xadd

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def make_series(sql, name="poolwarden_cpu_usage_percent", host="pool-1") -> int:
    sql("INSERT INTO hosts (name) VALUES (%s) ON CONFLICT DO NOTHING", (host,))
    return sql("INSERT INTO series (host_id, name) SELECT id, %s FROM hosts WHERE name = %s RETURNING id",
               (name, host))[0][0]


def add(sql, series_id, points):
    for ts, value in points:
        sql("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s)", (series_id, ts, value))


def rows(sql, table, series_id):
    return sql(f"SELECT bucket, min, max, sum / count, count, last FROM {table} "  # noqa: S608
               "WHERE series_id = %s ORDER BY bucket", (series_id,))


def test_one_minute_buckets_hold_min_max_avg_last(sql, conn):
    sid = make_series(sql)
    s = timedelta(seconds=1)
    add(sql, sid, [(T0 + 5 * s, 10), (T0 + 20 * s, 30), (T0 + 50 * s, 20),   # minute 0
                   (T0 + 65 * s, 7), (T0 + 110 * s, 9)])                      # minute 1
    report = run_rollups(conn, now=T0 + timedelta(minutes=10))
    assert rows(sql, "samples_1m", sid) == [
        (T0, 10, 30, 20, 3, 20),
        (T0 + timedelta(minutes=1), 7, 9, 8, 2, 9),
    ]
    assert report.buckets["1m"] == 2
    assert report.done_until["1m"] == T0 + timedelta(minutes=8)  # now - settle, floored


def test_recent_minutes_wait_until_they_settle(sql, conn):
    sid = make_series(sql)
    add(sql, sid, [(T0, 1), (T0 + timedelta(minutes=5), 2)])
    run_rollups(conn, now=T0 + timedelta(minutes=6))  # minute 5 is not 2 minutes old yet
    assert [r[0] for r in rows(sql, "samples_1m", sid)] == [T0]
    run_rollups(conn, now=T0 + timedelta(minutes=9))
    assert [r[0] for r in rows(sql, "samples_1m", sid)] == [T0, T0 + timedelta(minutes=5)]


def test_hour_buckets_combine_minutes_exactly(sql, conn):
    sid = make_series(sql)
    # 2 h of samples every 15 s: value = minute index (0..119), so hour 0 avg 29.5, hour 1 avg 89.5
    add(sql, sid, [(T0 + timedelta(seconds=15 * i), i // 4) for i in range(480)])
    run_rollups(conn, now=T0 + timedelta(hours=3))
    assert rows(sql, "samples_1h", sid) == [
        (T0, 0, 59, 29.5, 240, 59),
        (T0 + timedelta(hours=1), 60, 119, 89.5, 240, 119),
    ]
    assert len(rows(sql, "samples_1m", sid)) == 120


def test_re_running_changes_nothing(sql, conn):
    sid = make_series(sql)
    add(sql, sid, [(T0 + timedelta(seconds=15 * i), i % 7) for i in range(480)])
    now = T0 + timedelta(hours=3)
    run_rollups(conn, now=now)
    before = (rows(sql, "samples_1m", sid), rows(sql, "samples_1h", sid))
    again = run_rollups(conn, now=now)
    assert again.buckets == {"1m": 0, "1h": 0}
    # even a forced recompute of the whole range (watermarks reset) gives the same rows
    sql("DELETE FROM rollup_state")
    run_rollups(conn, now=now)
    assert (rows(sql, "samples_1m", sid), rows(sql, "samples_1h", sid)) == before


def test_a_late_sample_through_the_engine_is_rolled_up_again(sql, conn, runner, rds):
    """A replayed spool batch brings a sample for a minute (and hour) already rolled up."""
    now = datetime.now(UTC)
    old = now - timedelta(hours=2)
    minute = old.replace(second=0, microsecond=0)
    xadd(rds, "pool-1", Batch(ts=minute.timestamp() + 10, samples=[Sample("poolwarden_load1", 1.0)]))
    ingest(runner)
    run_rollups(conn, now=now)
    sid = sql("SELECT id FROM series WHERE name = 'poolwarden_load1'")[0][0]
    assert rows(sql, "samples_1m", sid)[0][1:] == (1.0, 1.0, 1.0, 1, 1.0)

    xadd(rds, "pool-1", Batch(ts=minute.timestamp() + 40, samples=[Sample("poolwarden_load1", 5.0)]))
    ingest(runner)
    assert sql("SELECT resolution, bucket FROM rollup_dirty") == [("1m", minute)]
    report = run_rollups(conn, now=now)
    assert report.late == 1
    assert rows(sql, "samples_1m", sid)[0][1:] == (1.0, 5.0, 3.0, 2, 5.0)
    hour = minute.replace(minute=0)
    assert rows(sql, "samples_1h", sid)[0] == (hour, 1.0, 5.0, 3.0, 2, 5.0)
    assert sql("SELECT count(*) FROM rollup_dirty")[0][0] == 0


def test_retention_deletes_only_what_is_past_it_and_keeps_rollups(sql, conn):
    sid = make_series(sql)
    now = T0 + timedelta(days=40)
    # one sample an hour over 40 days
    add(sql, sid, [(T0 + timedelta(hours=h), h) for h in range(40 * 24)])
    sql("INSERT INTO ingested_batches (host_id, batch_id, stream_id, ts, received_at, sample_count) "
        "SELECT id, 'old', '1-0', now(), %s, 1 FROM hosts UNION ALL "
        "SELECT id, 'new', '2-0', now(), %s, 1 FROM hosts", (now - timedelta(days=3), now - timedelta(days=1)))
    report = run_rollups(conn, Retention(raw_days=2, m1_days=10, h1_days=30), now=now, max_chunks=10_000,
                         delete_batch=100)
    oldest_raw = sql("SELECT min(ts) FROM samples")[0][0]
    oldest_1m = sql("SELECT min(bucket) FROM samples_1m")[0][0]
    oldest_1h = sql("SELECT min(bucket) FROM samples_1h")[0][0]
    assert now - timedelta(days=2) <= oldest_raw < now - timedelta(days=2) + timedelta(hours=1)
    assert now - timedelta(days=10) <= oldest_1m < now - timedelta(days=10) + timedelta(hours=1)
    assert now - timedelta(days=30) <= oldest_1h < now - timedelta(days=30) + timedelta(hours=1)
    # every hour of the last 30 days survives in the 1 h rollup, with its value (the current hour,
    # still open, is not rolled up yet)
    assert sql("SELECT count(*) FROM samples_1h WHERE bucket >= %s", (now - timedelta(days=30),))[0][0] == 30 * 24 - 1
    assert sql("SELECT max FROM samples_1h WHERE bucket = %s", (T0 + timedelta(days=20),))[0][0] == 20 * 24
    assert report.deleted["samples"] == 38 * 24
    assert sql("SELECT batch_id FROM ingested_batches") == [("new",)]


def test_raw_samples_not_rolled_up_yet_are_kept_past_retention(sql, conn):
    """A rollup that fell behind (bounded runs) must not lose raw data to retention."""
    sid = make_series(sql)
    now = T0 + timedelta(days=10)
    add(sql, sid, [(T0 + timedelta(hours=h), h) for h in range(10 * 24)])
    report = run_rollups(conn, Retention(raw_days=1), now=now, max_chunks=2)  # rolls only 2 h
    assert report.backlog
    assert sql("SELECT min(ts) FROM samples")[0][0] == T0 + timedelta(hours=2)
    assert sql("SELECT count(*) FROM samples_1m")[0][0] == 2


def test_rollup_command_reports_progress(runner, sql):
    sid = make_series(sql)
    add(sql, sid, [(datetime.now(UTC) - timedelta(hours=1), 3.0)])
    result = runner.invoke(args=["rollup", "--until-done"])
    assert result.exit_code == 0, result.output
    assert "rolled up 1 1m" in result.output
