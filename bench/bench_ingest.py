"""Ingest throughput: samples per second from the Redis streams into PostgreSQL through the engine,
against a raw ``COPY`` of the same rows into a same-shaped table (the reference, same run).

    .venv/bin/python -m bench.bench_ingest [--hosts 5] [--batches 400] [--samples 150]

Target: engine >= 0.5x the COPY rate. The engine does more per row than COPY (parsing JSON,
series lookup, duplicate check, ``latest``, late-sample marking, one transaction per batch), so the
ratio says how much of PostgreSQL's raw write speed the pipeline keeps.
"""

from __future__ import annotations

import argparse
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


def make_batches(hosts: int, batches: int, samples: int) -> list[tuple[str, Batch]]:
    start = time.time() - batches * 15
    out = []
    for b in range(batches):
        for h in range(hosts):
            ts = start + b * 15
            out.append((f"host-{h}", Batch(ts=ts, samples=[
                Sample(f"poolwarden_bench_metric_{i % 50}", float(b * i % 997), {"n": str(i // 50)})
                for i in range(samples)])))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--batches", type=int, default=400, help="per host")
    parser.add_argument("--samples", type=int, default=150, help="per batch")
    args = parser.parse_args()
    with PrivatePostgres("bench-ingest-pg") as pg, PrivateRedis("bench-ingest-redis") as rd:
        dsn = pg.create_database("bench")
        apply_migrations(dsn)
        batches = make_batches(args.hosts, args.batches, args.samples)
        total = sum(len(b.samples) for _h, b in batches)
        client = redis.Redis.from_url(rd.url)
        for host, batch in batches:
            client.xadd(stream_key(host), batch.to_fields())
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
        engine_rate, copy_rate = total / engine_seconds, total / copy_seconds
        ratio = engine_rate / copy_rate
        print(f"{len(batches)} batches, {total} samples ({args.hosts} hosts x {args.batches} x {args.samples})")
        print(f"engine (stream -> PostgreSQL): {engine_seconds:.2f} s, {engine_rate:,.0f} samples/s")
        print(f"raw COPY, same rows, same-shaped table (PK + BRIN): {copy_seconds:.2f} s, {copy_rate:,.0f} rows/s")
        print(f"ratio {ratio:.2f}x (target >= {TARGET}x): {'met' if ratio >= TARGET else 'MISSED'}")
        return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
