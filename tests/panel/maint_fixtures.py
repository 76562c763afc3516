"""Fixtures of the maintenance tests: each tests/panel/test_maintenance_*.py loads them with
``pytest_plugins = ["tests.panel.maint_fixtures"]``."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from panel.engine.tasks import TaskContext


@pytest.fixture
def host_key(runner) -> bytes:
    """pool-1 enrolled: its job key."""
    from tests.panel.maint_helpers import enrol

    return enrol(runner)


@pytest.fixture
def ctx(app, db_url, rds):
    """The engine task's context, as ``poolwarden-panel engine`` builds it."""
    context = TaskContext(db_url, rds, app.config)
    yield context
    context.reset()


@pytest.fixture
def dbconn(db_url):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
