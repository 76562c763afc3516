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


IMPLEMENTATIONS: dict[str, tuple[str, str]] = {
    "backup": ("agent.actions.backup", "run_backup"),
    "test_restore": ("agent.actions.backup", "run_test_restore"),
    "vacuum": ("agent.actions.vacuum", "run_vacuum"),
    "vacuum_full": ("agent.actions.vacuum", "run_vacuum_full"),
    "rotate_logs": ("agent.actions.logs", "run_rotate_logs"),
    "cleanup": ("agent.actions.cleanup", "run_cleanup"),
    "restart": ("agent.actions.services", "run_restart"),
    "start": ("agent.actions.services", "run_start"),
    "stop": ("agent.actions.services", "run_stop"),
    "health_check": ("agent.actions.health", "run_health_check"),
    "update_miningcore_config": ("agent.actions.mcconfig", "run_update_miningcore_config"),
}
"""Catalogue action -> (module, function). A fixed table: nothing here comes from a job."""


def implementation(name: str) -> ActionFunction:
    """The function for a catalogue action, imported on first use so the worker starts fast."""
    import importlib

    module, function = IMPLEMENTATIONS[name]
    return getattr(importlib.import_module(module), function)
