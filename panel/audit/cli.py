"""``poolwarden-panel audit verify``: walk the hash chain, name every tampered row, exit 1 if any.

Like ``panel.cli``, the commands read the app's config inside an app context (``flask --app panel``,
the test runner) and the ``POOLWARDEN_*`` environment when run as the console script.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from typing import Any

import click
import psycopg
from flask import current_app, has_app_context
from flask.cli import with_appcontext

from panel.config import ConfigError, load_config, require

MAX_RECORDED_PROBLEMS = 20


def command_config(*needed: str) -> Mapping[str, Any]:
    """The app's config inside an app context, else the environment; missing settings exit 2."""
    try:
        config = current_app.config if has_app_context() else load_config()
        require(config, *needed)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return config


def bound_to_app(group: click.Group) -> click.Group:
    """A copy of ``group`` whose commands run inside the app context (for ``app.cli``)."""
    bound = copy.copy(group)
    bound.commands = {}
    for name, command in group.commands.items():
        command = copy.copy(command)
        command.callback = with_appcontext(command.callback)
        bound.commands[name] = command
    return bound


def record_verification(conn, result, actor: str | None = None) -> None:
    """Append the outcome of a verification to the log itself; the audit page shows the latest."""
    from panel.audit import record_event

    record_event("audit.verify", "audit_log", None, actor=actor, conn=conn, intact=result.intact,
                 rows=result.rows, last_id=result.last_id,
                 problems=[f"{p.kind}: {p.message}" for p in result.problems[:MAX_RECORDED_PROBLEMS]],
                 problem_count=len(result.problems))


@click.group("audit", help="The audit log: verify its hash chain.")
def audit_group() -> None:
    pass


@audit_group.command("verify")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Append the result to the audit log, where the audit page shows it.")
def verify_command(record: bool) -> None:
    """Check every audit row against its hash and its predecessor; exit 1 on tampering."""
    from panel.audit.chain import verify
    from panel.db import DatabaseUnavailable, connect

    config = command_config("DATABASE_URL")
    try:
        with connect(config["DATABASE_URL"]) as conn:
            result = verify(conn)
            if record:
                try:
                    record_verification(conn, result, actor="system")
                except (psycopg.Error, RuntimeError) as exc:
                    click.echo(f"could not record the verification in the audit log: {exc}", err=True)
    except DatabaseUnavailable as exc:
        click.echo(f"poolwarden-panel: {exc}", err=True)
        sys.exit(2)
    for problem in result.problems:
        click.echo(f"{problem.kind}: {problem.message}")
    click.echo(result.summary())
    if not result.intact:
        sys.exit(1)


def init_app(app) -> None:
    app.cli.add_command(bound_to_app(audit_group))
