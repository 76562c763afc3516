"""`make demo`'s runner: everything comes up, the panel shows the simulated pool, and Ctrl-C leaves
no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pyotp
import pytest
import requests

from devtools.services import ROOT
from tests.panel.auth_helpers import csrf_token

pytestmark = pytest.mark.slow


def _demo_pids(demo_pid: int, run_dir: str) -> set[int]:
    """The demo's children (poolsim, agent, engine, panel and its workers) and the daemonized
    servers (PostgreSQL, Redis), read from their pid files."""
    pids = {c.pid for c in psutil.Process(demo_pid).children(recursive=True)}
    for pidfile in (f"{run_dir}/demo/postgres/data/postmaster.pid", f"{run_dir}/demo/redis/redis.pid"):
        with open(pidfile) as f:
            pids.add(int(f.readline().strip()))
    return pids


def _alive(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_demo_comes_up_serves_the_pool_and_stops_cleanly(session_dir):
    # Under the project's run directory: PostgreSQL runs as the postgres user, who cannot enter
    # pytest's private tmp directories.
    run_dir = str(session_dir / "demo-run")
    env = {**os.environ, "POOLWARDEN_RUN_DIR": run_dir, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo", "--interval", "1", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    output: list[str] = []
    pids: set[int] = set()
    try:
        url = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            m = re.search(r"Panel:\s+(http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
            if "Press Ctrl-C" in line:
                break
        assert url, "the demo never printed the panel's URL:\n" + "".join(output)

        sign_in = re.search(r"Sign in:\s+user (\S+), password (\S+)", "".join(output))
        secret = re.search(r"TOTP secret:\s+([A-Z2-7]+)", "".join(output))
        assert sign_in and secret, "the demo did not say how to sign in:\n" + "".join(output)
        assert requests.get(url + "api/hosts", timeout=5).status_code == 401
        http = requests.Session()
        page = http.get(url + "login", timeout=5).text
        step = http.post(url + "login", data={"csrf_token": csrf_token(page), "username": sign_in[1],
                                              "password": sign_in[2]}, timeout=10)
        done = http.post(url + "login/code", data={"csrf_token": csrf_token(step.text),
                                                   "code": pyotp.TOTP(secret[1]).now()}, timeout=10)
        assert done.status_code == 200 and "/login" not in done.url, done.text[:300]

        def host_reported():
            r = http.get(url + "api/hosts", timeout=5)
            return r.status_code == 200 and any(h["name"] == "pool-1" for h in r.json()["hosts"])

        deadline = time.monotonic() + 60
        while not host_reported():
            assert time.monotonic() < deadline, "the agent's samples never reached the panel"
            time.sleep(1)
        disk = http.get(url + "api/admin/system/disk", timeout=5).json()
        assert disk["host"] == "pool-1" and disk["total"] > 0
        page = http.get(url, timeout=5)
        assert page.status_code == 200 and "pool-1" in page.text

        pids = _demo_pids(proc.pid, run_dir)
        assert len(pids) >= 6  # postgres, redis, poolsim, engine, panel (+workers), agent
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
        assert proc.returncode == 0, "".join(output)
        assert "everything stopped" in rest
    finally:
        if proc.poll() is None:  # a failed assertion: let the demo clean up before anything harsher
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    time.sleep(0.5)
    assert _alive(pids) == [], "processes left behind after Ctrl-C"
