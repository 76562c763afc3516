"""Test helper: run ``poolsim run`` as a subprocess and hand back its URLs.

    from poolsim.testing import run_poolsim

    with run_poolsim(dsn, seed=42, speed=10, stats_interval=10) as urls:
        urls["api"], urls["node"], urls["control"], urls["pool_id"], urls["pid"], urls["log_dir"]

Keyword options are the CLI's long options with ``_`` for ``-`` (``history_days=1``,
``node_api_key="k"``, ``paused=True``...). The process is stopped with SIGTERM on exit (SIGKILL if
it does not stop within 10 s). If it exits before printing its ready line, ``PoolsimFailed``
carries its stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator


class PoolsimFailed(RuntimeError):
    pass


def _argv(dsn: str, opts: dict) -> list[str]:
    argv = [sys.executable, "-m", "poolsim.cli", "run", "--db-dsn", dsn]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        else:
            argv += [flag, str(value)]
    return argv


@contextlib.contextmanager
def run_poolsim(dsn: str, timeout: float = 30.0, **opts) -> Iterator[dict]:
    """Start ``poolsim run`` (seed 42, ports 0, a temporary log dir unless given) and yield its URLs."""
    opts.setdefault("seed", 42)
    tmp = None
    if not opts.get("log_dir"):
        tmp = tempfile.TemporaryDirectory(prefix="poolsim-logs-")
        opts["log_dir"] = tmp.name
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(_argv(dsn, opts), stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=root)
    try:
        ready = _wait_ready(proc, timeout, stderr)
        yield {**ready, "pid": proc.pid, "log_dir": opts["log_dir"]}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        stderr.close()
        if tmp is not None:
            tmp.cleanup()


def _wait_ready(proc: subprocess.Popen, timeout: float, stderr) -> dict:
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = proc.stdout.readline()
                if line:
                    data = json.loads(line)
                    if data.get("ready"):
                        return data
                    continue
            if proc.poll() is not None:
                stderr.seek(0)
                err = stderr.read().decode(errors="replace").strip()
                raise PoolsimFailed(f"poolsim exited with code {proc.returncode}: {err}")
        raise PoolsimFailed(f"poolsim did not become ready within {timeout:.0f} s")
    finally:
        selector.close()
