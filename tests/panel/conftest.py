"""Panel fixtures: a migrated database, the app with its client and CLI runner, and batch helpers."""

from __future__ import annotations

import psycopg
import pytest
import redis

from panel import create_app
from panel.migrations import apply_migrations


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
