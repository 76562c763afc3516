"""Fixtures of the notification tests; a test module takes them with
``pytest_plugins = ["tests.panel.notify_fixtures"]`` (and never imports this module itself)."""

from __future__ import annotations

import pytest

from tests.panel.notify_helpers import TEST_SECRETS_KEY, AlertTable


@pytest.fixture
def secrets_key(monkeypatch):
    """One secrets key for this process and any worker it starts."""
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY", TEST_SECRETS_KEY)
    return TEST_SECRETS_KEY


@pytest.fixture
def alert_table(db_url):
    table = AlertTable(db_url)
    yield table
    table.close()
