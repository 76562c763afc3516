"""Dashboard/API server time: a 7-day graph over 7 days of 15 s history for 5 hosts.

    .venv/bin/python -m bench.bench_dashboard [--hosts 5] [--series 24] [--requests 200]

History is generated directly in SQL (one sample every 15 s for 7 days per series), rolled up with
the engine's own rollup code (timed too), then the series API is called through the Flask test
client, signed in with a session, and timed server-side. Target: p95 < 100 ms for range=7d. For
reference in the same run: the same graph computed from raw samples alone (what it would cost
without rollups) and the host page render.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from devtools.services import PrivatePostgres, PrivateRedis  # noqa: E402
from panel import create_app  # noqa: E402
from panel.auth.principal import Principal  # noqa: E402
from panel.engine.rollups import run_rollups  # noqa: E402
from panel.hosts.history import RANGES, GraphRange  # noqa: E402
from panel.migrations import apply_migrations  # noqa: E402

TARGET_MS = 100.0
GRAPH = ["poolwarden_cpu_usage_percent", "poolwarden_cpu_iowait_percent"]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--series", type=int, default=24, help="series per host with 7 days of history")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with PrivatePostgres("bench-dash-pg") as pg, PrivateRedis("bench-dash-redis") as rd:
        dsn = pg.create_database("bench")
        apply_migrations(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            for h in range(args.hosts):
                host_id = conn.execute("INSERT INTO hosts (name) VALUES (%s) RETURNING id",
                                       (f"pool-{h}",)).fetchone()[0]
                names = GRAPH + [f"poolwarden_bench_{i}" for i in range(args.series - len(GRAPH))]
                for name in names:
                    sid = conn.execute("INSERT INTO series (host_id, name) VALUES (%s, %s) RETURNING id",
                                       (host_id, name)).fetchone()[0]
                    conn.execute(
                        "INSERT INTO samples (series_id, ts, value) SELECT %s, g, 50 + 30 * sin(extract(epoch FROM g)"
                        " / 3600) + random() * 5 FROM generate_series(date_trunc('minute', now()) - interval '7 days',"
                        " now(), interval '15 seconds') g", (sid,))
                    conn.execute("INSERT INTO latest SELECT series_id, ts, value FROM samples WHERE series_id = %s"
                                 " ORDER BY ts DESC LIMIT 1", (sid,))
            rows = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
            generate_s = time.perf_counter() - started
            conn.execute("VACUUM ANALYZE")
            started = time.perf_counter()
            while run_rollups(conn, max_chunks=1000).backlog:
                pass
            rollup_s = time.perf_counter() - started
            conn.execute("VACUUM ANALYZE")
        print(f"history: {rows:,} raw samples ({args.hosts} hosts x {args.series} series x 7 d @ 15 s), "
              f"generated in {generate_s:.1f} s; first rollup of all of it: {rollup_s:.1f} s "
              f"({rows / rollup_s:,.0f} samples/s)")

        app = create_app({"TESTING": True, "SECRET_KEY": "bench-secret-key-0123456789", "DATABASE_URL": dsn,
                          "REDIS_URL": rd.url})

        @app.before_request
        def signed_in():  # the bench measures the API, not the sign-in: play a logged-in viewer
            from flask import g
            g.principal = Principal(kind="user", id=1, name="bench", role="viewer", user_id=1)

        client = app.test_client()
        url = "/api/hosts/pool-{h}/series?name=" + "&name=".join(GRAPH) + "&range={r}"

        def timed(path: str) -> tuple[float, dict]:
            started = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return elapsed, response.get_json(silent=True)

        results = {}
        for r in ("7d", "24h", "30d", "1h"):
            times, points = [], 0
            for _ in range(args.requests if r == "7d" else args.requests // 4):
                elapsed, body = timed(url.format(h=random.randrange(args.hosts), r=r))
                times.append(elapsed)
                points = len(body["timestamps"])
            results[r] = times
            print(f"series API range={r:>3}: p50 {statistics.median(times):6.1f} ms, p95 {p95(times):6.1f} ms, "
                  f"{points} points ({body['resolution']})")
        # reference: the 7-day graph from raw samples only (no rollups)
        RANGES["7d-raw"] = GraphRange(RANGES["7d"].span, "raw", RANGES["7d"].step)
        raw_times = [timed(url.format(h=random.randrange(args.hosts), r="7d-raw"))[0] for _ in range(20)]
        page_times = [timed(f"/hosts/pool-{random.randrange(args.hosts)}")[0] for _ in range(40)]
        print(f"reference: 7d graph from raw samples only: p50 {statistics.median(raw_times):.1f} ms, "
              f"p95 {p95(raw_times):.1f} ms")
        print(f"host page render: p50 {statistics.median(page_times):.1f} ms, p95 {p95(page_times):.1f} ms")
        got = p95(results["7d"])
        print(f"7d graph p95 {got:.1f} ms vs target {TARGET_MS:.0f} ms: {got / TARGET_MS:.2f}x of the budget, "
              f"{statistics.median(raw_times) / statistics.median(results['7d']):.1f}x faster than raw; "
              f"{'met' if got < TARGET_MS else 'MISSED'}")
        return 0 if got < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
