"""Fixtures for poolsim tests: an in-process simulated pool with a paused clock."""

from __future__ import annotations

import itertools
import os

import pytest
import requests

from poolsim.app import PoolSim
from tests.poolsim.shapes import START

_names = itertools.count()


@pytest.fixture(scope="module")
def module_db(pg):
    name = f"ps{os.getpid()}_{next(_names)}"
    dsn = pg.create_database(name)
    yield dsn
    pg.drop_database(name)


@pytest.fixture(scope="module")
def sim(module_db, tmp_path_factory):
    """A running PoolSim (3 days of history, paused clock, all three servers up)."""
    log_dir = tmp_path_factory.mktemp("mclogs")
    ps = PoolSim(seed=42, dsn=module_db, start=START, paused=True, log_dir=str(log_dir))
    ps.start()
    yield ps
    ps.stop()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture
def clean_faults(sim):
    yield
    sim.faults.clear_all()
    sim.apply_faults()
