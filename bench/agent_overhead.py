"""Agent overhead: CPU seconds per collection cycle and resident memory, with the pool collectors
on (poolsim: Miningcore API + /metrics, Ergo node, Miningcore-schema PostgreSQL) and 10 running
containers, side by side with Debian's prometheus-node-exporter scraped at the same interval in
the same run.

    .venv/bin/python -m bench.agent_overhead [--interval 2] [--cycles 30] [--warmup 5]

The agent runs as its console script (``poolwarden-agent collect``) publishing to a private Redis;
its CPU per cycle is the difference of its own ``poolwarden_agent_cpu_seconds_total`` between the
first batch after the warm-up and the last, over the cycles in between (start-up imports and the
first directory sizing are excluded). node_exporter's CPU per scrape is read from
``/proc/<pid>/stat`` around the same number of scrapes. Targets: agent CPU per cycle <=
node_exporter's per scrape; agent RSS < 60 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.contract import Batch, stream_key  # noqa: E402
from devtools.dockerd import PrivateDockerd, build_busybox_image  # noqa: E402
from devtools.services import PrivatePostgres, PrivateRedis, free_port, wait_for_port  # noqa: E402
from poolsim.testing import run_poolsim  # noqa: E402

RSS_TARGET = 60e6
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not Path(NODE_EXPORTER).exists():
        print("prometheus-node-exporter is not installed: apt-get install -y prometheus-node-exporter")
        return 2
    base = ROOT / ".run" / "bench-overhead"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    pg = PrivatePostgres("postgres", base=base).start()
    rds = PrivateRedis("redis", base=base).start()
    engine = PrivateDockerd("dockerd", base=base).start()
    ne_port = free_port()
    ne = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ne_port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    agent = None
    try:
        client = engine.client()
        image = build_busybox_image(client)
        for i in range(10):
            client.containers.run(image, "sleep 3600", detach=True, name=f"ct{i}", network_mode="none")
        dsn = pg.create_database("miningcore")
        (work / "ergo" / "history").mkdir(parents=True)
        (work / "ergo" / "history" / "000001.ldb").write_bytes(b"x" * 1_000_000)
        with run_poolsim(dsn, history_days=1, speed=1) as sim:
            env = {**os.environ, "POOLWARDEN_HOST": "bench", "POOLWARDEN_REDIS_URL": rds.url,
                   "POOLWARDEN_SPOOL_DIR": str(work / "spool"), "MININGCORE_API_URL": sim["api"],
                   "MININGCORE_METRICS_URL": sim["api"] + "/metrics", "MININGCORE_DB_DSN": dsn,
                   "MININGCORE_LOG_DIR": sim["log_dir"], "ERGO_NODE_URL": sim["node"], "ERGO_NODE_API_KEY": "hello",
                   "ERGO_NODE_DATA_DIR": str(work / "ergo"), "POOLWARDEN_BACKUP_DIR": str(work / "backups"),
                   "DOCKER_HOST": engine.url}
            wait_for_port(ne_port)
            agent_bin = str(Path(sys.executable).with_name("poolwarden-agent"))
            agent = subprocess.Popen([agent_bin, "--log-level", "WARNING", "collect", "--config-dir",
                                      str(ROOT / "config"), "--interval", str(args.interval), "--cycles",
                                      str(args.cycles)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(work / "agent.log", "wb"))  # noqa: SIM115
            scrapes, ne_cpu = [0], [0.0, 0.0]

            def scrape_node_exporter():
                deadline = time.monotonic() + args.warmup * args.interval
                while time.monotonic() < deadline:  # same warm-up as the agent
                    requests.get(f"http://127.0.0.1:{ne_port}/metrics", timeout=10)
                    time.sleep(args.interval)
                ne_cpu[0] = cpu_seconds(ne.pid)
                while agent.poll() is None:
                    requests.get(f"http://127.0.0.1:{ne_port}/metrics", timeout=10)
                    scrapes[0] += 1
                    time.sleep(args.interval)
                ne_cpu[1] = cpu_seconds(ne.pid)

            scraper = threading.Thread(target=scrape_node_exporter)
            scraper.start()
            agent.wait(timeout=args.cycles * args.interval + 120)
            scraper.join()
            ne_rss = rss(ne.pid)
        r = redis.Redis.from_url(rds.url)
        batches = [Batch.from_fields(f) for _id, f in r.xrange(stream_key("bench"))]
        r.close()

        def metric(batch, name):
            return next(s.value for s in batch.samples if s.name == name)

        first, last = batches[args.warmup], batches[-1]
        cycles = last.seq - first.seq
        agent_cpu = (metric(last, "poolwarden_agent_cpu_seconds_total")
                     - metric(first, "poolwarden_agent_cpu_seconds_total")) / cycles
        agent_rss = max(metric(b, "poolwarden_agent_resident_memory_bytes") for b in batches)
        ne_per_scrape = (ne_cpu[1] - ne_cpu[0]) / max(scrapes[0], 1)
        ups = {s.labels["collector"]: s.value for s in last.samples if s.name == "poolwarden_collector_up"}
        per_cycle = [metric(b, "poolwarden_agent_cycle_seconds") for b in batches[args.warmup:]]
        print(f"agent: {len(batches)} batches, {len(last.samples)} samples in the last; collectors up: "
              f"{json.dumps(ups, sort_keys=True)}")
        print(f"agent wall time per cycle (collectors run concurrently): median "
              f"{sorted(per_cycle)[len(per_cycle) // 2] * 1000:.1f} ms")
        print(f"agent CPU per cycle:        {agent_cpu * 1000:7.2f} ms  (over {cycles} cycles)")
        print(f"node_exporter CPU per scrape:{ne_per_scrape * 1000:7.2f} ms  (over {scrapes[0]} scrapes)")
        print(f"ratio agent/node_exporter: {agent_cpu / ne_per_scrape:.2f}x (target <= 1.0) -> "
              f"{'MET' if agent_cpu <= ne_per_scrape else 'MISSED'}")
        print(f"agent RSS (max): {agent_rss / 1e6:.1f} MB (target < {RSS_TARGET / 1e6:.0f} MB) -> "
              f"{'MET' if agent_rss < RSS_TARGET else 'MISSED'}; node_exporter RSS {ne_rss / 1e6:.1f} MB")
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        ne.terminate()
        ne.wait(timeout=10)
        engine.stop()
        rds.stop()
        pg.stop(quiet=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
