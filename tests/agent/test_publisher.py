"""Publishing to a real Redis, and the on-disk spool that keeps batches while Redis is away."""

from __future__ import annotations

import json
import time

import pytest
import redis

from agent.contract import STREAM_MAXLEN, Batch, Event, Sample, stream_key
from agent.publisher import Publisher, Spool

HOST = "pool-test"


def make_batch(seq: int) -> Batch:
    return Batch(ts=1_750_000_000.0 + seq, seq=seq, agent_version="test",
                 samples=[Sample("poolwarden_load1", seq / 10), Sample("poolwarden_disk_used_bytes", 1e12 + seq,
                                                                       {"mount": "/", "device": "/dev/vda",
                                                                        "fstype": "ext4"})],
                 events=[Event(f"agent_started:{HOST}:1", "agent_started", 1.0, {"version": "test"})] if seq == 1
                 else [])


def stream_batches(url: str) -> list[Batch]:
    client = redis.Redis.from_url(url)
    try:
        return [Batch.from_fields(fields) for _id, fields in client.xrange(stream_key(HOST))]
    finally:
        client.close()


def restart_redis(server) -> None:
    """Start the session's server again (same port, data kept) and wait until it answers PING:
    while it loads its AOF it accepts connections but answers LOADING (the agent would spool)."""
    server.start(fresh=False)
    client = redis.Redis.from_url(server.url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def publisher(url: str, spool_dir, max_batches: int = 10_000) -> Publisher:
    return Publisher.from_url(url, HOST, Spool(spool_dir, max_batches), timeout=2)


def test_batches_land_in_the_host_stream_and_round_trip(redis_url, tmp_path):
    pub = publisher(redis_url, tmp_path / "spool")
    sent = [make_batch(1), make_batch(2)]
    try:
        assert all(pub.publish(b) for b in sent)
    finally:
        pub.close()
    got = stream_batches(redis_url)
    assert [(b.id, b.seq, b.ts, b.samples, b.events) for b in got] == [
        (b.id, b.seq, b.ts, b.samples, b.events) for b in sent]
    assert len(pub.spool) == 0 and list((tmp_path / "spool").iterdir()) == []


def test_xadd_caps_the_stream(redis_url, tmp_path, monkeypatch):
    calls = []
    pub = publisher(redis_url, tmp_path / "spool")
    real = pub.client.xadd

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(pub.client, "xadd", spy)
    pub.publish(make_batch(1))
    pub.close()
    assert calls == [{"maxlen": STREAM_MAXLEN, "approximate": True}]


def test_redis_unreachable_spools_in_order(refused_url, tmp_path):
    port = refused_url.rsplit(":", 1)[1]
    pub = publisher(f"redis://127.0.0.1:{port}/0", tmp_path / "spool")
    batches = [make_batch(i) for i in range(1, 4)]
    assert [pub.publish(b) for b in batches] == [False, False, False]
    files = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert files == ["00000000000000000001.json", "00000000000000000002.json", "00000000000000000003.json"]
    assert [json.loads((tmp_path / "spool" / f).read_text())["id"] for f in files] == [b.id for b in batches]
    # a new Spool on the same directory (agent restart) continues the numbering
    assert len(Spool(tmp_path / "spool")) == 3
    spool = Spool(tmp_path / "spool")
    spool.put(make_batch(4))
    assert spool.pending()[-1].name == "00000000000000000004.json"


def test_spool_bound_drops_the_oldest_and_counts(tmp_path):
    spool = Spool(tmp_path / "spool", max_batches=3)
    batches = [make_batch(i) for i in range(1, 6)]
    for b in batches:
        spool.put(b)
    assert len(spool) == 3 and spool.dropped == 2
    assert [spool.load(p).id for p in spool.pending()] == [b.id for b in batches[2:]]


def test_unreadable_spool_file_is_set_aside(tmp_path, redis_url):
    Spool(tmp_path / "spool").put(make_batch(1))
    (tmp_path / "spool" / "00000000000000000002.json").write_text("{not json")  # e.g. a full disk
    pub = publisher(redis_url, tmp_path / "spool")
    pub.spool.put(make_batch(3))
    assert len(pub.spool) == 3
    assert pub.flush() == 2
    pub.close()
    assert [b.seq for b in stream_batches(redis_url)] == [1, 3]
    assert (tmp_path / "spool" / "00000000000000000002.bad").exists()


@pytest.mark.slow
def test_batches_spooled_while_redis_is_down_arrive_in_order_exactly_once(redis_server, redis_url, tmp_path):
    pub = publisher(redis_url, tmp_path / "spool")
    batches = [make_batch(i) for i in range(1, 8)]
    try:
        assert pub.publish(batches[0])
        redis_server.stop()
        try:
            assert [pub.publish(b) for b in batches[1:5]] == [False] * 4
            assert len(pub.spool) == 4
            assert pub.flush() == 0  # still down: nothing lost, nothing sent
        finally:
            restart_redis(redis_server)  # the session's server: same port, data kept (AOF)
        assert pub.publish(batches[5])  # replays the four spooled ones first, then this one
        assert pub.publish(batches[6])
        assert len(pub.spool) == 0
    finally:
        pub.close()
    got = stream_batches(redis_url)
    assert [b.id for b in got] == [b.id for b in batches]
    assert [b.seq for b in got] == list(range(1, 8))
    assert got[0].events == batches[0].events


@pytest.mark.slow
def test_spool_bound_while_redis_is_down(redis_server, redis_url, tmp_path):
    pub = publisher(redis_url, tmp_path / "spool", max_batches=3)
    batches = [make_batch(i) for i in range(1, 7)]
    redis_server.stop()
    try:
        for b in batches[:5]:
            assert not pub.publish(b)
    finally:
        restart_redis(redis_server)
    assert pub.spool.dropped == 2
    assert pub.publish(batches[5])
    pub.close()
    assert [b.seq for b in stream_batches(redis_url)] == [3, 4, 5, 6]
