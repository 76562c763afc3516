"""The ingest engine against the session's real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
import time

import psycopg
import pytest

from agent.contract import ENGINE_GROUP, Batch, Event, Sample, stream_key
from panel.engine import Engine, EngineUnavailable, consumer
from panel.engine.batches import label_text, parse_entry
from panel.engine.store import SampleStore
from tests.panel.helpers import ingest, pool_host_batch, xadd


def counts(sql):
    return {t: sql(f"SELECT count(*) FROM {t}")[0][0]
            for t in ("hosts", "series", "samples", "latest", "ingested_batches", "events", "rejected_batches")}


def pending(rds, host):
    return rds.xpending(stream_key(host), ENGINE_GROUP)["pending"]


def test_batches_land_in_postgres_with_exact_counts(runner, rds, sql):
    t0 = 1_700_000_000.0
    batches = [pool_host_batch(t0 + 15 * i) for i in range(3)]
    for b in batches:
        xadd(rds, "pool-1", b)
    xadd(rds, "pool-2", pool_host_batch(t0))

    assert "ingested 4 new batches" in ingest(runner)

    per_batch = len(batches[0].samples)
    c = counts(sql)
    assert c["hosts"] == 2
    assert c["ingested_batches"] == 4
    assert c["samples"] == 4 * per_batch
    assert c["series"] == 2 * per_batch
    assert c["latest"] == 2 * per_batch
    assert c["events"] == 3 + 1  # event ids differ per ts; pool-2's is on another host
    assert sql("SELECT sample_count FROM ingested_batches")[0][0] == per_batch
    assert pending(rds, "pool-1") == 0
    # latest holds the newest batch's values
    newest = sql("SELECT max(l.ts) = min(l.ts), max(l.ts) FROM latest l JOIN series s ON s.id = l.series_id "
                 "JOIN hosts h ON h.id = s.host_id WHERE h.name = 'pool-1'")[0]
    assert newest[0] is True and newest[1].timestamp() == t0 + 30
    assert sql("SELECT agent_version, extract(epoch FROM last_batch_ts) FROM hosts WHERE name = 'pool-1'") == [
        ("0.1.0", t0 + 30)]


def test_same_batch_twice_is_stored_once(runner, rds, sql):
    batch = pool_host_batch()
    xadd(rds, "pool-1", batch)
    xadd(rds, "pool-1", batch)
    ingest(runner)
    assert counts(sql)["ingested_batches"] == 1
    assert counts(sql)["samples"] == len(batch.samples)
    xadd(rds, "pool-1", batch)  # and again, in a later run
    ingest(runner)
    assert counts(sql)["samples"] == len(batch.samples)
    assert pending(rds, "pool-1") == 0


def test_crash_between_commit_and_ack_neither_loses_nor_duplicates(runner, rds, sql, db_url):
    """A previous engine read three entries and died: it committed the first two, acked none."""
    batches = [pool_host_batch(1_700_000_000.0 + i) for i in range(4)]
    key = stream_key("pool-1")
    for b in batches:
        xadd(rds, "pool-1", b)
    rds.xgroup_create(key, ENGINE_GROUP, id="0")
    read = rds.xreadgroup(ENGINE_GROUP, "dead-engine-123", {key: ">"}, count=3)
    entries = read[0][1]
    with psycopg.connect(db_url, autocommit=True) as conn:
        store = SampleStore(conn)
        for entry_id, fields in entries[:2]:
            assert store.ingest(parse_entry("pool-1", entry_id.decode(), fields))
    assert pending(rds, "pool-1") == 3

    ingest(runner)

    per_batch = len(batches[0].samples)
    assert counts(sql)["ingested_batches"] == 4
    assert counts(sql)["samples"] == 4 * per_batch
    assert pending(rds, "pool-1") == 0
    stream_ids = {r[0] for r in sql("SELECT stream_id FROM ingested_batches")}
    assert stream_ids == {e[0].decode() for e in rds.xrange(key)}


BAD_ENTRIES = {
    "no batch field": {"junk": "1"},
    "not JSON": {"batch": "{not json"},
    "not an object": {"batch": "[1, 2, 3]"},
    "unknown contract version": {"batch": json.dumps({"v": 99, "id": "x", "ts": 1.7e9})},
    "no id": {"batch": json.dumps({"v": 1, "ts": 1.7e9, "samples": []})},
    "impossible ts": {"batch": json.dumps({"v": 1, "id": "x", "ts": 1e30, "samples": []})},
    "sample of the wrong shape": {"batch": json.dumps({"v": 1, "id": "x", "ts": 1.7e9, "samples": [{"a": 1}]})},
    "labels not an object": {"batch": json.dumps({"v": 1, "id": "x", "ts": 1.7e9, "samples": [["m", [1], 1, 0]]})},
    "NUL in event data (PostgreSQL refuses it)": {"batch": json.dumps({
        "v": 1, "id": "x", "ts": 1.7e9, "samples": [],
        "events": [{"id": "e", "kind": "k", "ts": 1.7e9, "data": {"s": "a\u0000b"}}]})},
    "binary garbage": {"batch": b"\xff\xfe\x00\x01"},
    "NUL in a metric name": {"batch": json.dumps({
        "v": 1, "id": "x", "ts": 1.7e9, "samples": [["a\u0000b", {}, 1, 0]]})},
    "lone surrogate in a label": {"batch": json.dumps({
        "v": 1, "id": "x", "ts": 1.7e9, "samples": [["m", {"path": "/srv/\ud800"}, 1, 0]]})},
    "number too large for a float": {"batch": json.dumps({
        "v": 1, "id": "x", "ts": 1.7e9, "samples": [["m", {}, 10**400, 0]]})},
    "metric name not a string": {"batch": json.dumps({"v": 1, "id": "x", "ts": 1.7e9, "samples": [[5, {}, 1, 0]]})},
    "NaN in event data": {"batch": json.dumps({
        "v": 1, "id": "x", "ts": 1.7e9, "samples": [],
        "events": [{"id": "e", "kind": "k", "ts": 1.7e9, "data": {"effort": float("nan")}}]})},
}


@pytest.mark.parametrize("fields", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_malformed_entry_is_recorded_and_does_not_wedge_the_stream(runner, rds, sql, fields):
    good_before, good_after = pool_host_batch(1_700_000_000.0), pool_host_batch(1_700_000_015.0)
    xadd(rds, "pool-1", good_before)
    bad_id = rds.xadd(stream_key("pool-1"), fields)
    xadd(rds, "pool-1", good_after)

    ingest(runner)

    assert counts(sql)["ingested_batches"] == 2
    rejected = sql("SELECT host, stream_id, reason FROM rejected_batches")
    assert [(h, s) for h, s, _ in rejected] == [("pool-1", bad_id.decode())]
    assert rejected[0][2]
    assert pending(rds, "pool-1") == 0
    # the next run finds nothing left to do
    assert "ingested 0 new batches" in ingest(runner)


def test_host_comes_from_the_stream_key_not_the_payload(runner, rds, sql):
    body = json.loads(pool_host_batch().to_fields()["batch"])
    body["host"] = "victim-host"
    rds.xadd(stream_key("pool-1"), {"batch": json.dumps(body)})
    ingest(runner)
    assert sql("SELECT name FROM hosts") == [("pool-1",)]


def test_sample_without_ts_takes_the_batch_ts_and_non_finite_values_are_skipped(runner, rds, sql):
    batch = Batch(ts=1_700_000_100.0, samples=[
        Sample("poolwarden_load1", 1.0),
        Sample("poolwarden_load5", 2.0, ts=1_700_000_050.0),
        Sample("poolwarden_load15", float("nan")),
    ])
    rds.xadd(stream_key("pool-1"), {"batch": json.dumps({
        "v": 1, "id": batch.id, "ts": batch.ts, "samples": [s.to_wire() for s in batch.samples]})})
    ingest(runner)
    rows = dict(sql("SELECT s.name, extract(epoch FROM x.ts) FROM samples x JOIN series s ON s.id = x.series_id"))
    assert rows == {"poolwarden_load1": 1_700_000_100, "poolwarden_load5": 1_700_000_050}


def test_an_old_batch_arriving_late_does_not_move_latest_back(runner, rds, sql):
    xadd(rds, "pool-1", pool_host_batch(1_700_000_100.0, cpu=80.0))
    xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0, cpu=10.0))
    ingest(runner)
    assert sql("SELECT l.value FROM latest l JOIN series s ON s.id = l.series_id "
               "WHERE s.name = 'poolwarden_cpu_usage_percent'") == [(80.0,)]
    assert counts(sql)["samples"] == 2 * len(pool_host_batch().samples)


def test_events_are_idempotent_across_batches(runner, rds, sql):
    event = Event(id="block-1234", kind="block_found", ts=1_700_000_000.0, data={"height": 1234})
    for ts in (1_700_000_000.0, 1_700_000_015.0):
        xadd(rds, "pool-1", Batch(ts=ts, samples=[], events=[event]))
    ingest(runner)
    assert sql("SELECT event_id, kind, data FROM events") == [("block-1234", "block_found", {"height": 1234})]


def test_streams_with_invalid_host_names_are_ignored(runner, rds, sql):
    rds.xadd(stream_key("bad host!"), pool_host_batch().to_fields())
    rds.set(stream_key("not-a-stream"), "x")
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    assert sql("SELECT name FROM hosts") == [("pool-1",)]


def test_engine_once_without_migrated_database_says_so(redis_url, fresh_db, rds):
    from panel import create_app

    xadd(rds, "pool-1", pool_host_batch())
    app = create_app({"TESTING": True, "DATABASE_URL": fresh_db, "REDIS_URL": redis_url})
    result = app.test_cli_runner().invoke(args=["engine", "--once"])
    assert result.exit_code == 1
    assert "poolwarden-panel migrate" in result.output


def test_engine_once_names_unreachable_redis(db_url):
    from panel import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": db_url, "REDIS_URL": "redis://127.0.0.1:1/0"})
    result = app.test_cli_runner().invoke(args=["engine", "--once"])
    assert result.exit_code == 1
    assert "Redis at 127.0.0.1:1 is unreachable" in result.output


# -- one transaction per read ---------------------------------------------------------------------


def xack_calls(rds) -> int:
    return rds.info("commandstats").get("cmdstat_xack", {}).get("calls", 0)


def test_a_read_is_one_transaction_and_one_xack_per_stream(runner, rds, sql):
    for i in range(12):
        xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0 + 15 * i))
    for i in range(3):
        xadd(rds, "pool-2", pool_host_batch(1_700_000_000.0 + 15 * i))
    xacks = xack_calls(rds)

    assert "ingested 15 new batches" in ingest(runner)

    # every batch id (and so every sample) of the read was committed by the same transaction
    assert sql("SELECT count(DISTINCT xmin::text) FROM ingested_batches") == [(1,)]
    assert sql("SELECT count(DISTINCT xmin::text) FROM events") == [(1,)]
    assert xack_calls(rds) - xacks == 2
    assert pending(rds, "pool-1") == pending(rds, "pool-2") == 0
    assert counts(sql)["samples"] == 15 * len(pool_host_batch().samples)


def test_a_read_parsed_in_chunks_is_still_one_transaction(runner, rds, sql, monkeypatch):
    """A backlog read is parsed and written a few entries at a time; what one chunk learns (a new
    series, a batch id, a stored sample) holds for the next ones."""
    monkeypatch.setattr(consumer, "PARSE_CHUNK", 3)
    t0 = 1_700_000_000.0
    batches = [pool_host_batch(t0 + 15 * i) for i in range(8)]
    batches[4].samples.append(Sample("poolwarden_swap_used_bytes", 1.0))  # a new series, in the 2nd chunk
    batches[6].samples.append(Sample("poolwarden_swap_used_bytes", 2.0))  # and again in the 3rd
    repeat_sample = Batch(ts=t0, samples=[Sample("poolwarden_load1", 9.0)])  # same series and ts as batch 0
    entries = [*batches[:3], None, *batches[3:6], batches[1], repeat_sample, *batches[6:]]
    for batch in entries:
        if batch is None:
            bad_id = rds.xadd(stream_key("pool-1"), {"batch": "{not json"})
        else:
            xadd(rds, "pool-1", batch)

    assert "ingested 9 new batches" in ingest(runner)  # 8 + repeat_sample; batches[1] twice is a replay

    per_batch = len(pool_host_batch().samples)
    c = counts(sql)
    assert (c["ingested_batches"], c["samples"], c["series"]) == (9, 8 * per_batch + 2, per_batch + 1)
    assert sql("SELECT count(DISTINCT xmin::text) FROM ingested_batches") == [(1,)]
    assert [r[0] for r in sql("SELECT stream_id FROM rejected_batches")] == [bad_id.decode()]
    assert sql("SELECT x.value FROM samples x JOIN series s ON s.id = x.series_id "
               "WHERE s.name = 'poolwarden_load1' AND x.ts = to_timestamp(%s)", (t0,)) == [(1.5,)]
    assert sql("SELECT l.value FROM latest l JOIN series s ON s.id = l.series_id "
               "WHERE s.name = 'poolwarden_swap_used_bytes'") == [(2.0,)]
    assert pending(rds, "pool-1") == 0


def test_a_failure_mid_transaction_leaves_every_entry_of_the_read_pending(db_url, redis_url, rds, sql, runner):
    """The PostgreSQL connection dies after the samples of a read were written, before its commit."""
    sql("CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$")
    sql("CREATE TRIGGER die_while_storing_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION die()")
    for i in range(5):
        xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0 + 15 * i))

    with pytest.raises(EngineUnavailable, match="PostgreSQL at 127.0.0.1"):
        Engine(db_url, redis_url, block_ms=100, consumer="engine-that-dies").run(once=True)

    assert set(counts(sql).values()) == {0}  # nothing committed: no host, no series, no sample
    assert pending(rds, "pool-1") == 5  # and nothing acknowledged
    sql("DROP TRIGGER die_while_storing_events ON events")

    assert "ingested 5 new batches" in ingest(runner)  # another engine claims them

    assert counts(sql)["ingested_batches"] == 5
    assert counts(sql)["samples"] == 5 * len(pool_host_batch().samples)
    assert pending(rds, "pool-1") == 0


def test_an_entry_postgres_refuses_is_rejected_alone(runner, rds, sql):
    """Valid JSON that PostgreSQL cannot index (a 12 kB label) costs only its own entry."""
    xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0))
    huge = Batch(ts=1_700_000_015.0, samples=[Sample("poolwarden_load1", 1.0, {"blob": os.urandom(6000).hex()})])
    bad_id = xadd(rds, "pool-1", huge)
    xadd(rds, "pool-1", pool_host_batch(1_700_000_030.0))

    assert "ingested 2 new batches" in ingest(runner)

    assert counts(sql)["ingested_batches"] == 2
    assert counts(sql)["samples"] == 2 * len(pool_host_batch().samples)
    rejected = sql("SELECT stream_id, reason FROM rejected_batches")
    assert [r[0] for r in rejected] == [bad_id.decode()]
    assert "index row" in rejected[0][1]
    assert sql("SELECT count(*) FROM series WHERE labels ? 'blob'") == [(0,)]
    assert pending(rds, "pool-1") == 0


def test_a_sample_already_stored_under_another_batch_id_is_stored_once(runner, rds, sql):
    """Same series and time again (a re-sent cached value, or twice in one batch): the first value stays."""
    ts = 1_700_000_000.0
    xadd(rds, "pool-1", Batch(ts=ts, samples=[Sample("poolwarden_load1", 1.0)]))
    ingest(runner)
    xadd(rds, "pool-1", Batch(ts=ts, samples=[Sample("poolwarden_load1", 2.0), Sample("poolwarden_load5", 3.0)]))
    xadd(rds, "pool-1", Batch(ts=ts + 15, samples=[Sample("poolwarden_load1", 4.0),
                                                   Sample("poolwarden_load1", 4.0, ts=ts + 15)]))

    assert "ingested 2 new batches" in ingest(runner)

    assert counts(sql)["ingested_batches"] == 3
    rows = sql("SELECT s.name, extract(epoch FROM x.ts), x.value FROM samples x JOIN series s ON s.id = x.series_id "
               "ORDER BY 1, 2")
    assert rows == [("poolwarden_load1", ts, 1.0), ("poolwarden_load1", ts + 15, 4.0), ("poolwarden_load5", ts, 3.0)]
    assert sql("SELECT s.name, extract(epoch FROM l.ts), l.value FROM latest l JOIN series s ON s.id = l.series_id "
               "ORDER BY 1") == [("poolwarden_load1", ts + 15, 4.0), ("poolwarden_load5", ts, 3.0)]


def test_label_order_and_value_types_do_not_split_a_series(runner, rds, sql):
    ts = 1_700_000_000.0
    for i, labels in enumerate([{"mount": "/", "device": "sda"}, {"device": "sda", "mount": "/"}]):
        sample = ["poolwarden_disk_used_bytes", labels, i, 0]
        rds.xadd(stream_key("pool-1"), {"batch": json.dumps({"v": 1, "id": f"b{i}", "ts": ts + 15 * i,
                                                            "samples": [sample]})})
    rds.xadd(stream_key("pool-1"), {"batch": json.dumps({
        "v": 1, "id": "b2", "ts": ts + 30, "samples": [["poolwarden_cpu_core_percent", {"core": 3}, 5.0, 0]]})})
    ingest(runner)
    rds.xadd(stream_key("pool-1"), {"batch": json.dumps({
        "v": 1, "id": "b3", "ts": ts + 45, "samples": [["poolwarden_cpu_core_percent", {"core": "3"}, 6.0, 0]]})})
    ingest(runner)
    assert sql("SELECT name, labels FROM series ORDER BY name") == [
        ("poolwarden_cpu_core_percent", {"core": "3"}), ("poolwarden_disk_used_bytes", {"mount": "/", "device": "sda"})]
    assert counts(sql)["samples"] == 4


def test_an_old_batch_does_not_set_the_agent_version_or_last_batch_time(runner, rds, sql):
    xadd(rds, "pool-1", Batch(ts=1_700_000_100.0, samples=[], agent_version="2.0"))
    xadd(rds, "pool-1", Batch(ts=1_700_000_000.0, samples=[], agent_version="1.0"))  # same read, older
    ingest(runner)
    xadd(rds, "pool-1", Batch(ts=1_700_000_050.0, samples=[], agent_version="1.5"))  # later read, still older
    xadd(rds, "pool-2", Batch(ts=1_700_000_000.0, samples=[], agent_version="3.0"))
    xadd(rds, "pool-2", Batch(ts=1_700_000_015.0, samples=[]))  # newest, but names no version
    ingest(runner)
    assert sql("SELECT name, agent_version, extract(epoch FROM last_batch_ts) FROM hosts ORDER BY name") == [
        ("pool-1", "2.0", 1_700_000_100), ("pool-2", "3.0", 1_700_000_015)]


@pytest.mark.parametrize("own_ts", [False, True], ids=["all samples at the batch ts", "a sample with its own ts"])
def test_parse_entry_reads_what_the_contract_writes(own_ts):
    """The engine's parser (the hot path) agrees with the contract's own decoding."""
    batch = pool_host_batch(1_700_000_000.25)
    if own_ts:
        batch.samples.append(Sample("poolwarden_backup_newest_age_seconds", 12.5, {"path": "/b"}, ts=1_699_999_990.5))
    fields = {k.encode(): v.encode() for k, v in batch.to_fields().items()}

    parsed, decoded = parse_entry("pool-1", "1-0", fields), Batch.from_fields(fields)

    assert (parsed.host, parsed.stream_id, parsed.batch_id, parsed.agent_version, parsed.sample_count) == (
        "pool-1", "1-0", decoded.id, decoded.agent_version, len(decoded.samples))
    assert parsed.ts.timestamp() == decoded.ts
    assert [(name, dict(labels), us / 1e6, value) for (name, labels), us, value in parsed.rows()] == [
        (s.name, s.labels, s.ts or decoded.ts, s.value) for s in decoded.samples]
    assert [(i, k, ts.timestamp(), d) for i, k, ts, d in parsed.events] == [
        (e.id, e.kind, e.ts, e.data) for e in decoded.events]
    assert parsed.oldest_us == (1_699_999_990_500_000 if own_ts else 1_700_000_000_250_000)


def test_parse_entry_keeps_odd_label_values_as_text():
    body = {"v": 1, "id": "b", "ts": 1.7e9, "samples": [
        ["m", {"cores": 8, "ok": True, "list": [1, 2], "map": {"a": 1}, "none": None}, 1.0, 0]]}
    parsed = parse_entry("pool-1", "1-0", {"batch": json.dumps(body)})
    (name, labels), = parsed.series
    assert {k: label_text(v) for k, v in labels} == {
        "cores": "8", "ok": "True", "list": "[1, 2]", "map": "{'a': 1}", "none": "None"}


# -- long-running engine --------------------------------------------------------------------------


class RunningEngine:
    def __init__(self, db_url, redis_url):
        self.engine = Engine(db_url, redis_url, block_ms=100, rescan_seconds=0.2)
        self.thread = threading.Thread(target=self.engine.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.engine

    def __exit__(self, *exc):
        self.engine.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_redis_restart_mid_run_loses_nothing(db_url, redis_url, redis_server, rds, sql, caplog):
    with RunningEngine(db_url, redis_url) as engine:
        for i in range(5):
            xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0 + i))
        wait_for(lambda: engine.stored == 5)
        redis_server.restart()
        rds.connection_pool.disconnect()
        for i in range(5, 10):
            xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0 + i))
        wait_for(lambda: counts(sql)["ingested_batches"] == 10)
        wait_for(lambda: pending(rds, "pool-1") == 0)
    assert counts(sql)["samples"] == 10 * len(pool_host_batch().samples)
    assert any(f"Redis at 127.0.0.1:{redis_server.port}" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_postgres_connection_loss_mid_run_loses_nothing(db_url, redis_url, rds, sql, caplog):
    with RunningEngine(db_url, redis_url) as engine:
        xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0))
        wait_for(lambda: engine.stored == 1)
        dbname = db_url.rsplit("/", 1)[1]
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,))
        for i in range(1, 6):
            xadd(rds, "pool-1", pool_host_batch(1_700_000_000.0 + i))
        wait_for(lambda: counts(sql)["ingested_batches"] == 6)
        wait_for(lambda: pending(rds, "pool-1") == 0)
    assert counts(sql)["samples"] == 6 * len(pool_host_batch().samples)
    assert any("PostgreSQL at 127.0.0.1" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_engine_process_stops_cleanly_on_sigterm(db_url, redis_url, rds, sql, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "POOLWARDEN_DATABASE_URL": db_url, "POOLWARDEN_REDIS_URL": redis_url}
    log = (tmp_path / "engine.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from panel.cli import main; main()", "engine", "--block-ms", "200"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        xadd(rds, "pool-1", pool_host_batch())
        wait_for(lambda: counts(sql)["ingested_batches"] == 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "engine" in (tmp_path / "engine.log").read_text()


# -- periodic tasks between reads -----------------------------------------------------------------


def test_a_blocking_read_never_holds_up_a_due_task(db_url, redis_url, rds):
    from panel.engine.tasks import PeriodicTask

    xadd(rds, "pool-1", pool_host_batch())   # a stream to block on
    runs: list[float] = []
    engine = Engine(db_url, redis_url, block_ms=5000, tasks=[PeriodicTask("tick", 0.2, lambda _ctx: runs.append(1))])
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    time.sleep(1.5)
    engine.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(runs) >= 5, runs   # with reads blocking 5 s it would have run once or twice


def test_new_batches_are_judged_at_once_and_a_task_can_wake_another(db_url, redis_url, rds):
    from panel.engine.tasks import PeriodicTask

    runs: list[tuple[str, float]] = []

    class Judged:
        wake = ("notify",)
        run_again_in = None

    judge = PeriodicTask("judge", 60, lambda _ctx: runs.append(("judge", time.monotonic())) or Judged(),
                         after_ingest=0.05)
    notify = PeriodicTask("notify", 60, lambda _ctx: runs.append(("notify", time.monotonic())))
    xadd(rds, "pool-1", pool_host_batch())
    engine = Engine(db_url, redis_url, block_ms=1000, tasks=[judge, notify])
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: engine.stored == 1 and len(runs) >= 2)
        time.sleep(0.3)
        before = len(runs)
        sent = time.monotonic()
        xadd(rds, "pool-1", pool_host_batch())
        wait_for(lambda: len(runs) >= before + 2, timeout=5)
        # judged right after the batch was stored (not in 60 s), and the task it woke ran in the same round
        assert [name for name, _at in runs[before:before + 2]] == ["judge", "notify"]
        assert runs[before][1] - sent < 1.0
    finally:
        engine.stop()
        thread.join(timeout=10)


def test_a_task_runs_again_when_it_asks_to():
    from panel.engine.tasks import PeriodicTask, TaskRunner

    runs: list[float] = []

    class Soon:
        run_again_in = 0.3
        wake = ()

    runner = TaskRunner([PeriodicTask("deadline", 60, lambda _ctx: runs.append(time.monotonic()) or Soon())],
                        "postgresql://unused", None)
    runner.run_due()
    assert 0.2 < runner.seconds_until_due() <= 0.3
    time.sleep(0.31)
    runner.run_due()
    assert len(runs) == 2
