"""Alert precision: replay labelled traces through the built-in rules; every incident must be alerted
and under 1 % of the alerts may be false.

    .venv/bin/python -m bench.bench_alert_precision              # replay tests/data/alert_traces/
    .venv/bin/python -m bench.bench_alert_precision --generate   # re-record the traces (about a minute)

**Recording** (``--generate``): poolsim runs in-process on a paused clock and is stepped 15 s at a
time for 6 h 20 min of simulated time; at each step the agent's own collectors (Miningcore API and
``/metrics``, Ergo node, pool events) read it exactly as on a pool host, with the faults of the
schedule switched on and off through poolsim's control API (pool API down, node down, node stalled,
no peers, an invalid-share spike, an orphaned block). The host's own figures (CPU, memory, load,
disks, containers, Miningcore's PostgreSQL) are generated beside it with noise that comes close to
the thresholds without crossing them for long (CPU spikes of 2-3 minutes, a disk hovering at
76-79 %, connections at 60-75 %, single container restarts, 30-second gaps in the batches) and the
host incidents of the schedule (a disk filling, CPU and memory saturated, a container restart loop,
a stopped container, the database down, connections near max, five minutes without a batch).
Each step is one line of ``trace.jsonl.gz`` (time, samples, events); ``incidents.json`` lists
every incident: its window, the alerts it must raise and the alerts it may cause.

**Replay**: a private PostgreSQL, the built-in rules as provisioned by default, each step written as
the engine writes a batch (series, samples, latest, events, ``hosts.last_seen``), rollups every
minute, and one evaluation per step on the trace's clock. An incident is **caught** when each alert
it must raise fired between its start and 20 minutes after its end; an alert that fired outside
every incident (or of a type the incident does not explain) is **false**.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from devtools.services import PrivatePostgres  # noqa: E402
from panel.alerts.config import builtin_rules  # noqa: E402
from panel.alerts.evaluator import Evaluator  # noqa: E402
from panel.alerts.store import provision  # noqa: E402
from panel.engine.rollups import run_rollups  # noqa: E402
from panel.migrations import apply_migrations  # noqa: E402

TRACES = ROOT / "tests" / "data" / "alert_traces"
STEP = 15
MINUTES = 380
HOST = "pool-sim"
SLACK = timedelta(minutes=20)
FALSE_TARGET = 0.01
NODE_EFFECTS = ["node_sync_lag", "node_height_stalled", "node_no_peers", "collector_failing"]

# (name, start minute, minutes, poolsim fault or host incident, alerts it must raise, alerts it may cause)
SCHEDULE = [
    ("Miningcore API down", 60, 8, ("fault", "pool_api_down", {}), [("pool_down", {"pool": "ergo1"})],
     ["collector_failing", "pool_hashrate_drop", "pool_no_miners", "pool_invalid_shares"]),
    ("Ergo node down", 100, 8, ("fault", "node_down", {}), [("node_down", {})], NODE_EFFECTS),
    ("Ergo node stalled", 140, 25, ("fault", "node_stalled", {}),
     [("node_height_stalled", {}), ("node_sync_lag", {})], NODE_EFFECTS),
    ("Ergo node without peers", 190, 10, ("fault", "zero_peers", {}), [("node_no_peers", {})], NODE_EFFECTS),
    ("Database down", 200, 6, ("host", "db_down", {}), [("database_down", {})], ["collector_failing"]),
    ("Invalid-share spike", 215, 15, ("fault", "invalid_share_spike", {"ratio": 0.3}),
     [("pool_invalid_shares", {"pool": "ergo1"})], []),
    ("Connections near max", 240, 10, ("host", "db_connections", {}), [("database_connections", {})], []),
    ("Orphaned block", 260, 1, ("orphan", None, {}), [("block_orphaned", {"pool": "ergo1"})], []),
    ("Disk /data filling", 270, 62, ("host", "disk_fill", {}), [("disk_usage", {"mount": "/data"})],
     ["disk_full_forecast", "component_growth"]),
    ("CPU saturated", 300, 15, ("host", "cpu", {}), [("cpu_high", {})], ["load_high"]),
    ("Memory exhausted", 318, 15, ("host", "memory", {}), [("memory_high", {})], []),
    ("Container restart loop", 338, 12, ("host", "restart_loop", {}),
     [("container_restarts", {"container": "miningcore"})], []),
    ("Container stopped", 354, 8, ("host", "stopped", {}), [("container_unhealthy", {"container": "nginx"})], []),
    ("Agent silent", 366, 5, ("host", "silent", {}), [("agent_silent", {})], []),
]


# -- recording ---------------------------------------------------------------------------------------


def active(kind: str, minute: float) -> bool:
    return any(entry[3][:2] == ("host", kind) and entry[1] <= minute < entry[1] + entry[2] for entry in SCHEDULE)


class HostModel:
    """The host's own figures: noise near the thresholds, and the host incidents of the schedule."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.restarts = 4.0
        self.cpu_spike_until = -1.0
        self.gap_until = -1.0
        self.data_percent = 77.0

    def samples(self, minute: float) -> list[tuple[str, dict[str, str], float]]:
        r = self.rng
        if minute >= self.cpu_spike_until and r.random() < 0.004:     # a 2-3 minute spike, now and then
            self.cpu_spike_until = minute + r.uniform(2, 3)
        if active("cpu", minute):
            cpu = r.uniform(95, 99.5)
        elif minute < self.cpu_spike_until:
            cpu = r.uniform(91, 98)
        else:
            cpu = 35 + 15 * math.sin(minute / 40) + r.uniform(-5, 12)
        memory = r.uniform(94, 97) if active("memory", minute) else 82 + 3 * math.sin(minute / 25) + r.uniform(0, 3)
        if active("disk_fill", minute):
            self.data_percent = min(96.0, self.data_percent + 0.45 * STEP / 60)
        elif self.data_percent > 80:                                  # cleaned up after the incident
            self.data_percent = 62.0
        else:
            self.data_percent = min(79.0, max(76.0, self.data_percent + r.uniform(-0.3, 0.3)))
        disk_total = 1000 * 2**30
        data_used = self.data_percent / 100 * disk_total
        if active("restart_loop", minute) and r.random() < STEP / 120:   # a restart every two minutes or so
            self.restarts += 1
        elif r.random() < 0.0015:                                         # a single restart: no alert
            self.restarts += 1
        cores = 8
        load = (cpu / 100) * cores * r.uniform(0.8, 1.3)
        connections = r.uniform(85, 92) if active("db_connections", minute) else r.uniform(60, 75)
        out = [
            ("poolwarden_cpu_usage_percent", {}, round(cpu, 2)),
            ("poolwarden_cpu_count", {}, cores),
            ("poolwarden_memory_used_percent", {}, round(memory, 2)),
            ("poolwarden_memory_total_bytes", {}, 32 * 2**30),
            ("poolwarden_load1", {}, round(load, 2)), ("poolwarden_load5", {}, round(load * 0.9, 2)),
            ("poolwarden_load15", {}, round(load * 0.8, 2)),
            ("poolwarden_disk_used_percent", {"mount": "/data"}, round(self.data_percent, 3)),
            ("poolwarden_disk_used_bytes", {"mount": "/data"}, round(data_used)),
            ("poolwarden_disk_free_bytes", {"mount": "/data"}, round(disk_total - data_used)),
            ("poolwarden_disk_used_percent", {"mount": "/"}, round(41 + r.uniform(-0.2, 0.2), 3)),
            ("poolwarden_disk_used_bytes", {"mount": "/"}, round(41 * 2**30)),
            ("poolwarden_disk_free_bytes", {"mount": "/"}, round(59 * 2**30)),
            ("poolwarden_postgres_up", {}, 0 if active("db_down", minute) else 1),
            ("poolwarden_agent_heartbeat_timestamp_seconds", {}, 0),
        ]
        if not active("db_down", minute):
            out += [("poolwarden_postgres_connections", {}, round(connections)),
                    ("poolwarden_postgres_max_connections", {}, 100),
                    ("poolwarden_postgres_longest_query_seconds", {}, round(r.choice([0, 0, 0, 3, 40, 200]))),
                    ("poolwarden_postgres_longest_transaction_seconds", {}, round(r.uniform(0, 900)))]
        out.append(("poolwarden_collector_up", {"collector": "postgresql"}, 0 if active("db_down", minute) else 1))
        for container in ("miningcore", "postgres", "nginx"):
            running = 0 if container == "nginx" and active("stopped", minute) else 1
            out += [("poolwarden_container_running", {"container": container}, running),
                    ("poolwarden_container_restart_count", {"container": container},
                     self.restarts if container == "miningcore" else 0)]
        out.append(("poolwarden_container_healthy", {"container": "postgres"}, 1))
        return out

    def reports(self, minute: float) -> bool:
        """False while the agent is silent (the incident) or in a short gap (noise, under a minute)."""
        if active("silent", minute):
            return False
        if minute >= self.gap_until and self.rng.random() < 0.003:
            self.gap_until = minute + 0.5
        return minute >= self.gap_until


def generate(out_dir: Path, seed: int) -> None:
    import requests

    from agent.collectors.base import run_collector
    from agent.collectors.ergo_node import ErgoNodeCollector
    from agent.collectors.miningcore import MiningcoreCollector
    from agent.collectors.miningcore_metrics import MiningcoreMetricsCollector
    from agent.collectors.pool_events import PoolEventsCollector
    from poolsim import PoolSim

    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    out_dir.mkdir(parents=True, exist_ok=True)
    host = HostModel(seed)
    with PrivatePostgres("alert-traces-pg") as pg, tempfile.TemporaryDirectory() as state_dir:
        dsn = pg.create_database("miningcore")
        with PoolSim(seed=seed, dsn=dsn, paused=True, history_days=0.5, stats_interval=60, start=start) as sim:
            urls = sim.urls
            session = requests.Session()
            sim_now = lambda: sim.sim.t  # noqa: E731 - the collectors' clock is the simulation's
            collectors = [MiningcoreCollector(session, urls["api"], timeout=2),
                          MiningcoreMetricsCollector(session, urls["api"] + "/metrics", timeout=2, clock=sim_now),
                          ErgoNodeCollector(session, urls["node"], api_key="hello", timeout=2),
                          PoolEventsCollector(session, urls["api"], state_dir, pool_ids=["ergo1"], timeout=2,
                                              backfill=5, clock=sim_now)]
            lines, faults_on = [], set()
            started = time.perf_counter()
            for step in range(MINUTES * 60 // STEP):
                minute = step * STEP / 60
                for _name, first, length, (kind, fault, params), _must, _may in SCHEDULE:
                    if kind == "fault" and first <= minute < first + length and fault not in faults_on:
                        requests.post(f"{urls['control']}/faults/{fault}", json=params, timeout=5).raise_for_status()
                        faults_on.add(fault)
                    elif kind == "fault" and minute >= first + length and fault in faults_on:
                        requests.delete(f"{urls['control']}/faults/{fault}", timeout=5).raise_for_status()
                        faults_on.discard(fault)
                    elif kind == "orphan" and minute == first:
                        requests.post(f"{urls['control']}/blocks/find", timeout=5).raise_for_status()
                        sim.step(STEP)
                        requests.post(f"{urls['control']}/faults/orphan_block", json={}, timeout=5).raise_for_status()
                sim.step(STEP)
                sim.sync_servers()
                now = sim.sim.t
                samples, events = [], []
                for collector in collectors:
                    result = run_collector(collector)
                    samples += [(s.name, s.labels, s.value) for s in result.samples]
                    samples.append(("poolwarden_collector_up", {"collector": collector.name}, 1 if result.ok else 0))
                    events += [(e.id, e.kind, e.ts, e.data) for e in result.events]
                    collector.commit_memory()
                samples += host.samples(minute)
                if host.reports(minute):
                    samples = [(n, lab, now if n == "poolwarden_agent_heartbeat_timestamp_seconds" else v)
                               for n, lab, v in samples]
                    lines.append(json.dumps({"t": now, "s": samples, "e": events}, separators=(",", ":")))
            took = time.perf_counter() - started
    with gzip.open(out_dir / "trace.jsonl.gz", "wt", encoding="utf-8") as out:
        out.write(json.dumps({"host": HOST, "step": STEP, "start": start, "seed": seed,
                              "generator": "bench/bench_alert_precision.py --generate (poolsim + agent collectors)"})
                  + "\n")
        out.write("\n".join(lines) + "\n")
    incidents = [{"name": name, "start": start + first * 60, "end": start + (first + length) * 60,
                  "must": [{"rule_type": t, "labels": labels} for t, labels in must], "may": may}
                 for name, first, length, _how, must, may in SCHEDULE]
    (out_dir / "incidents.json").write_text(json.dumps({"host": HOST, "incidents": incidents}, indent=1) + "\n")
    print(f"recorded {len(lines)} batches ({MINUTES} simulated minutes) in {took:.0f} s into {out_dir}")


# -- replay ------------------------------------------------------------------------------------------


def write_batch(conn: psycopg.Connection, host_id: int, cache: dict, at: datetime, batch: dict) -> None:
    """What the engine writes for one batch: series, samples, latest, events, the host's times."""
    rows = []
    for name, labels, value in batch["s"]:
        key = (name, json.dumps(labels, sort_keys=True))
        if key not in cache:
            cache[key] = conn.execute(
                "INSERT INTO series (host_id, name, labels) VALUES (%s, %s, %s::jsonb) ON CONFLICT (host_id, name,"
                " labels) DO UPDATE SET name = excluded.name RETURNING id", (host_id, name, key[1])).fetchone()[0]
        rows.append((cache[key], at, float(value)))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", rows)
        cur.executemany("INSERT INTO latest (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT (series_id) "
                        "DO UPDATE SET ts = excluded.ts, value = excluded.value", rows)
        cur.executemany("INSERT INTO events (host_id, event_id, kind, ts, data) VALUES (%s, %s, %s, %s, %s::jsonb) "
                        "ON CONFLICT DO NOTHING",
                        [(host_id, eid, kind, datetime.fromtimestamp(ts, UTC), json.dumps(data))
                         for eid, kind, ts, data in batch["e"]])
    conn.execute("UPDATE hosts SET last_seen = %s, last_batch_ts = %s WHERE id = %s", (at, at, host_id))


def replay(trace_dir: Path, dsn: str | None = None) -> dict:
    """Replay a trace into ``dsn`` (an empty database; default: a private server's) and judge the alerts."""
    if dsn is None:
        with PrivatePostgres("alert-precision-pg") as pg:
            return replay(trace_dir, pg.create_database("panel"))
    with gzip.open(trace_dir / "trace.jsonl.gz", "rt", encoding="utf-8") as source:
        meta = json.loads(source.readline())
        batches = [json.loads(line) for line in source if line.strip()]
    incidents = json.loads((trace_dir / "incidents.json").read_text())["incidents"]
    start = datetime.fromtimestamp(meta["start"], UTC)
    apply_migrations(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        provision(conn, builtin_rules(), path="(built-in rules)", checksum=None)
        host_id = conn.execute("INSERT INTO hosts (name, first_seen, last_seen) VALUES (%s, %s, %s) RETURNING id",
                               (meta["host"], start, start)).fetchone()[0]
        evaluator, cache, by_time = Evaluator(stale_after=60), {}, {b["t"]: b for b in batches}
        clock, took = time.perf_counter(), []
        step = 0
        last = max(by_time)
        while meta["start"] + step * meta["step"] <= last + 120:
            t = meta["start"] + step * meta["step"]
            at = datetime.fromtimestamp(t, UTC)
            if t in by_time:
                write_batch(conn, host_id, cache, at, by_time[t])
            if step % 4 == 0:
                run_rollups(conn, now=at)
            began = time.perf_counter()
            report = evaluator.evaluate(conn, at + timedelta(seconds=1))
            took.append(time.perf_counter() - began)
            if report.errors:
                raise RuntimeError(f"rules failed at {at}: {report.errors}")
            step += 1
        fired = conn.execute(
            "SELECT a.id, r.type, a.labels, a.fired_at FROM alerts a JOIN alert_rules r ON r.id = a.rule_id "
            "WHERE a.fired_at IS NOT NULL ORDER BY a.fired_at").fetchall()
        replay_s = time.perf_counter() - clock
    return judge(incidents, fired, start, replay_s, took)


def judge(incidents: list[dict], fired: list[tuple], start: datetime, replay_s: float, took: list[float]) -> dict:
    def window(incident):
        return (datetime.fromtimestamp(incident["start"], UTC),
                datetime.fromtimestamp(incident["end"], UTC) + SLACK)

    def fits(alert, rule_type, labels):
        return alert[1] == rule_type and all(alert[2].get(k) == v for k, v in labels.items())

    caught, missed, latencies = [], [], []
    explained: set[int] = set()
    for incident in incidents:
        begin, end = window(incident)
        during = [a for a in fired if begin <= a[3] <= end]
        ok = True
        for must in incident["must"]:
            hits = [a for a in during if fits(a, must["rule_type"], must["labels"])]
            if hits:
                latencies.append((incident["name"], must["rule_type"], (hits[0][3] - begin).total_seconds()))
                explained |= {a[0] for a in hits}
            else:
                ok = False
        explained |= {a[0] for a in during if a[1] in incident["may"]}
        (caught if ok else missed).append(incident["name"])
    false = [a for a in fired if a[0] not in explained]
    return {"incidents": len(incidents), "caught": caught, "missed": missed, "alerts": len(fired),
            "false": [(a[1], a[2].get("alertname"), (a[3] - start).total_seconds() / 60) for a in false],
            "latencies": latencies, "replay_s": replay_s, "eval_ms": statistics.median(took) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="record the traces again (poolsim + collectors)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--traces", type=Path, default=TRACES)
    args = parser.parse_args()
    if args.generate:
        generate(args.traces, args.seed)
    result = replay(args.traces)
    for name, rule_type, seconds in result["latencies"]:
        print(f"  {name:<26} {rule_type:<22} fired {seconds / 60:5.1f} min after it began")
    for rule_type, name, minute in result["false"]:
        print(f"  FALSE: {name} ({rule_type}) at minute {minute:.0f}")
    for name in result["missed"]:
        print(f"  MISSED: {name}")
    false_rate = len(result["false"]) / max(1, result["alerts"])
    print(f"{len(result['caught'])}/{result['incidents']} incidents alerted; {result['alerts']} alerts fired, "
          f"{len(result['false'])} false ({false_rate * 100:.1f} % vs a {FALSE_TARGET * 100:.0f} % budget); "
          f"replay {result['replay_s']:.0f} s, median evaluation {result['eval_ms']:.0f} ms")
    met = not result["missed"] and false_rate < FALSE_TARGET
    print("met" if met else "MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
