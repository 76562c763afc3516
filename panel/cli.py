"""``poolwarden-panel``: migrate, engine, serve, health.

The same commands are registered on ``app.cli`` (so tests drive them with Flask's CLI runner and
the app's config); run as the console script they read the ``POOLWARDEN_*`` environment.
"""

from __future__ import annotations

import copy
import logging
import signal
import sys
from typing import Any

import click
from flask import Flask, current_app, has_app_context
from flask.cli import with_appcontext

from panel.config import ConfigError, load_config, require

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _config(*needed: str) -> dict[str, Any]:
    """The app's config inside an app context, else the environment; missing settings exit 2."""
    try:
        config = dict(current_app.config) if has_app_context() else load_config()
        require(config, *needed)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return config


def _fail(message: str) -> None:
    click.echo(f"poolwarden-panel: {message}", err=True)
    sys.exit(1)


@click.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations not applied yet (safe to re-run)."""
    from panel.db import DatabaseUnavailable
    from panel.migrations import apply_migrations

    config = _config("DATABASE_URL")
    try:
        applied = apply_migrations(config["DATABASE_URL"])
    except DatabaseUnavailable as exc:
        _fail(str(exc))
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version}_{migration.name}")
    else:
        click.echo("database schema is up to date")


@click.command("engine")
@click.option("--once", is_flag=True, help="Ingest what is in the streams now, then exit.")
@click.option("--block-ms", default=1000, show_default=True, type=click.IntRange(10, 60_000),
              help="How long one read waits for new entries.")
def engine_command(once: bool, block_ms: int) -> None:
    """Ingest the agents' sample streams from Redis into PostgreSQL."""
    from panel.engine import Engine, EngineUnavailable

    config = _config("DATABASE_URL", "REDIS_URL")
    engine = Engine(config["DATABASE_URL"], config["REDIS_URL"], block_ms=block_ms)
    if not once:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: engine.stop())
    try:
        engine.run(once=once)
    except EngineUnavailable as exc:
        _fail(str(exc))
    if once:
        click.echo(f"ingested {engine.stored} new batches")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback only).")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve_command(host: str, port: int, workers: int) -> None:
    """Run the web panel under gunicorn."""
    from panel import create_app
    from panel.server import is_loopback, serve

    if not is_loopback(host):
        raise click.UsageError(
            f"refusing to listen on {host}: until the panel has a login it serves loopback only "
            "(127.0.0.1, ::1 or localhost). Reach it through an SSH tunnel or a reverse proxy on this host."
        )
    if has_app_context():
        app = current_app._get_current_object()
    else:
        try:
            app = create_app()
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
    serve(app, host, port, workers)


@click.command("health")
def health_command() -> None:
    """Check that PostgreSQL (migrated) and Redis answer; exit 1 if not."""
    import redis

    from panel.db import DatabaseUnavailable
    from panel.migrations import pending_migrations

    config = _config("DATABASE_URL", "REDIS_URL")
    problems = []
    try:
        pending = pending_migrations(config["DATABASE_URL"])
        if pending:
            problems.append(f"{len(pending)} migrations pending: run 'poolwarden-panel migrate'")
    except DatabaseUnavailable as exc:
        problems.append(str(exc))
    client = redis.Redis.from_url(config["REDIS_URL"], socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {config['REDIS_URL'].rsplit('@', 1)[-1]} cannot be reached ({exc})")
    finally:
        client.close()
    if problems:
        _fail("; ".join(problems))
    click.echo("ok: PostgreSQL and Redis answer, schema up to date")


COMMANDS = (migrate_command, engine_command, serve_command, health_command)


@click.group(help="poolwarden control panel: database migrations, ingest engine, web server.")
def main() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


for _command in COMMANDS:
    main.add_command(_command)


def init_app(app: Flask) -> None:
    """Offer the commands as ``flask --app panel <command>`` too, run inside the app's context."""
    for command in COMMANDS:
        bound = copy.copy(command)
        bound.callback = with_appcontext(command.callback)
        app.cli.add_command(bound)
