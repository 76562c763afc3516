"""Shared fixtures: private PostgreSQL and Redis servers for the whole test session.

The servers run under ``.run/test-<pid>/`` on free loopback ports and are stopped at the end of
the session. Tests get a fresh database (``fresh_db``) or an empty Redis database (``redis_url``)
each, so they never see each other's data.
"""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from devtools.services import RUN_DIR, PrivatePostgres, PrivateRedis

_SESSION_DIR = RUN_DIR / f"test-{os.getpid()}"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def session_dir():
    _SESSION_DIR.mkdir(parents=True, exist_ok=True)
    yield _SESSION_DIR
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(session_dir):
    """The session's PostgreSQL server (PrivatePostgres)."""
    server = PrivatePostgres("postgres", base=session_dir).start()
    yield server
    server.stop(quiet=True)


@pytest.fixture(scope="session")
def redis_server(session_dir):
    """The session's Redis server (PrivateRedis, appendonly on)."""
    server = PrivateRedis("redis", base=session_dir).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_db(pg):
    """A DSN of a new, empty database owned by the superuser; dropped after the test."""
    name = f"t{os.getpid()}_{next(_db_counter)}"
    dsn = pg.create_database(name)
    yield dsn
    pg.drop_database(name)


@pytest.fixture
def redis_url(redis_server):
    """URL of the session's Redis, flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url
