"""poolsim: a simulated Ergo mining pool (Miningcore API + metrics, Ergo node API, Miningcore's DB).

In-process::

    from poolsim import PoolSim
    with PoolSim(seed=42, dsn=dsn, paused=True) as sim:   # seeds the DB, opens three ports
        sim.urls            # {"api": ..., "node": ..., "control": ..., "pool_id": "ergo1"}
        sim.step(600)       # move the paused clock 10 sim minutes

As a subprocess (what integration tests use): ``poolsim.testing.run_poolsim(dsn)``.
"""

from __future__ import annotations

__all__ = ["PoolSim"]


def __getattr__(name: str):
    if name == "PoolSim":
        from poolsim.app import PoolSim

        return PoolSim
    raise AttributeError(name)
