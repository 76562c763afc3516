"""``poolsim run`` as a subprocess: ready line, live servers, logs, clean stop, clear DB errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import requests

from devtools.services import free_port
from poolsim.testing import PoolsimFailed, run_poolsim

get = partial(requests.get, timeout=30)
delete = partial(requests.delete, timeout=30)

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{4}\] \[[TDIWEF]\] \[[^\]]+\] .+$")


@pytest.mark.slow
def test_run_poolsim_serves_and_logs(fresh_db, tmp_path):
    with run_poolsim(fresh_db, seed=3, speed=30, stats_interval=10, log_dir=tmp_path) as urls:
        assert set(urls) >= {"ready", "api", "node", "control", "pool_id"}
        assert urls["pool_id"] == "ergo1"
        first = get(urls["control"] + "/state").json()
        assert get(urls["api"] + "/api/pools/ergo1", timeout=5).status_code == 200
        assert get(urls["node"] + "/info", timeout=5).json()["isMining"] is True
        time.sleep(1.5)
        later = get(urls["control"] + "/state").json()
        assert later["simTime"] >= first["simTime"] + 30
        metrics = get(urls["api"] + "/metrics").text
        assert re.search(r'miningcore_valid_shares_total\{pool="ergo1"\} \d+', metrics)
    for name in ("miningcore.log", "ergo1.log", "api.log"):
        lines = (tmp_path / name).read_text().splitlines()
        assert lines, name
        assert all(LINE.match(line) for line in lines), name
    assert "Detected new block" in (tmp_path / "ergo1.log").read_text()


@pytest.mark.slow
def test_ready_line_and_sigterm(fresh_db):
    ports = [free_port(), free_port(), free_port()]
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolsim.cli", "run", "--db-dsn", fresh_db, "--seed", "1", "--history-days", "0.5",
         "--api-port", str(ports[0]), "--node-port", str(ports[1]), "--control-port", str(ports[2])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready == {"ready": True, "api": f"http://127.0.0.1:{ports[0]}",
                         "node": f"http://127.0.0.1:{ports[1]}", "control": f"http://127.0.0.1:{ports[2]}",
                         "pool_id": "ergo1"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.slow
def test_unreachable_db_is_one_clear_line(tmp_path):
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "poolsim.cli", "run", "--db-dsn", f"postgresql://postgres@127.0.0.1:{port}/x"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0]
    with pytest.raises(PoolsimFailed, match=str(port)), \
            run_poolsim(f"postgresql://postgres@127.0.0.1:{port}/x"):
        pass


@pytest.mark.slow
def test_restart_resumes_existing_history(fresh_db):
    with run_poolsim(fresh_db, history_days=1) as urls:
        blocks = get(urls["api"] + "/api/pools/ergo1").json()["pool"]["totalBlocks"]
    with run_poolsim(fresh_db, history_days=1) as urls:
        pool = get(urls["api"] + "/api/pools/ergo1").json()["pool"]
        assert pool["totalBlocks"] == blocks
        state = get(urls["control"] + "/state").json()
        assert state["blocks"]["total"] == blocks
