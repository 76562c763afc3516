"""``poolwarden-agent``: the pool-host agent's command line.

    poolwarden-agent collect [--config-dir D] [--once] [--cycles N] [--interval S] [--print]
    poolwarden-agent once [--config-dir D]            # = collect --once --print (no Redis)
    poolwarden-agent check-config [--config-dir D]
    poolwarden-agent work [--config-dir D] [--burst]  # the maintenance worker (RQ queue maint:<host>)
    poolwarden-agent safe-mode on|off|status [--reason TEXT] [--config-dir D]

Exit codes: 0 done, 2 configuration refused, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from agent.config import CONFIG_DIR_ENV, DEFAULT_CONFIG_DIR, Config, ConfigError, load_config
from agent.contract import Batch

log = logging.getLogger("agent")

EXIT_CONFIG = 2


def format_batch(batch: Batch) -> str:
    """Prometheus-like text, one sample per line, for operators (``--print``)."""
    lines = [f"# batch {batch.id} seq {batch.seq} ts {batch.ts:.3f} agent {batch.agent_version}"]
    for event in batch.events:
        lines.append(f"# event {event.kind} {event.id} {json.dumps(event.data, sort_keys=True)}")
    for s in sorted(batch.samples, key=lambda s: (s.name, sorted(s.labels.items()))):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        value = int(s.value) if s.value.is_integer() and abs(s.value) < 2**53 else s.value
        suffix = f" {s.ts:.3f}" if s.ts else ""
        lines.append(f"{s.name}{{{labels}}} {value}{suffix}" if labels else f"{s.name} {value}{suffix}")
    return "\n".join(lines)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolwarden-agent", description="poolwarden pool-host agent")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    def config_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config-dir", default=None,
                       help=f"directory with pool.json and monitoring.json (default: ${CONFIG_DIR_ENV} "
                            f"or {DEFAULT_CONFIG_DIR})")

    collect = sub.add_parser("collect", help="collect samples and send them to Redis")
    config_dir(collect)
    collect.add_argument("--once", action="store_true", help="one cycle, then exit")
    collect.add_argument("--cycles", type=positive_int, default=None, help="stop after N cycles")
    collect.add_argument("--interval", type=positive_float, default=None,
                         help="seconds between cycles (default: intervals.collectSeconds)")
    collect.add_argument("--print", dest="print_only", action="store_true",
                         help="print the samples instead of sending them (no Redis, no spool)")

    once = sub.add_parser("once", help="collect once and print the samples (no Redis)")
    config_dir(once)
    once.add_argument("--print", dest="print_only", action="store_true", default=True,
                      help="print the samples (the default and only mode)")

    check = sub.add_parser("check-config", help="validate the configuration files")
    config_dir(check)

    work = sub.add_parser("work", help="run the maintenance worker on this host's queue maint:<host>")
    config_dir(work)
    work.add_argument("--burst", action="store_true", help="run the queued jobs, then exit")

    safe = sub.add_parser("safe-mode", help="refuse every destructive action on this host while on")
    config_dir(safe)
    safe.add_argument("state", choices=["on", "off", "status"])
    safe.add_argument("--reason", default="", help="why (shown with every refusal)")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def load_or_report(config_dir: str | None) -> Config | None:
    try:
        return load_config(config_dir)
    except ConfigError as exc:
        print(f"poolwarden-agent: configuration refused: {exc}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_or_report(args.config_dir)
    if config is None:
        return EXIT_CONFIG
    print(f"OK: {config.config_dir}")
    for key, value in config.summary().items():
        print(f"  {key}: {value if not isinstance(value, list) else ', '.join(value)}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from agent.runner import Agent

    config = load_or_report(args.config_dir)
    if config is None:
        return EXIT_CONFIG
    once = args.command == "once" or args.once
    cycles = 1 if once else args.cycles
    interval = getattr(args, "interval", None) or float(config.monitoring.intervals.collect_seconds)
    print_only = args.print_only

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping after the current cycle", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent = Agent.from_config(config, publish=not print_only, background=not once)
    except OSError as exc:  # the spool directory cannot be created or read
        print(f"poolwarden-agent: cannot start: spool directory {config.monitoring.agent.spool_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    log.info("agent %s started for host %s: every %g s%s, sending to %s", agent.version, config.host, interval,
             f", {cycles} cycles" if cycles else "", "stdout" if print_only else config.summary()["redis"])
    try:
        agent.run(cycles, interval, stop,
                  on_batch=(lambda b: print(format_batch(b), flush=True)) if print_only else None)
    finally:
        agent.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("agent stopped after %d batches", agent.seq)
    return 0


def cmd_work(args: argparse.Namespace) -> int:
    import redis

    from agent.worker import WorkerSetupError, build_worker, read_job_key

    config = load_or_report(args.config_dir)
    if config is None:
        return EXIT_CONFIG
    try:
        key = read_job_key(config.monitoring.maintenance.job_key_file)
    except WorkerSetupError as exc:
        print(f"poolwarden-agent: cannot start the worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import time

    redis_where = config.summary()["redis"]
    while True:
        try:  # RQ's worker talks to Redis from its constructor on: a Redis that is down is waited for
            worker = build_worker(config, key, config.monitoring.agent.redis_url)
            log.info("maintenance worker %s on queue maint:%s, Redis at %s", worker.name, config.host, redis_where)
            worker.work(burst=args.burst, logging_level=args.log_level, with_scheduler=False)
            return 0
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if args.burst:
                print(f"poolwarden-agent: Redis at {redis_where} is unreachable: {exc}", file=sys.stderr)
                return 1
            log.warning("Redis at %s is unreachable (%s): retrying in 5 s", redis_where, exc)
            time.sleep(5)


def cmd_safe_mode(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agent.worker import local_safe_mode

    config = load_or_report(args.config_dir)
    if config is None:
        return EXIT_CONFIG
    path = config.monitoring.maintenance.safe_mode_file
    if not path:
        print("poolwarden-agent: maintenance.safeModeFile is not set in monitoring.json", file=sys.stderr)
        return EXIT_CONFIG
    if args.state == "on":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text((args.reason or "switched on with poolwarden-agent safe-mode on") + "\n",
                              encoding="utf-8")
    elif args.state == "off":
        Path(path).unlink(missing_ok=True)
    reason = local_safe_mode(config)
    print(f"safe mode is {'ON: ' + reason if reason else 'off'} on {config.host} ({path})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "check-config":
        return cmd_check_config(args)
    if args.command == "work":
        return cmd_work(args)
    if args.command == "safe-mode":
        return cmd_safe_mode(args)
    return cmd_collect(args)


if __name__ == "__main__":
    sys.exit(main())
