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

# The longest files, first: with --no-loadscope-reorder (the Makefile) pytest-xdist hands out files in
# collection order, and a 7-minute file handed out last would run alone at the end.
LONGEST_FIRST = ("tests/integration/test_alerting_e2e_history.py", "tests/integration/test_alerting_e2e.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)   # stable: every other test keeps its order


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


# -- a real browser -----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Root needs --no-sandbox; the rest keeps Chromium off the network this machine does not have.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture
def chromium():
    """Debian's headless Chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run devtools/bootstrap.sh test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A 1440x1000 Chromium tab, closed after the test."""
    tab = open_tab(chromium, 1440, 1000)
    yield tab
    tab.context.close()


def open_tab(browser, width: int = 1280, height: int = 860):
    """A tab in a fresh context; ``tab.errors`` collects page errors and console errors."""
    tab = browser.new_context(viewport={"width": width, "height": height}).new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors
    return tab
