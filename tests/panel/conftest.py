"""Panel fixtures: a migrated database, the app with its client and CLI runner, sign-in helpers."""

from __future__ import annotations

import importlib

import psycopg
import pytest
import redis

from panel import create_app
from panel.migrations import apply_migrations
from tests.panel.auth_helpers import AuthActions


@pytest.fixture
def audited(monkeypatch):
    """Every record_event call of the test, as dicts (the real audit module still writes its rows)."""
    audit = importlib.import_module("panel.audit")
    calls = []
    real = audit.record_event

    def spy(action, object_type=None, object_id=None, **kwargs):
        calls.append({"action": action, "object_type": object_type, "object_id": object_id, **kwargs})
        return real(action, object_type, object_id, **kwargs)

    monkeypatch.setattr(audit, "record_event", spy)
    return calls


@pytest.fixture
def db_url(fresh_db):
    """A fresh database with every migration applied."""
    apply_migrations(fresh_db)
    return fresh_db


@pytest.fixture
def app(db_url, redis_url):
    return create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "STALE_AFTER_SECONDS": 60,
    })


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth(app, client, db_url):
    """``auth.login("alice", "admin")`` signs ``client`` in through the real forms (enrolling TOTP the
    first time); ``auth.logout()`` signs out. ``auth.other_client()`` is another browser."""
    return AuthActions(app, client, db_url)


@pytest.fixture
def viewer(auth):
    """The client signed in as a viewer (what the read-only pages need)."""
    auth.login("vera", "viewer")
    return auth


@pytest.fixture
def rds(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sql(db_url):
    """``sql("SELECT ...")`` -> all rows (None for statements without rows); closed after the test."""
    conn = psycopg.connect(db_url, autocommit=True)

    def run(query, params=None):
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None

    yield run
    conn.close()
