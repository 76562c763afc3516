"""Sends batches to Redis, spooling them on disk while Redis cannot be reached.

Each batch is one XADD to ``pw:samples:<host>`` (capped at ``STREAM_MAXLEN``, approximately).
When Redis is down the batch goes to the spool directory, one JSON file per batch, named by a
sequence number so that a listing sorted by name is the order they were made. While anything is
spooled, new batches queue behind it; each cycle replays the spool oldest first and removes a
file only after its XADD succeeded. A crash between the two sends that batch twice, which is
harmless: the panel ingests a batch id once.

The spool is bounded: past ``max_batches`` the oldest files are deleted and counted in
``dropped`` (reported as ``poolwarden_spool_dropped_total``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import redis

from agent.contract import STREAM_MAXLEN, Batch, stream_key

log = logging.getLogger("agent.publisher")

_NAME = re.compile(r"^\d{20}\.json$")


class Spool:
    """A bounded, ordered, on-disk queue of batches."""

    def __init__(self, directory: str | os.PathLike[str], max_batches: int = 10_000):
        self.dir = Path(directory)
        self.max_batches = max_batches
        self.dropped = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        names = self._names()
        self._next = int(names[-1][:20]) + 1 if names else 1
        self._count = len(names)

    def _names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.dir) if _NAME.match(n))

    def __len__(self) -> int:
        return self._count

    def put(self, batch: Batch) -> None:
        name = f"{self._next:020d}.json"
        self._next += 1
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(batch.to_fields()["batch"], encoding="utf-8")
        os.replace(tmp, self.dir / name)  # a reader never sees half a file
        self._count += 1
        if self._count > self.max_batches:
            self._trim()

    def _trim(self) -> None:
        names = self._names()
        excess = len(names) - self.max_batches
        for name in names[:max(excess, 0)]:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
            self.dropped += 1
        self._count = len(names) - max(excess, 0)
        if excess > 0:
            log.warning("spool full (%d batches): dropped the %d oldest, %d dropped since start",
                        self.max_batches, excess, self.dropped)

    def pending(self) -> list[Path]:
        """Spooled files, oldest first."""
        return [self.dir / n for n in self._names()]

    def load(self, path: Path) -> Batch | None:
        """The batch in ``path``; an unreadable file is set aside as ``*.bad`` and None returned."""
        try:
            return Batch.from_fields({"batch": path.read_text(encoding="utf-8")})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spool file %s is unreadable (%s); moved aside as .bad", path.name, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".bad"))
            self._count = max(self._count - 1, 0)
            return None

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._count = max(self._count - 1, 0)


class Publisher:
    """XADD batches to the host's stream; fall back to the spool, replay in order."""

    def __init__(self, client: redis.Redis, host: str, spool: Spool):
        self.client = client
        self.key = stream_key(host)
        self.spool = spool
        self._redis_ok: bool | None = None

    @classmethod
    def from_url(cls, url: str, host: str, spool: Spool, timeout: float = 5.0) -> Publisher:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, host, spool)

    def _xadd(self, batch: Batch) -> None:
        self.client.xadd(self.key, batch.to_fields(), maxlen=STREAM_MAXLEN, approximate=True)

    def publish(self, batch: Batch) -> bool:
        """Send ``batch`` after anything spooled before it; True if it reached Redis now,
        False if it was spooled."""
        if len(self.spool):
            self.flush()
        if len(self.spool) == 0:
            try:
                self._xadd(batch)
                self._note(True)
                return True
            except (redis.RedisError, OSError) as exc:
                self._note(False, exc)
        self.spool.put(batch)
        return False

    def flush(self) -> int:
        """Replay spooled batches oldest first until the spool is empty or Redis fails; return how many were sent."""
        sent = 0
        for path in self.spool.pending():
            batch = self.spool.load(path)
            if batch is None:
                continue
            try:
                self._xadd(batch)
            except (redis.RedisError, OSError) as exc:
                self._note(False, exc)
                break
            self.spool.remove(path)
            sent += 1
        if sent:
            self._note(True)
            log.info("replayed %d spooled batches to %s (%d left)", sent, self.key, len(self.spool))
        return sent

    def _note(self, ok: bool, exc: Any = None) -> None:
        """Log transitions only, so a long outage is one warning, not one per cycle."""
        if ok and self._redis_ok is False:
            log.info("Redis reachable again; sending to %s", self.key)
        elif not ok and self._redis_ok is not False:
            log.warning("Redis unreachable (%s); spooling batches in %s", exc, self.spool.dir)
        self._redis_ok = ok

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
