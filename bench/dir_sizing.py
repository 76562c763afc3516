"""Directory sizing of a 200,000-file tree: the agent's ``directory_size`` against ``du -sb``.

    .venv/bin/python -m bench.dir_sizing [--files 200000] [--runs 3] [--dir /var/tmp/pw-bench-tree]

Each run is cold when the page cache can be dropped (``echo 3 > /proc/sys/vm/drop_caches``, root
on a real host); in a container that fails and the runs are warm — the output says which. Both
tools run on the same tree in the same run, alternating; the figure is the median of the runs.
Target: the agent within 1.2x of ``du -sb``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.collectors.components import directory_size  # noqa: E402

TARGET = 1.2


def build_tree(root: Path, files: int) -> None:
    marker = root / f".complete-{files}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    per_dir = 500
    for d in range((files + per_dir - 1) // per_dir):
        sub = root / f"d{d // 20:03d}" / f"s{d:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(min(per_dir, files - d * per_dir)):
            with open(sub / f"f{f:04d}.ldb", "wb") as fh:
                fh.write(b"x" * (f % 7 * 300))
    marker.touch()


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp/pw-bench-tree")  # noqa: S108 - a bench fixture, reused
    args = parser.parse_args()
    root = Path(args.dir)
    t = timed(lambda: build_tree(root, args.files))
    print(f"tree: {args.files} files under {root} (built/reused in {t:.1f} s)")
    cold = drop_caches()
    print(f"page cache: {'dropped before each run (cold)' if cold else 'cannot be dropped here: WARM runs'}")
    du_times, agent_times = [], []
    for _ in range(args.runs):
        drop_caches()
        du_times.append(timed(lambda: subprocess.run(["du", "-sb", str(root)], check=True, capture_output=True)))
        drop_caches()
        agent_times.append(timed(lambda: directory_size(str(root))))
    size = directory_size(str(root))
    du_bytes = int(subprocess.run(["du", "-s", "-B1", str(root)], capture_output=True, text=True).stdout.split()[0])
    du, agent = statistics.median(du_times), statistics.median(agent_times)
    ratio = agent / du
    print(f"du -sb:          median {du * 1000:7.1f} ms  runs {[round(x * 1000) for x in du_times]}")
    print(f"directory_size:  median {agent * 1000:7.1f} ms  runs {[round(x * 1000) for x in agent_times]}  "
          f"({size.files} entries, {size.bytes} bytes; du -s -B1 says {du_bytes})")
    print(f"ratio agent/du: {ratio:.2f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    # warm, for reference: page cache and dentries hot, the pure CPU cost of each walker
    du_warm = statistics.median(timed(lambda: subprocess.run(["du", "-sb", str(root)], check=True,
                                                             capture_output=True)) for _ in range(args.runs))
    agent_warm = statistics.median(timed(lambda: directory_size(str(root))) for _ in range(args.runs))
    print(f"warm (reference): du -sb {du_warm * 1000:.1f} ms, directory_size {agent_warm * 1000:.1f} ms, "
          f"ratio {agent_warm / du_warm:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
