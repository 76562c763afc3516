"""``poolsim run``: start the simulated pool and print one JSON "ready" line on stdout."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime

from poolsim.store import DatabaseUnavailable


def _start_time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not epoch seconds or ISO-8601: {value}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolsim", description="Simulated Miningcore + Ergo node pool")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the simulated pool")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--db-dsn", required=True, help="PostgreSQL DSN for Miningcore's schema")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--api-port", type=int, default=0, help="Miningcore API port (0: pick a free one)")
    run.add_argument("--node-port", type=int, default=0, help="Ergo node API port (0: pick a free one)")
    run.add_argument("--control-port", type=int, default=0, help="control API port (0: pick a free one)")
    run.add_argument("--log-dir", default=None, help="write miningcore.log, api.log and <poolId>.log here")
    run.add_argument("--history-days", type=float, default=3.0)
    run.add_argument("--speed", type=float, default=1.0, help="sim seconds per real second")
    run.add_argument("--stats-interval", type=int, default=120, help="sim seconds between stats rows")
    run.add_argument("--payout-interval", type=int, default=600, help="sim seconds between payout runs")
    run.add_argument("--pool-id", default="ergo1")
    run.add_argument("--node-api-key", default="hello")
    run.add_argument("--start-time", type=_start_time, default=None,
                     help="sim start (epoch seconds or ISO-8601; default: now) for reproducible runs")
    run.add_argument("--paused", action="store_true", help="start with the clock paused")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from poolsim.app import PoolSim

    if args.speed <= 0:
        print("poolsim: --speed must be positive", file=sys.stderr)
        return 2
    sim = PoolSim(seed=args.seed, dsn=args.db_dsn, pool_id=args.pool_id, history_days=args.history_days,
                  speed=args.speed, stats_interval=args.stats_interval, payout_interval=args.payout_interval,
                  log_dir=args.log_dir, node_api_key=args.node_api_key, start=args.start_time,
                  paused=args.paused, host=args.host, api_port=args.api_port, node_port=args.node_port,
                  control_port=args.control_port)
    try:
        sim.start()
    except DatabaseUnavailable as exc:
        print(f"poolsim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"poolsim: cannot listen on {args.host}: {exc}", file=sys.stderr)
        sim.stop()
        return 2

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(json.dumps({"ready": True, **sim.urls}), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
