"""Start and stop the project's own processes (poolsim, agent, engine, panel) for demo and tests.

Each child runs in its own process group, so stopping it also stops anything it started
(gunicorn workers, for instance). Output goes to a log file under the run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def console_script(name: str) -> str:
    """Path of one of our console scripts in the running virtual environment."""
    path = VENV_BIN / name
    return str(path) if path.exists() else name


class ManagedProcess:
    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, capture_stdout: bool = False) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE if capture_stdout else self._log,
            stderr=self._log,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def read_ready_line(self, timeout: float = 60.0) -> dict:
        """Read the first JSON line the child prints on stdout (poolsim's ready line)."""
        assert self.proc and self.proc.stdout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.tail())
            for _key, _ in sel.select(timeout=0.2):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with contextlib.suppress(ValueError):
                        data = json.loads(line)
                        if isinstance(data, dict) and data.get("ready"):
                            sel.close()
                            return data
        sel.close()
        raise RuntimeError(f"{self.name} did not report ready within {timeout:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Anything left in the group (a grandchild that ignored TERM) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode
