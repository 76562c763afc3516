"""Error pages: JSON ``{"error": ...}`` under /api and /healthz, a readable page elsewhere."""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from panel.db import DatabaseUnavailable

log = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/healthz")


def wants_json() -> bool:
    return request.path.startswith(JSON_PREFIXES)


def error_response(message: str, status: int):
    if wants_json():
        return jsonify(error=message), status
    return render_template("errors/error.html", message=message, status=status), status


def handle_http_error(exc: HTTPException):
    return error_response(exc.description or exc.name, exc.code or 500)


def handle_csrf_error(exc: CSRFError):
    return error_response(f"The form was not accepted ({exc.description.rstrip('.')}): reload the page and submit "
                          "it again.", 400)


def handle_database_unavailable(exc: DatabaseUnavailable):
    log.error("%s", exc)
    return error_response(str(exc), 503)


def handle_schema_missing(exc: psycopg.errors.UndefinedTable):
    log.error("panel database not migrated: %s", exc)
    return error_response("the panel database is not migrated yet: run 'poolwarden-panel migrate'", 503)


def handle_database_error(exc: psycopg.Error):
    log.exception("database error")
    return error_response(f"database error: {type(exc).__name__}; see the panel log", 503)


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(DatabaseUnavailable, handle_database_unavailable)
    app.register_error_handler(psycopg.errors.UndefinedTable, handle_schema_missing)
    app.register_error_handler(psycopg.Error, handle_database_error)
