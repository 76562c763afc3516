"""Same seed and sim time, same answers; another seed, other answers."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import Client

from poolsim.app import PoolSim
from poolsim.miningcore_api import MiningcoreApi
from poolsim.node_api import NodeApi
from tests.poolsim.shapes import START


@pytest.fixture
def second_db(pg):
    dsn = pg.create_database("determinism_b")
    yield dsn
    pg.drop_database("determinism_b")


def bodies(ps: PoolSim) -> tuple[str, dict]:
    pools = Client(MiningcoreApi(ps)).get("/api/pools").get_data(as_text=True)
    info = json.loads(Client(NodeApi(ps)).get("/info").get_data(as_text=True))
    info.pop("currentTime")
    return pools, info


def run(seed: int, dsn: str, steps: list[float]) -> tuple[str, dict]:
    ps = PoolSim(seed=seed, dsn=dsn, start=START, paused=True, history_days=1, stats_interval=60)
    ps.start(start_servers=False)
    try:
        for seconds in steps:
            ps.step(seconds)
        return bodies(ps)
    finally:
        ps.stop()


def test_same_seed_same_answers_whatever_the_path(fresh_db, second_db):
    # one sim gets there in many small steps, the other in one jump: same state at the same sim time
    a = run(7, fresh_db, [10, 50, 600, 1140])
    b = run(7, second_db, [1800])
    assert a == b


def test_other_seed_other_answers(fresh_db, second_db):
    a = run(7, fresh_db, [600])
    b = run(8, second_db, [600])
    assert a[0] != b[0]
    assert a[1] != b[1]
