"""``poolwarden-panel alerts check|import|export``: the rules file from the console.

``check FILE`` says whether a file would be accepted (without a database); ``import [FILE]`` makes
the provisioned rules those of the file (POOLWARDEN_ALERTS_CONFIG, else the built-in rules), as the
engine does at start; ``export`` prints the rules as alerts.json.
"""

from __future__ import annotations

import sys

import click

from panel.alerts.config import ConfigInvalid, builtin_rules, dumps, export_document, read_file
from panel.audit.cli import command_config


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"poolwarden-panel: {message}", err=True)
    sys.exit(code)


@click.group("alerts", help="Alert rules: check, import or export alerts.json.")
def alerts_group() -> None:
    pass


@alerts_group.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def check_command(path: str) -> None:
    """Check a rules file; exit 1 naming every problem (field and reason)."""
    try:
        rules, _checksum = read_file(path)
    except ConfigInvalid as exc:
        for field, reason in exc.problems:
            click.echo(f"{field}: {reason}", err=True)
        _fail(f"{path} would be refused ({len(exc.problems)} problem{'s' * (len(exc.problems) != 1)})")
    enabled = sum(r.enabled for r in rules)
    click.echo(f"{path}: {len(rules)} rules ({enabled} enabled), all valid")


@alerts_group.command("import")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def import_command(path: str | None) -> None:
    """Provision the rules of PATH (default: POOLWARDEN_ALERTS_CONFIG, else the built-in rules)."""
    from panel.alerts.evaluator import BUILTIN, config_path
    from panel.alerts.store import provision, provision_file
    from panel.db import DatabaseUnavailable, connect

    config = command_config("DATABASE_URL")
    path = path or config_path(config)
    try:
        with connect(config["DATABASE_URL"]) as conn:
            if path is None:
                report = provision(conn, builtin_rules(), path=BUILTIN, checksum=None, actor="console")
            else:
                report = provision_file(conn, path, actor="console")
    except DatabaseUnavailable as exc:
        _fail(str(exc), 2)
    except ConfigInvalid as exc:
        _fail(str(exc))
    click.echo(f"imported {path or BUILTIN}: {report.line()}")


@alerts_group.command("export")
@click.option("--origin", type=click.Choice(["all", "provisioned", "ui"]), default="all", show_default=True,
              help="provisioned: the rules from the file; ui: those made in the UI or the API.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to FILE, not stdout.")
@click.option("--builtin", is_flag=True, help="The built-in rules (no database needed).")
def export_command(origin: str, output: str | None, builtin: bool) -> None:
    """Print the rules as alerts.json."""
    from panel.alerts.store import load_rules
    from panel.db import DatabaseUnavailable, connect

    if builtin:
        rules = builtin_rules()
    else:
        config = command_config("DATABASE_URL")
        try:
            with connect(config["DATABASE_URL"]) as conn:
                rules = [r for r in load_rules(conn) if origin == "all" or r.provisioned == (origin == "provisioned")]
        except DatabaseUnavailable as exc:
            _fail(str(exc), 2)
    text = dumps(export_document(rules))
    if output:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
        click.echo(f"{len(rules)} rules written to {output}")
    else:
        click.echo(text, nl=False)
