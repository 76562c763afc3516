"""The simulated clock: sim time = start + real elapsed x speed + warps, pausable."""

from __future__ import annotations

import threading
import time


class SimClock:
    """Seconds since the epoch in simulated time.

    ``warp(n)`` jumps forward, ``pause()``/``resume()`` freeze and thaw it, ``step(n)`` moves a
    paused clock forward by hand. It never goes backwards.
    """

    def __init__(self, start: float, speed: float = 1.0, paused: bool = False, monotonic=time.monotonic):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._mono = monotonic
        self._lock = threading.Lock()
        self.speed = speed
        self._anchor_sim = float(start)
        self._anchor_mono = self._mono()
        self._paused = paused

    @property
    def paused(self) -> bool:
        return self._paused

    def now(self) -> float:
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> float:
        if self._paused:
            return self._anchor_sim
        return self._anchor_sim + (self._mono() - self._anchor_mono) * self.speed

    def pause(self) -> float:
        with self._lock:
            self._anchor_sim = self._now_locked()
            self._anchor_mono = self._mono()
            self._paused = True
            return self._anchor_sim

    def resume(self) -> float:
        with self._lock:
            if self._paused:
                self._anchor_mono = self._mono()
                self._paused = False
            return self._now_locked()

    def warp(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._anchor_sim += seconds
            return self._now_locked()

    step = warp
