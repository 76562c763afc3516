"""``GET /healthz``: is the panel's database reachable and migrated (for monitors and load balancers)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from panel.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    exists = get_db().execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok").fetchone()
    if not exists["ok"]:
        return jsonify(status="error", error="database not migrated: run 'poolwarden-panel migrate'"), 503
    return jsonify(status="ok", database="reachable")
