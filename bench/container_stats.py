"""Stats for 20 containers in one cycle: the agent's ``containers`` collector against a private
dockerd running 20 busybox containers.

    .venv/bin/python -m bench.container_stats [--containers 20] [--cycles 10]

Prints the median and worst cycle time (after one priming cycle) against the 150 ms target, and,
for reference in the same run, what the Engine's own stats endpoint costs for the same
containers: ``stats(stream=False, one_shot=True)`` issued concurrently (the agent's fallback when
it cannot read cgroups) and one container with the SDK's default ``stream=False``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.collectors import ContainerCollector, run_collector  # noqa: E402
from devtools.dockerd import PrivateDockerd, build_busybox_image  # noqa: E402

TARGET = 0.150


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    with PrivateDockerd("bench-dockerd", base=ROOT / ".run") as engine:
        client = engine.client()
        image = build_busybox_image(client)
        net = client.networks.create("bench", driver="bridge")
        for i in range(args.containers):
            cmd = "sh -c 'while true; do :; done'" if i == 0 else "sleep 3600"
            client.containers.run(image, cmd, detach=True, name=f"bench{i}", network="bench")
        collector = ContainerCollector(engine.url)
        run_collector(collector)
        times = []
        for _ in range(args.cycles):
            time.sleep(0.5)
            start = time.perf_counter()
            result = run_collector(collector)
            times.append(time.perf_counter() - start)
            assert result.ok, result.error
        cpu = [s for s in result.samples if s.name == "poolwarden_container_cpu_percent"]
        collector.close()
        median, worst = statistics.median(times), max(times)
        print(f"containers collector, {args.containers} running containers, {len(result.samples)} samples, "
              f"{len(cpu)} with CPU %")
        print(f"cycle: median {median * 1000:.1f} ms, worst {worst * 1000:.1f} ms; target < {TARGET * 1000:.0f} ms: "
              f"ratio {median / TARGET:.2f} -> {'MET' if worst < TARGET else 'MISSED'}")
        ids = [c.id for c in client.containers.list()]
        pool = ThreadPoolExecutor(8)
        start = time.perf_counter()
        list(pool.map(lambda i: client.api.stats(i, stream=False, one_shot=True), ids))
        api_one_shot = time.perf_counter() - start
        start = time.perf_counter()
        client.api.stats(ids[0], stream=False)
        api_default = time.perf_counter() - start
        print(f"reference: Engine stats one_shot, 8 concurrent, {len(ids)} containers: {api_one_shot * 1000:.0f} ms "
              f"({api_one_shot / median:.0f}x the collector); stream=False default, ONE container: "
              f"{api_default * 1000:.0f} ms")
        for c in client.containers.list(all=True):
            c.remove(force=True)
        net.remove()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
