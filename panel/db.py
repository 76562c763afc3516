"""PostgreSQL access: one short-lived connection per request, and friendly connection errors."""

from __future__ import annotations

import psycopg
from flask import Flask, current_app, g
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

CONNECT_TIMEOUT_SECONDS = 5


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not be reached; the message names host:port for the operator."""


def describe(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, without the password, for log lines and error pages."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """Open an autocommit connection, turning a refusal into DatabaseUnavailable."""
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"PostgreSQL at {describe(dsn)} cannot be reached ({reason}): is it running?"
        ) from exc


def get_db() -> psycopg.Connection:
    """The request's connection (dict rows), opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE_URL"], row_factory=dict_row)
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
