"""The maintenance actions the agent's worker runs (``contract.ACTIONS`` names them all).

Each module exposes one function per action, ``run_<name>(ctx, params) -> dict``: ``params`` are
already validated by ``contract.validate_params`` (defaults filled in). The function reports
progress with ``ctx.say(...)``, returns a JSON-serialisable dict with at least ``summary`` (one
line an operator reads in the job list), and raises ``ActionFailed`` with a clear message when
it cannot do what was asked. It never builds a shell string: subprocesses get argument lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.config import Config


class ActionFailed(Exception):
    """The action could not do its work; ``message`` is for the operator, ``details`` for the record."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


@dataclass
class ActionContext:
    host: str
    config: Config
    job_id: str = "local"
    requested_by: str = "local"
    progress: Callable[[str], None] | None = None
    lines: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        """One progress line: shown live in the panel and kept with the job."""
        line = f"[{time.monotonic() - self.started:7.1f}s] {message}"
        self.lines.append(line)
        if self.progress is not None:
            self.progress(line)

    @property
    def work_dir(self) -> str:
        m = self.config.monitoring
        return m.maintenance.work_dir or m.agent.state_dir or m.agent.spool_dir


ActionFunction = Callable[[ActionContext, dict[str, Any]], dict[str, Any]]


def registry() -> dict[str, ActionFunction]:
    """Action name -> function; imported lazily so the worker starts fast."""
    from agent.actions import backup, cleanup, health, logs, mcconfig, services, vacuum

    return {
        "backup": backup.run_backup,
        "test_restore": backup.run_test_restore,
        "vacuum": vacuum.run_vacuum,
        "vacuum_full": vacuum.run_vacuum_full,
        "rotate_logs": logs.run_rotate_logs,
        "cleanup": cleanup.run_cleanup,
        "restart": services.run_restart,
        "start": services.run_start,
        "stop": services.run_stop,
        "health_check": health.run_health_check,
        "update_miningcore_config": mcconfig.run_update_miningcore_config,
    }
