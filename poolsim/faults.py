"""Fault injection: which faults exist, their parameters, and which are active now.

A fault is switched on with ``POST /faults/<name>`` (JSON parameters, optional
``durationSeconds`` in **wall-clock** seconds, so a timed fault ends on time even while the sim
clock is paused or warped) and off with ``DELETE /faults/<name>``.

Two names are *actions*, not states (see ``poolsim.engine`` for the block life cycle):

- ``orphan_next_block`` stays active until the pool finds its next block; that block is then
  doomed and is classified ``orphaned`` at its first payout run (the way Miningcore discovers
  orphans), and the fault clears itself.
- ``orphan_block`` acts at once: the newest ``pending`` block is classified ``orphaned`` (reward 0,
  a "classified as orphaned" log line). It is never listed as active; it answers 409 when there is
  no pending block.

Two faults change the simulation rather than an answer (see ``poolsim.engine``):

- ``miners_leave {"ratio": r}`` disconnects ``ceil(r x connected miners)`` of the connected miners,
  the first by address (``ratio`` 1: every miner, and none connects while it lasts). They submit
  no shares; what Miningcore reports follows from its own rules (the /metrics connections gauge at
  once, ``connectedMiners`` and the hashrate as their shares leave the 10-minute window). Cleared,
  they reconnect.
- ``payout_processor_down``: payout runs do nothing (no classification, no confirmation progress,
  no credits, no payments, no log line); the first run after it is cleared catches up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class FaultError(ValueError):
    """A fault request that cannot be honoured (unknown name, bad parameter)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _only(params: dict, *names: str) -> None:
    """Refuse parameters a fault does not take (a misspelt ``ratio`` must not fall back to the default)."""
    unknown = sorted(set(params) - set(names))
    if unknown:
        takes = ", ".join(repr(n) for n in names) if names else "no parameters"
        raise FaultError(f"unknown parameter {', '.join(map(repr, unknown))}: this fault takes {takes}")


def _number(params: dict, name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FaultError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError as exc:
        raise FaultError(f"{name} must be a number, got {value!r}") from exc


def _ratio(params: dict) -> dict:
    _only(params, "ratio")
    ratio = _number(params, "ratio", 0.3)
    if not 0 < ratio < 1:
        raise FaultError(f"ratio must be between 0 and 1 (exclusive), got {ratio:g}")
    return {"ratio": ratio}


def _leave_ratio(params: dict) -> dict:
    _only(params, "ratio")
    ratio = _number(params, "ratio", 1.0)
    if not 0 < ratio <= 1:
        raise FaultError(f"ratio must be greater than 0 and at most 1 (1 = every miner), got {ratio:g}")
    return {"ratio": ratio}


def _seconds(params: dict) -> dict:
    _only(params, "seconds")
    seconds = _number(params, "seconds", 2.0)
    if not 0 <= seconds <= 300:
        raise FaultError(f"seconds must be between 0 and 300, got {seconds:g}")
    return {"seconds": seconds}


def _none(params: dict) -> dict:
    _only(params)
    return {}


FAULTS = {
    "pool_api_down": ("Miningcore API port refuses connections (listening socket closed)", _none),
    "pool_api_500": ("every Miningcore API call answers 500 with a plain-text body", _none),
    "node_down": ("Ergo node port refuses connections", _none),
    "node_stalled": ("node fullHeight/headersHeight stop while the network goes on", _none),
    "zero_peers": ("node has no peers (peersCount 0, stops following the chain)", _none),
    "invalid_share_spike": ("a fraction `ratio` of submitted shares is invalid", _ratio),
    "payment_failure": ("payout transactions fail; balances keep growing", _none),
    "orphan_next_block": ("the next block the pool finds will be orphaned", _none),
    "block_drought": ("the pool finds no blocks", _none),
    "slow_answers": ("every API/node answer is delayed by `seconds`", _seconds),
    "miners_leave": ("a fraction `ratio` of the connected miners (1 = all) disconnects and stops "
                     "submitting shares", _leave_ratio),
    "payout_processor_down": ("Miningcore's payout runs do nothing: blocks stay pending, no credits, "
                              "no payments", _none),
}
ACTIONS = {"orphan_block": "orphan the newest pending block now"}


@dataclass
class ActiveFault:
    name: str
    params: dict
    since_sim: float
    expires_mono: float | None = None
    since_wall: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        remaining = None
        if self.expires_mono is not None:
            remaining = max(0.0, round(self.expires_mono - time.monotonic(), 3))
        return {"name": self.name, "params": self.params, "sinceSimTime": self.since_sim,
                "remainingSeconds": remaining}


class FaultBoard:
    """Thread-safe set of active faults with optional expiry."""

    def __init__(self):
        self._lock = threading.Lock()
        self._active: dict[str, ActiveFault] = {}

    def activate(self, name: str, body: dict | None, sim_now: float) -> ActiveFault:
        if name not in FAULTS:
            raise FaultError(f"unknown fault {name!r}", status=404)
        body = dict(body or {})
        duration = body.pop("durationSeconds", None)
        params = FAULTS[name][1](body)
        expires = None
        if duration is not None:
            duration = float(duration)
            if duration <= 0:
                raise FaultError("durationSeconds must be positive")
            expires = time.monotonic() + duration
        fault = ActiveFault(name, params, sim_now, expires)
        with self._lock:
            self._active[name] = fault
        return fault

    def clear(self, name: str) -> bool:
        with self._lock:
            return self._active.pop(name, None) is not None

    def clear_all(self) -> list[str]:
        with self._lock:
            names = sorted(self._active)
            self._active.clear()
            return names

    def expire(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            gone = [n for n, f in self._active.items() if f.expires_mono is not None and f.expires_mono <= now]
            for n in gone:
                del self._active[n]
        return gone

    def is_active(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def get(self, name: str) -> ActiveFault | None:
        """The active fault itself (a new activation is a new object, even with the same parameters)."""
        with self._lock:
            return self._active.get(name)

    def param(self, name: str, key: str, default=None):
        with self._lock:
            fault = self._active.get(name)
            return fault.params.get(key, default) if fault else default

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [f.to_json() for _, f in sorted(self._active.items())]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._active)
