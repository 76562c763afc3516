"""Alert storm: 10,000 alert instances fire within 60 s; they must be grouped as configured, every
one must reach the channel (no notification lost), and the panel must keep answering (p95 < 200 ms).

    .venv/bin/python -m bench.bench_alert_storm [--alerts 10000] [--storm-seconds 60] [--hosts 50]

Real parts, each in its own process as in production: PostgreSQL and Redis (private), the panel
under gunicorn (``poolwarden-panel serve``, 2 workers), the dispatcher (``panel.notify.tick`` every
second, as the engine runs it), the delivery worker (``poolwarden-panel notify-worker``) and a
webhook receiver on loopback. Alerts are written into the alerts table as the evaluator writes
them: ``--hosts`` hosts x 10 alert names x N instances (a ``mount`` label). The route groups by
alertname and host (group_wait 10 s, group_interval 30 s). While the storm and the deliveries run,
a client calls the API (hosts, silences, channels, deliveries) 8 times a second and times it.

Checks: every alert instance is in at least one delivered notification; every notification's
alerts share its group labels; no group notified more often than its group interval allows; the
receiver got each notification exactly once (by idempotency key) and as many as the table says.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import requests  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from devtools.services import PrivatePostgres, PrivateRedis, free_port, wait_for_port  # noqa: E402
from panel.migrations import apply_migrations  # noqa: E402
from tests.sinks import WebhookSink  # noqa: E402

TARGET_P95_MS = 200.0
SECRETS_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a fixed bench key (32 bytes)
GROUP_WAIT, GROUP_INTERVAL = 10, 30
ALERT_NAMES = ["DiskFull", "DiskFullForecast", "CpuHigh", "MemoryHigh", "LoadHigh", "ContainerRestarts",
               "ContainerUnhealthy", "CollectorFailing", "InvalidShares", "GrowthAnomaly"]
ENDPOINTS = ["/api/hosts", "/api/admin/silences", "/api/admin/integrations", "/api/admin/deliveries?limit=50"]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def run_dispatcher(dsn: str, redis_url: str, stop_file: str, stats_file: str) -> None:
    """The engine's notify task, alone: ``tick`` every second until ``stop_file`` appears."""
    import redis

    from panel.engine.tasks import TaskContext
    from panel.notify import tick

    ctx = TaskContext(dsn, redis.Redis.from_url(redis_url), {})
    durations = []
    while not os.path.exists(stop_file):
        started = time.monotonic()
        try:
            report = tick(ctx)
            ctx.conn.rollback()
            durations.append({"s": report.seconds, "firing": report.firing, "queued": len(report.notifications)})
        except Exception as exc:  # noqa: BLE001 - reported, and the loop goes on as the engine's would
            print(f"dispatcher: {exc}", file=sys.stderr)
            ctx.reset()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    Path(stats_file).write_text(json.dumps(durations))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--storm-seconds", type=float, default=60.0)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--dispatcher", nargs=4, metavar=("DSN", "REDIS", "STOP", "STATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dispatcher:
        run_dispatcher(*args.dispatcher)
        return 0

    per_group = math.ceil(args.alerts / (args.hosts * len(ALERT_NAMES)))
    sink = WebhookSink().start()
    procs: list[subprocess.Popen] = []
    run_dir = ROOT / ".run" / f"bench-storm-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stop_file, stats_file = run_dir / "stop", run_dir / "dispatcher.json"
    with PrivatePostgres("bench-storm-pg") as pg, PrivateRedis("bench-storm-redis") as rd:
        dsn = pg.create_database("bench")
        apply_migrations(dsn)
        env = {**os.environ, "POOLWARDEN_DATABASE_URL": dsn, "POOLWARDEN_REDIS_URL": rd.url,
               "POOLWARDEN_SECRETS_KEY": SECRETS_KEY, "POOLWARDEN_SECRET_KEY": "bench-secret-key-" + "x" * 20,
               "POOLWARDEN_INSECURE_COOKIES": "1", "POOLWARDEN_NOTIFY_RETRY_INTERVALS": "1,2,4"}
        os.environ.update({k: env[k] for k in ("POOLWARDEN_SECRETS_KEY",)})
        tokens = setup(dsn, sink.url)
        port = free_port()
        panel_bin = str(ROOT / ".venv/bin/poolwarden-panel")
        try:
            procs.append(subprocess.Popen([panel_bin, "serve", "--port", str(port), "--workers", "2"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, "-m", "bench.bench_alert_storm", "--dispatcher", dsn,
                                           rd.url, str(stop_file), str(stats_file)], env=env, cwd=ROOT))
            procs.append(subprocess.Popen([panel_bin, "notify-worker"], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            wait_for_port(port, timeout=30)
            base = f"http://127.0.0.1:{port}"
            for path in ENDPOINTS:  # warm up each gunicorn worker
                for token in tokens:
                    requests.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)

            latencies: list[float] = []
            errors: list[str] = []
            done = threading.Event()
            client = threading.Thread(target=request_loop, args=(base, tokens, latencies, errors, done), daemon=True)
            client.start()
            started = time.monotonic()
            storm(dsn, args.alerts, args.storm_seconds, args.hosts, per_group)
            storm_took = time.monotonic() - started
            # the last alerts wait group_wait (new group) or up to group_interval (existing one), then delivery
            settled = wait_settled(dsn, sink, deadline=time.monotonic() + GROUP_WAIT + 2 * GROUP_INTERVAL + 60)
            done.set()
            client.join()
            total = time.monotonic() - started
        finally:
            stop_file.touch()
            time.sleep(1.5)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            sink.stop()
        ticks = json.loads(stats_file.read_text()) if stats_file.exists() else []
        shutil.rmtree(run_dir, ignore_errors=True)
        ok = report(dsn, sink, args, per_group, latencies, errors, ticks, storm_took, total, settled)
    return 0 if ok else 1


def setup(dsn: str, sink_url: str) -> list[str]:
    from panel.auth.principal import Principal
    from panel.notify.store import route_spec, save_integration, save_route
    from panel.tokens.store import create_token

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        save_integration(conn, name="storm-hook", kind="webhook", values={"url": sink_url, "secret": "bench"},
                         enabled=True, by="bench")
        save_route(conn, route_spec({"name": "all", "integrations": ["storm-hook"], "groupBy": ["alertname", "host"],
                                     "groupWaitSeconds": GROUP_WAIT, "groupIntervalSeconds": GROUP_INTERVAL,
                                     "repeatIntervalSeconds": 3600}), by="bench")
        user_id = conn.execute("INSERT INTO users (username, role, password_hash) VALUES ('bench', 'admin', 'x')"
                               " RETURNING id").fetchone()["id"]
        owner = Principal("user", user_id, "bench", "admin", user_id)
        tokens = [create_token(conn, name=f"bench-{n}", role="admin", owner=owner, expires_in_days=1).token
                  for n in range(4)]
        for name in ALERT_NAMES:
            conn.execute("INSERT INTO alert_rules (name, type, severity) VALUES (%s, 'threshold', 'warning')", (name,))
    return tokens


def storm(dsn: str, count: int, seconds: float, hosts: int, per_group: int) -> None:
    """Write ``count`` firing alerts spread evenly over ``seconds``, in batches every 0.5 s."""
    instances = [(name, f"pool-{h:03d}", f"/mnt/{i}") for i in range(per_group) for h in range(hosts)
                 for name in ALERT_NAMES][:count]
    batches = max(1, int(seconds / 0.5))
    size = math.ceil(len(instances) / batches)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rules = dict(conn.execute("SELECT name, id FROM alert_rules").fetchall())
        started = time.monotonic()
        for n in range(batches):
            chunk = instances[n * size:(n + 1) * size]
            if not chunk:
                break
            now = datetime.now(UTC)
            with conn.cursor() as cur, cur.copy("COPY alerts (rule_id, fingerprint, labels, annotations, state,"
                                                " severity, value, active_since, fired_at, last_eval_at)"
                                                " FROM STDIN") as copy:
                for name, host, mount in chunk:
                    labels = {"alertname": name, "host": host, "mount": mount, "severity": "warning",
                              "rule_type": "threshold", "component": "system"}
                    copy.write_row((rules[name], f"{name}|{host}|{mount}", Jsonb(labels),
                                    Jsonb({"summary": f"{name} on {host} {mount}"}), "firing", "warning", 1.0,
                                    now, now, now))
            time.sleep(max(0.0, started + (n + 1) * 0.5 - time.monotonic()))


def request_loop(base: str, tokens: list[str], latencies: list[float], errors: list[str],
                 done: threading.Event) -> None:
    session = requests.Session()
    n = 0
    while not done.is_set():
        path = ENDPOINTS[n % len(ENDPOINTS)]
        token = tokens[n % len(tokens)]
        started = time.perf_counter()
        try:
            response = session.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if response.status_code != 200:
                errors.append(f"{path}: {response.status_code}")
        except requests.RequestException as exc:
            errors.append(f"{path}: {exc}")
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
        time.sleep(max(0.0, 0.125 - (time.perf_counter() - started)))


def wait_settled(dsn: str, sink: WebhookSink, deadline: float) -> bool:
    """True once every firing alert was notified (in a sent notification) and nothing is queued."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            unsent = conn.execute(
                "SELECT count(*) FROM alerts a WHERE a.state = 'firing' AND NOT EXISTS (SELECT 1 FROM notifications n"
                " WHERE n.status = 'sent' AND a.fingerprint = ANY(n.fingerprints))").fetchone()[0]
            queued = conn.execute("SELECT count(*) FROM notifications WHERE status = 'queued'").fetchone()[0]
            if unsent == 0 and queued == 0:
                return True
            time.sleep(1)
    return False


def report(dsn, sink, args, per_group, latencies, errors, ticks, storm_took, total, settled) -> bool:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        alerts = conn.execute("SELECT count(*) AS n FROM alerts").fetchone()["n"]
        sent = conn.execute("SELECT id, group_id, idempotency_key, fingerprints, payload, created_at, sent_at"
                            " FROM notifications WHERE kind = 'alerts' ORDER BY id").fetchall()
        statuses = {r["status"]: r["count"] for r in conn.execute(
            "SELECT status, count(*) AS count FROM notifications GROUP BY status")}
        attempts = conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"]
    covered = {fp for n in sent for fp in n["fingerprints"]}
    received_keys = [r.headers.get("x-poolwarden-idempotency-key") for r in sink.requests if r.status < 300]
    misgrouped = sum(1 for n in sent for a in n["payload"]["alerts"]
                     if any(a["labels"].get(k) != v for k, v in n["payload"]["groupLabels"].items()))
    by_group = defaultdict(list)
    for n in sent:
        by_group[n["group_id"]].append(n["created_at"])
    too_close = sum(1 for times in by_group.values() for a, b in zip(times, times[1:], strict=False)
                    if (b - a).total_seconds() < GROUP_INTERVAL - 1.5)
    delivery = [(n["sent_at"] - n["created_at"]).total_seconds() for n in sent if n["sent_at"]]
    tick_seconds = [t["s"] for t in ticks if t["firing"]]
    groups = args.hosts * len(ALERT_NAMES)

    checks = {
        "every alert instance notified": len(covered) == alerts == args.alerts,
        "grouped by alertname+host": misgrouped == 0 and len(by_group) == min(groups, args.alerts),
        "no group notified more often than group_interval": too_close == 0,
        "nothing lost or sent twice": (len(received_keys) == len(set(received_keys)) == len(sent)
                                       and statuses.get("sent") == len(sent)),
        "everything settled in time": settled,
        f"panel p95 < {TARGET_P95_MS:.0f} ms": p95(latencies) < TARGET_P95_MS and not errors,
    }
    print(f"alert storm: {alerts} alerts written in {storm_took:.1f} s ({args.hosts} hosts x {len(ALERT_NAMES)} "
          f"names x {per_group}), groups by alertname+host: {len(by_group)} (expected {groups})")
    print(f"notifications: {len(sent)} ({statuses}), delivery attempts {attempts}, received {len(sink.requests)} "
          f"requests ({len(set(received_keys))} distinct keys); alerts covered {len(covered)}/{alerts}")
    if delivery:
        print(f"queue -> delivered: median {statistics.median(delivery):.2f} s, p95 {p95(delivery):.2f} s, "
              f"max {max(delivery):.2f} s")
    if tick_seconds:
        print(f"dispatcher turn with alerts firing: median {statistics.median(tick_seconds) * 1000:.0f} ms, "
              f"p95 {p95(tick_seconds) * 1000:.0f} ms, max {max(tick_seconds) * 1000:.0f} ms "
              f"({len(tick_seconds)} turns)")
    print(f"panel API during the storm ({len(latencies)} requests over {total:.0f} s, {len(errors)} errors): "
          f"median {statistics.median(latencies):.1f} ms, p95 {p95(latencies):.1f} ms, max {max(latencies):.1f} ms "
          f"-> {p95(latencies) / TARGET_P95_MS:.2f}x the {TARGET_P95_MS:.0f} ms target")
    for error in errors[:5]:
        print(f"  error: {error}")
    for name, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")
    return all(checks.values())


if __name__ == "__main__":
    raise SystemExit(main())
