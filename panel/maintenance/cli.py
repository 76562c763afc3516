"""``poolwarden-panel maintenance``: enrol a host (its job key), print the key again, provision schedules."""

from __future__ import annotations

import os

import click

from panel.maintenance import keys


def _fail(message: str) -> None:
    click.echo(f"poolwarden-panel: {message}", err=True)
    raise SystemExit(1)


def _connect():
    from psycopg.rows import dict_row

    from panel.audit.cli import command_config
    from panel.db import DatabaseUnavailable, connect

    config = command_config("DATABASE_URL")
    try:
        return connect(config["DATABASE_URL"], row_factory=dict_row)
    except DatabaseUnavailable as exc:
        _fail(str(exc))


def _write_key_file(path: str, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key.hex() + "\n")
    os.chmod(path, 0o600)


@click.group("maintenance", help="Maintenance jobs: host job keys and schedules.")
def maintenance_group() -> None:
    pass


@maintenance_group.command("enrol")
@click.argument("host")
@click.option("--key-file", type=click.Path(dir_okay=False), help="Import the key from this file (hex) instead of "
              "making a new one (e.g. a key the agent's host already has).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the key (hex) to this file, mode 0600, "
              "instead of printing it.")
@click.option("--replace", is_flag=True, help="Replace the host's existing key (its agent then needs the new one).")
def enrol_command(host: str, key_file: str | None, out: str | None, replace: bool) -> None:
    """Give HOST a job key and print it as hex for the agent's maintenance.jobKeyFile."""
    from panel import audit
    from panel.secretbox import SecretboxError

    try:
        keys.check_host_name(host)
        key = keys.read_key_file(key_file) if key_file else keys.new_key()
        with _connect() as conn, conn.transaction():
            keys.store_key(conn, host, key, by="console", imported=bool(key_file), replace=replace)
            audit.record_event("maintenance.key_import" if key_file else "maintenance.key_create", "host", host,
                               actor="console", conn=conn, replaced=replace, key_bytes=len(key))
    except (keys.JobKeyError, SecretboxError) as exc:
        _fail(str(exc))
    if out:
        _write_key_file(out, key)
        click.echo(f"{host}: job key written to {out} (mode 0600); copy it to the agent's maintenance.jobKeyFile")
        return
    click.echo(key.hex())
    click.echo(f"# {host}: put this line in the agent's maintenance.jobKeyFile (mode 0600, readable only by the "
               "agent's user)", err=True)


@maintenance_group.command("key")
@click.argument("host")
def key_command(host: str) -> None:
    """Print HOST's job key again (hex); the reading is audited."""
    from panel import audit
    from panel.secretbox import SecretboxError

    try:
        with _connect() as conn:
            key = keys.load_key(conn, host)
            if key is None:
                _fail(keys.enrol_hint(host))
            audit.record_event("maintenance.key_show", "host", host, actor="console", conn=conn)
    except SecretboxError as exc:
        _fail(str(exc))
    click.echo(key.hex())


@maintenance_group.command("provision")
@click.option("--file", "path", type=click.Path(dir_okay=False),
              help="Schedules file (default: POOLWARDEN_MAINTENANCE_CONFIG).")
@click.option("--check", is_flag=True, help="Only validate the file; change nothing.")
def provision_command(path: str | None, check: bool) -> None:
    """Create, update and remove provisioned schedules to match the file (the engine does this when it changes)."""
    from flask import current_app, has_app_context

    from panel.maintenance import schedules
    from panel.maintenance.settings import Settings

    path = path or Settings.from_config(current_app.config if has_app_context() else None).config_path
    if not path:
        raise click.UsageError("no schedules file: pass --file or set POOLWARDEN_MAINTENANCE_CONFIG")
    try:
        if check:
            specs = schedules.parse_config_file(path)
            click.echo(f"{path}: {len(specs)} schedules, valid")
            return
        with _connect() as conn:
            report = schedules.provision(conn, path, force=True)
    except schedules.ScheduleError as exc:
        _fail(f"schedules not provisioned, nothing changed: {exc}")
    click.echo(f"{path}: {report.line()}")
