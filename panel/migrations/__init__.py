"""Versioned schema migrations: ``NNNN_name.sql`` files beside this module, applied in order.

``apply_migrations`` records each applied version in ``schema_migrations``, runs every migration
in its own transaction, and holds a PostgreSQL advisory lock for the whole run, so concurrent runs
(two panels starting at once) wait for each other instead of interleaving.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from panel import db

log = logging.getLogger(__name__)

# Arbitrary but fixed: the advisory lock key all poolwarden migration runs agree on.
MIGRATION_LOCK_KEY = 0x706F6F6C77617264  # "poolward"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """All migrations shipped with the package, in version order."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


def applied_versions(conn) -> set[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_migrations(dsn: str) -> list[Migration]:
    with db.connect(dsn) as conn:
        done = applied_versions(conn)
    return [m for m in available_migrations() if m.version not in done]


def apply_migrations(dsn: str) -> list[Migration]:
    """Apply the migrations not yet recorded; returns those applied (empty when up to date)."""
    applied = []
    with db.connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = applied_versions(conn)
            for migration in available_migrations():
                if migration.version in done:
                    continue
                log.info("applying migration %s_%s", migration.version, migration.name)
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied
