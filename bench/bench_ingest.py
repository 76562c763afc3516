"""Ingest throughput: samples per second from the Redis streams into PostgreSQL through the engine,
against a raw ``COPY`` of the same rows into a same-shaped table (the reference, same run).

    .venv/bin/python -m bench.bench_ingest [--hosts 5] [--batches 400] [--samples 150] [--runs 3]

Target: engine >= 0.5x the COPY rate. The engine does more per row than COPY (reading the stream,
parsing JSON, validating, series lookup, duplicate check, ``latest``, late-sample marking, XACK),
so the ratio says how much of PostgreSQL's raw write speed the pipeline keeps.

Each run uses a fresh database and fresh streams, times the engine draining the whole backlog
(``run(once=True)``: every entry read, stored and acknowledged), then times the reference COPY
right after it, so both see the same machine load; the verdict uses the median ratio of the runs.
The batches are published before the engine starts and then dropped, so the engine runs with the
heap a real engine process has, not with the benchmark's 300,000 sample objects.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from agent.contract import Batch, Sample, stream_key  # noqa: E402
from devtools.services import PrivatePostgres, PrivateRedis  # noqa: E402
from panel.engine import Engine  # noqa: E402
from panel.migrations import apply_migrations  # noqa: E402

TARGET = 0.5


def make_batch(b: int, start: float, samples: int) -> Batch:
    """Batch number ``b`` of a host: 50 metric names x (samples / 50) label values, one ts."""
    return Batch(ts=start + b * 15, samples=[
        Sample(f"poolwarden_bench_metric_{i % 50}", float(b * i % 997), {"n": str(i // 50)})
        for i in range(samples)])


def publish(client: redis.Redis, hosts: int, batches: int, samples: int) -> int:
    """XADD every batch (host by host, interleaved in time like real agents); returns the sample count."""
    start = time.time() - batches * 15
    total = 0
    with client.pipeline(transaction=False) as pipe:
        for b in range(batches):
            for h in range(hosts):
                batch = make_batch(b, start, samples)
                pipe.xadd(stream_key(f"host-{h}"), batch.to_fields())
                total += len(batch.samples)
            if b % 20 == 19:
                pipe.execute()
        pipe.execute()
    return total


def one_run(pg: PrivatePostgres, rd: PrivateRedis, run: int, args: argparse.Namespace) -> tuple[float, float, int]:
    """(engine seconds, COPY seconds, samples) for one fresh database and fresh streams."""
    dsn = pg.create_database(f"bench_ingest_{run}")
    apply_migrations(dsn)
    client = redis.Redis.from_url(rd.url)
    client.flushdb()
    total = publish(client, args.hosts, args.batches, args.samples)
    client.close()
    gc.collect()
    engine = Engine(dsn, rd.url, block_ms=100)
    started = time.perf_counter()
    engine.run(once=True)
    engine_seconds = time.perf_counter() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert stored == total, (stored, total)
        rows = conn.execute("SELECT series_id, ts, value FROM samples").fetchall()
        conn.execute("CREATE TABLE copy_reference (LIKE samples INCLUDING ALL)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY copy_reference (series_id, ts, value) FROM STDIN "
                                            "(FORMAT BINARY)") as copy:
            copy.set_types(["int8", "timestamptz", "float8"])
            for row in rows:
                copy.write_row(row)
        copy_seconds = time.perf_counter() - started
    pg.drop_database(f"bench_ingest_{run}")
    return engine_seconds, copy_seconds, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--batches", type=int, default=400, help="per host")
    parser.add_argument("--samples", type=int, default=150, help="per batch")
    parser.add_argument("--runs", type=int, default=3, help="fresh database each; the median ratio decides")
    args = parser.parse_args()
    ratios = []
    with PrivatePostgres("bench-ingest-pg") as pg, PrivateRedis("bench-ingest-redis") as rd:
        for run in range(args.runs):
            engine_seconds, copy_seconds, total = one_run(pg, rd, run, args)
            engine_rate, copy_rate = total / engine_seconds, total / copy_seconds
            ratios.append(engine_rate / copy_rate)
            print(f"run {run + 1}: engine (stream -> PostgreSQL) {engine_seconds:.2f} s, {engine_rate:,.0f} samples/s;"
                  f" raw COPY (same rows, same-shaped table: PK + BRIN) {copy_seconds:.2f} s, {copy_rate:,.0f} rows/s;"
                  f" ratio {ratios[-1]:.2f}x")
    ratio = statistics.median(ratios)
    print(f"{args.hosts * args.batches} batches, {total} samples"
          f" ({args.hosts} hosts x {args.batches} x {args.samples})")
    print(f"median ratio {ratio:.2f}x over {args.runs} runs (min {min(ratios):.2f}x, max {max(ratios):.2f}x;"
          f" target >= {TARGET}x): {'met' if ratio >= TARGET else 'MISSED'}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
