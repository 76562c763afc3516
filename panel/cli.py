"""``poolwarden-panel``: migrate, engine, rollup, serve, health, create-admin, reset-totp, allowlist.

The same commands are registered on ``app.cli`` (so tests drive them with Flask's CLI runner and
the app's config); run as the console script they read the ``POOLWARDEN_*`` environment.
"""

from __future__ import annotations

import copy
import logging
import os
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
    from panel.engine.rollups import Retention

    config = _config("DATABASE_URL", "REDIS_URL")
    from panel.engine.tasks import default_tasks

    engine = Engine(config["DATABASE_URL"], config["REDIS_URL"], block_ms=block_ms,
                    retention=Retention.from_config(config), tasks=default_tasks(config), task_config=config)
    if not once:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: engine.stop())
    try:
        engine.run(once=once)
    except EngineUnavailable as exc:
        _fail(str(exc))
    if once:
        click.echo(f"ingested {engine.stored} new batches")


@click.command("rollup")
@click.option("--until-done", is_flag=True, help="Repeat bounded runs until no backlog is left.")
def rollup_command(until_done: bool) -> None:
    """Roll samples up into 1 m and 1 h buckets and apply retention (the engine does this every minute)."""
    from panel.db import DatabaseUnavailable, connect
    from panel.engine.rollups import Retention, run_rollups

    config = _config("DATABASE_URL")
    retention = Retention.from_config(config)
    try:
        with connect(config["DATABASE_URL"]) as conn:
            while True:
                report = run_rollups(conn, retention)
                click.echo(report.line())
                if not (until_done and report.backlog):
                    break
    except DatabaseUnavailable as exc:
        _fail(str(exc))


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Beyond loopback, put the panel behind an HTTPS reverse proxy.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve_command(host: str, port: int, workers: int) -> None:
    """Run the web panel under gunicorn."""
    from panel import server

    app = _app()
    if not app.config.get("SESSION_COOKIE_SECURE"):
        if server.is_loopback(host):
            click.echo("poolwarden-panel: note: session cookies are not Secure (POOLWARDEN_INSECURE_COOKIES=1); "
                       "fine on loopback only.", err=True)
        else:
            click.echo(
                "\n" + "!" * 100 + f"\nWARNING: listening on {host} with POOLWARDEN_INSECURE_COOKIES=1: session "
                "cookies lack the Secure flag and\nanyone on the network path can steal a signed-in session. Serve "
                "the panel over HTTPS (a reverse proxy)\nand unset POOLWARDEN_INSECURE_COOKIES.\n" + "!" * 100 + "\n",
                err=True)
    elif not server.is_loopback(host):
        click.echo(f"poolwarden-panel: listening on {host}: session cookies are Secure, so browsers sign in only "
                   "over HTTPS (an HTTPS reverse proxy in front of this port).", err=True)
    server.serve(app, host, port, workers)


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


def _app():
    """The current app (Flask CLI runner) or one built from the environment (console script)."""
    from panel import create_app

    if has_app_context():
        return current_app._get_current_object()
    try:
        return create_app()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _connect(app):
    from psycopg.rows import dict_row

    from panel.db import DatabaseUnavailable, connect

    try:
        return connect(app.config["DATABASE_URL"], row_factory=dict_row)
    except DatabaseUnavailable as exc:
        _fail(str(exc))


@click.command("create-admin")
@click.option("--username", default="admin", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--totp-secret-out", metavar="FILE",
              help="Enrol TOTP now and write its secret to FILE (mode 0600; '-' prints it). Without it, the "
                   "admin scans a QR code at the first sign-in.")
@click.option("--replace", is_flag=True,
              help="If the user exists, make it an enabled admin with this password (and TOTP) instead of failing.")
def create_admin_command(username: str, password_stdin: bool, totp_secret_out: str | None, replace: bool) -> None:
    """Create an admin account (the first one, or a way back in)."""
    from panel import audit
    from panel.auth import totp, users
    from panel.auth.passwords import hash_password, password_problem

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, username)
    if problem:
        _fail(f"refusing this password: {problem}")
    app = _app()
    with app.app_context(), _connect(app) as conn:
        existing = users.find_by_name(conn, username)
        with conn.transaction():
            if existing and not replace:
                _fail(f"a user named {username!r} already exists (use --replace to reset it)")
            if existing:
                conn.execute("UPDATE users SET role = 'admin', disabled = false, password_hash = %s,"
                             " must_change_password = false, updated_at = now() WHERE id = %s",
                             (hash_password(password), existing["id"]))
                users.reset_totp(conn, existing["id"])
                user = users.get_user(conn, existing["id"])
            else:
                try:
                    user = users.create_user(conn, username, "admin", password)
                except users.UserError as exc:
                    _fail(str(exc))
            secret = None
            if totp_secret_out:
                secret = totp.new_secret()
                users.enrol_with_secret(conn, user["id"], secret)
            audit.record_event("user.replace_admin" if existing else "user.create_admin", "user", str(user["id"]),
                               actor="console", conn=conn, after=users.audit_view(users.get_user(conn, user["id"])))
    verb = "reset" if existing else "created"
    if secret is None:
        click.echo(f"{verb} admin {username!r}: sign in to the panel to set up TOTP (a QR code is shown)")
    elif totp_secret_out == "-":  # noqa: S105 - "-" means stdout, not a password
        click.echo(f"{verb} admin {username!r} with TOTP enrolled; secret: {secret}")
    else:
        fd = os.open(totp_secret_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        click.echo(f"{verb} admin {username!r} with TOTP enrolled; secret written to {totp_secret_out}")


@click.command("reset-totp")
@click.argument("username")
def reset_totp_command(username: str) -> None:
    """Forget a user's TOTP (and recovery codes, sessions): they enrol again at the next sign-in."""
    from panel import audit
    from panel.auth import users

    app = _app()
    with app.app_context(), _connect(app) as conn:
        user = users.find_by_name(conn, username)
        if user is None:
            _fail(f"no user named {username!r}")
        with conn.transaction():
            users.reset_totp(conn, user["id"])
            audit.record_event("user.totp_reset", "user", str(user["id"]), actor="console", conn=conn,
                               before=users.audit_view(user), after=users.audit_view(users.get_user(conn, user["id"])))
    click.echo(f"TOTP of {username!r} reset: they set it up again at their next sign-in")


@click.group("allowlist")
def allowlist_group() -> None:
    """Show or reset the IP allowlist (the way back in after a lock-out)."""


@allowlist_group.command("show")
def allowlist_show() -> None:
    """Print the allowed networks (one per line); empty means every address is allowed."""
    from panel.allowlist.store import load_entries

    app = _app()
    with _connect(app) as conn:
        entries = load_entries(conn)
    if not entries:
        click.echo("allowlist is empty: every address may reach the panel")
    for entry in entries:
        click.echo(entry.line())


@allowlist_group.command("reset")
@click.option("--allow", "allow", multiple=True, metavar="CIDR",
              help="Leave only these networks (repeatable). Without it the list is emptied: every address allowed.")
def allowlist_reset(allow: tuple[str, ...]) -> None:
    """Replace the allowlist from the console (no login, no lock-out check)."""
    from panel import audit
    from panel.allowlist.store import load_entries, parse_entries, replace_entries

    entries, problems = parse_entries("\n".join(f"{cidr} # set from the console" for cidr in allow))
    if problems:
        raise click.UsageError("; ".join(p.replace("line", "--allow") for p in problems))
    app = _app()
    with app.app_context(), _connect(app) as conn:
        before = [e.line() for e in load_entries(conn)]
        replace_entries(conn, entries, by="console")
        audit.record_event("allowlist.reset", "allowlist", None, actor="console", conn=conn, before={"entries": before},
                           after={"entries": [e.line() for e in entries]})
    if entries:
        click.echo("allowlist reset to: " + ", ".join(str(e.network) for e in entries))
    else:
        click.echo("allowlist reset: empty, every address may reach the panel")


COMMANDS = (migrate_command, engine_command, rollup_command, serve_command, health_command, create_admin_command,
            reset_totp_command, allowlist_group)


@click.group(help="poolwarden control panel: database migrations, ingest engine, web server.")
def main() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


for _command in COMMANDS:
    main.add_command(_command)


def _add_part_commands() -> None:
    """Command groups that live beside the part they serve (their own init_app binds them to app.cli)."""
    from panel.alerts.cli import alerts_group
    from panel.audit.cli import audit_group
    from panel.maintenance.cli import maintenance_group
    from panel.notify.worker import notify_worker_command
    from panel.secretbox import secrets_group

    main.add_command(alerts_group)
    main.add_command(audit_group)
    main.add_command(notify_worker_command)
    main.add_command(maintenance_group)
    main.add_command(secrets_group)


_add_part_commands()


def init_app(app: Flask) -> None:
    """Offer the commands as ``flask --app panel <command>`` too, run inside the app's context."""
    for command in COMMANDS:
        app.cli.add_command(_bound(command))


def _bound(command: click.Command) -> click.Command:
    bound = copy.copy(command)
    if isinstance(command, click.Group):
        bound.commands = {name: _bound(sub) for name, sub in command.commands.items()}
    else:
        bound.callback = with_appcontext(command.callback)
    return bound
