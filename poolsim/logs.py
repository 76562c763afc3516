"""Miningcore-style log files: ``miningcore.log``, ``api.log`` and ``<poolId>.log``.

Line layout (NLog in Miningcore's Program.cs):
``[yyyy-MM-dd HH:mm:ss.ffff] [I] [<logger short name or poolId>] message``.
Timestamps are simulated time. Lines are buffered by the simulation and written on flush.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

LEVELS = {"trace": "T", "debug": "D", "info": "I", "warn": "W", "error": "E", "fatal": "F"}


def format_line(ts: float, level: str, logger: str, message: str) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    stamp = dt.strftime("%Y-%m-%d %H:%M:%S") + f".{dt.microsecond // 100:04d}"
    return f"[{stamp}] [{LEVELS[level]}] [{logger}] {message}\n"


class MiningcoreLogs:
    """Buffers lines and appends them to the log files (no-op without a directory)."""

    def __init__(self, log_dir: str | Path | None, pool_id: str):
        self.dir = Path(log_dir) if log_dir else None
        self.pool_id = pool_id
        self._lock = threading.Lock()
        self._main: list[str] = []
        self._pool: list[str] = []
        self._api: list[str] = []
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def log(self, ts: float, level: str, logger: str, message: str) -> None:
        """A line for miningcore.log; pool-scoped lines (logger == poolId) also go to <poolId>.log."""
        if not self.dir:
            return
        line = format_line(ts, level, logger, message)
        with self._lock:
            self._main.append(line)
            if logger == self.pool_id:
                self._pool.append(line)

    def api(self, ts: float, message: str, level: str = "info") -> None:
        if not self.dir:
            return
        line = format_line(ts, level, "Microsoft.AspNetCore.Hosting.Diagnostics", message)
        with self._lock:
            self._api.append(line)

    def flush(self) -> None:
        if not self.dir:
            return
        with self._lock:
            chunks = ((self.dir / "miningcore.log", self._main), (self.dir / f"{self.pool_id}.log", self._pool),
                      (self.dir / "api.log", self._api))
            for path, lines in chunks:
                if lines:
                    with path.open("a", encoding="utf-8") as fh:
                        fh.writelines(lines)
                    lines.clear()
