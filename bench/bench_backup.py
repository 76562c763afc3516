"""Backup wall time: the agent's ``backup`` action against a raw ``pg_dump -Fc`` of the same database.

    .venv/bin/python -m bench.bench_backup [--shares 800000] [--runs 7]

A private PostgreSQL gets Miningcore's schema with a day of poolsim history, plus ``--shares`` more
shares generated in SQL (40 miner addresses with their workers, user agents and IPs, random share
difficulties, one share every ~0.1 s): a database of a few hundred MB. Both sides use the same
pg_dump binary and write to the same filesystem; they alternate, and the figure is the median of
the runs. The action does more than the raw dump: the free-space check, the exact row counts in
the dump's snapshot (beside the dump), fsync, sha256, ``pg_restore --list``, the manifest and
retention. Target: the action within 1.1x of the raw dump.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from agent.actions import ActionContext  # noqa: E402
from agent.actions.backup import find_pg_tool, human_bytes, run_backup  # noqa: E402
from agent.config import (  # noqa: E402
    AgentSettings,
    Config,
    DockerConfig,
    ErgoNodeConfig,
    IntervalsConfig,
    MaintenanceConfig,
    MiningcoreConfig,
    MonitoringConfig,
    MountsConfig,
    PathsConfig,
    PoolConfig,
    ThresholdsConfig,
)
from agent.contract import validate_params  # noqa: E402
from devtools.services import RUN_DIR, PrivatePostgres  # noqa: E402
from poolsim import PoolSim  # noqa: E402

TARGET = 1.1

EXTRA_SHARES_SQL = """
INSERT INTO shares (poolid, blockheight, difficulty, networkdifficulty, miner, worker, useragent, ipaddress, source,
                    created)
SELECT 'ergo1', 1612000 + i / 1200, round((0.005 + random() * 0.06)::numeric, 6)::float8,
       561234.5 + (i / 153600) * 17.25 + round((random() * 3)::numeric, 2)::float8,
       '9' || substr(md5('miner' || m), 1, 25) || substr(md5('addr' || m), 1, 25),
       'rig' || (i %% 3), (ARRAY['lolMiner 1.88', 'TeamRedMiner/0.10.21', 'SRBMiner-MULTI/2.5.2'])[1 + m %% 3],
       '10.' || m || '.' || (m %% 7) || '.' || (1 + m %% 200), NULL,
       now() - interval '1 day' - make_interval(secs => i * 0.1 + random() * 0.1)
FROM (SELECT i, (random() * 39)::int AS m FROM generate_series(1, %s) i) g
"""


def context(dsn: str, backups: Path) -> ActionContext:
    pool = PoolConfig(
        host="bench", miningcore=MiningcoreConfig(api_url="http://127.0.0.1:4000", metrics_url=None, pool_ids=(),
                                                  timeout_seconds=5, database_dsn=dsn, log_dir=None),
        ergo_node=ErgoNodeConfig(url="http://127.0.0.1:9053", api_key=None, timeout_seconds=5, data_dir=None),
        paths=PathsConfig(backups=str(backups)), docker=DockerConfig(enabled=False))
    monitoring = MonitoringConfig(agent=AgentSettings(redis_url="redis://127.0.0.1:6379/0", spool_dir=str(backups)),
                                  intervals=IntervalsConfig(), mounts=MountsConfig(), thresholds=ThresholdsConfig(),
                                  maintenance=MaintenanceConfig())
    return ActionContext(host="bench", config=Config(pool=pool, monitoring=monitoring, config_dir=str(backups)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=800_000, help="shares added to poolsim's history")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = RUN_DIR / "bench-backup"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with PrivatePostgres("bench-backup-pg") as pg:
        dsn = pg.create_database("miningcore")
        started = time.perf_counter()
        PoolSim(seed=42, dsn=dsn, paused=True, history_days=1).setup().stop()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(EXTRA_SHARES_SQL, (args.shares,))
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            shares = conn.execute("SELECT count(*) FROM shares").fetchone()[0]
            major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        print(f"database: {human_bytes(size)}, {shares:,} shares (built in {time.perf_counter() - started:.1f} s), "
              f"PostgreSQL {major}")
        pg_dump, _ = find_pg_tool("pg_dump", major)
        raw_file = work / "raw.dump"
        raw_times, action_times = [], []
        result: dict = {}
        for _ in range(args.runs):
            raw_file.unlink(missing_ok=True)
            t0 = time.perf_counter()
            subprocess.run([pg_dump, "-Fc", f"--file={raw_file}", f"--dbname={dsn}"], check=True)
            raw_times.append(time.perf_counter() - t0)
            ctx = context(dsn, work / "backups")
            t0 = time.perf_counter()
            result = run_backup(ctx, validate_params("backup", {"keep_daily": 1, "keep_weekly": 0}))
            action_times.append(time.perf_counter() - t0)
        raw, action = statistics.median(raw_times), statistics.median(action_times)
        ratio = action / raw
        print(f"dump size: raw {human_bytes(raw_file.stat().st_size)}, action {human_bytes(result['size'])}")
        print(f"raw pg_dump -Fc:  median {raw:6.2f} s  runs {[round(t, 2) for t in raw_times]}")
        print(f"backup action:    median {action:6.2f} s  runs {[round(t, 2) for t in action_times]}")
        print("last action run, step by step:")
        for line in ctx.lines:
            print("   ", line)
        print(f"ratio action/raw: {ratio:.3f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
