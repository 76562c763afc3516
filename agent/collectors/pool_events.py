"""Block and payment events, read incrementally from Miningcore's API with a cursor on disk.

``GET /api/pools/{id}/blocks`` and ``/payments`` list rows newest first (``created DESC``,
zero-based ``page``, no upper bound on ``pageSize``). Each run pages back only as far as it must:

* **blocks**: back to the oldest block still ``pending`` (it may yet be confirmed or orphaned) or
  the newest block already seen, whichever is older. A block seen for the first time gives
  ``block_found`` (and ``block_confirmed``/``block_orphaned`` at once if it is already settled); a
  known block whose status changed gives the new status's event.
* **payments**: back to the newest payment already seen (minus an hour of overlap, deduplicated
  by id), each new row giving ``payment_sent``.

An event is dated when it happened (``created``), but never later than the agent's clock: a
Miningcore clock running ahead must not put an event in the future, where the panel's rules do not
look (``created`` stays in the data).

Event ids are stable — ``block:<pool>:<height>:<nonce>:<found|confirmed|orphaned>`` and
``payment:<pool>:<tx>:<address>`` — so a replayed batch is ingested once. The cursor (``pool-events.cursor``
in the state directory) is written only after the batch holding the events is in Redis or the
spool (``commit``): events of a batch that was lost are read again; a crash between the two can
resend events, never lose them, and the panel deduplicates by id.

On the very first run (no cursor) the newest ``backfill`` rows of each kind are reported, not the
whole history. Payout failures are not in the API (only in Miningcore's logs and WebSocket feed):
``payment_failed`` comes from the ``miningcore_log`` collector (agent/collectors/miningcore_log.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from agent.collectors.base import Collector, CollectorFailed, describe_request_error
from agent.collectors.miningcore import as_number, parse_timestamp, short_body
from agent.contract import Event, Sample

log = logging.getLogger("agent.collectors.pool_events")

CURSOR_FILE = "pool-events.cursor"
CURSOR_VERSION = 1
PAGE_SIZE = 100
MAX_PAGES = 50  # per kind and run: 5000 rows, more than a long outage produces
PAYMENT_OVERLAP_SECONDS = 3600
STATUS_EVENT = {"confirmed": "block_confirmed", "orphaned": "block_orphaned"}


class PoolEventsCollector(Collector):
    name = "pool_events"
    METRICS = ("poolwarden_pool_pending_blocks", "poolwarden_pool_events_read_total")
    every = 30.0

    def __init__(self, session: requests.Session, api_url: str, state_dir: str | os.PathLike[str],
                 pool_ids: Sequence[str] | Callable[[], Sequence[str]] = (), timeout: float = 5.0,
                 backfill: int = 100, clock: Callable[[], float] = time.time):
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.path = Path(state_dir) / CURSOR_FILE
        self._pool_ids = pool_ids
        self.timeout = timeout
        self.backfill = backfill
        self.clock = clock
        self.state = self._load()
        self.proposed: dict[str, Any] | None = None
        self.proposed_counts: dict[tuple[str, str], int] = {}
        self.counts: dict[tuple[str, str], int] = {}

    # -- the cursor
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CURSOR_VERSION and isinstance(data.get("pools"), dict):
                return data
            log.warning("pool events: cursor %s has an unknown layout; starting afresh", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("pool events: cursor %s unreadable (%s); starting afresh", self.path, exc)
        return {"version": CURSOR_VERSION, "pools": {}}

    def commit(self) -> None:
        if self.proposed is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.proposed, separators=(",", ":")), encoding="utf-8")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.commit_memory()

    def commit_memory(self) -> None:
        if self.proposed is None:
            return
        self.state, self.proposed = self.proposed, None
        for key, n in self.proposed_counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.proposed_counts = {}

    # -- reading
    def pool_ids(self) -> list[str]:
        ids = self._pool_ids() if callable(self._pool_ids) else self._pool_ids
        return list(dict.fromkeys(ids))

    def _get(self, path: str, page: int, size: int) -> list[dict[str, Any]]:
        url = f"{self.api_url}{path}"
        try:
            response = self.session.get(url, params={"page": page, "pageSize": size}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CollectorFailed(f"Miningcore API at {url}: {describe_request_error(exc, self.timeout)}") from None
        if response.status_code != 200:
            raise CollectorFailed(f"Miningcore API at {url} answered HTTP {response.status_code}: "
                                  f"{short_body(response)}")
        try:
            rows = response.json()
        except ValueError:
            raise CollectorFailed(f"Miningcore API at {url} answered 200 with an unexpected body: "
                                  f"{short_body(response)}") from None
        if not isinstance(rows, list):
            raise CollectorFailed(f"Miningcore API at {url}: expected a list, got {type(rows).__name__}")
        return [r for r in rows if isinstance(r, dict)]

    def _pages(self, path: str, first_run: bool, stop_before: float) -> list[dict[str, Any]]:
        """Rows newest first, back to ``stop_before`` (or ``backfill`` rows on a first run)."""
        if first_run:
            return self._get(path, 0, self.backfill) if self.backfill > 0 else []
        rows: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            batch = self._get(path, page, PAGE_SIZE)
            rows += batch
            oldest = min((parse_timestamp(r.get("created")) or 0.0 for r in batch), default=0.0)
            if len(batch) < PAGE_SIZE or oldest < stop_before:
                break
        else:
            log.warning("pool events: %s: stopped after %d pages; older changes are skipped", path, MAX_PAGES)
        return rows

    def collect(self) -> list[Sample | Event]:
        proposed = copy.deepcopy(self.state)
        counts: dict[tuple[str, str], int] = {}
        out: list[Sample | Event] = []
        failures = []
        for pool in self.pool_ids():
            pool_state = proposed["pools"].setdefault(pool, {})
            try:
                events = self._blocks(pool, pool_state) + self._payments(pool, pool_state)
            except CollectorFailed as exc:
                failures.append(str(exc))
                proposed["pools"][pool] = copy.deepcopy(self.state["pools"].get(pool, {}))
                if not proposed["pools"][pool]:
                    del proposed["pools"][pool]
                continue
            out += events
            for e in events:
                counts[(pool, e.kind)] = counts.get((pool, e.kind), 0) + 1
            pending = sum(1 for b in pool_state["blocks"]["seen"].values() if b[0] == "pending")
            out.append(Sample("poolwarden_pool_pending_blocks", float(pending), {"pool": pool}))
        self.proposed, self.proposed_counts = proposed, counts
        for (pool, kind), n in sorted({**dict.fromkeys(self.counts, 0), **self.counts}.items()):
            out.append(Sample("poolwarden_pool_events_read_total", float(n), {"pool": pool, "kind": kind}))
        if failures:
            raise CollectorFailed("; ".join(failures), out)
        return out

    def _blocks(self, pool: str, pool_state: dict[str, Any]) -> list[Event]:
        blocks = pool_state.get("blocks")
        first_run = blocks is None
        if first_run:
            blocks = pool_state["blocks"] = {"seen": {}, "watermark": 0.0}
        seen: dict[str, list[Any]] = blocks["seen"]  # "height:nonce" -> [status, created]
        pending = [c for s, c in seen.values() if s == "pending"]
        boundary = min([*pending, blocks["watermark"]])
        now = self.clock()
        events: list[Event] = []
        for row in self._pages(f"/api/pools/{pool}/blocks", first_run, boundary):
            created = parse_timestamp(row.get("created"))
            height = as_number(row.get("blockHeight"))
            status = row.get("status")
            if created is None or height is None or status not in ("pending", "confirmed", "orphaned"):
                continue
            if not first_run and created < boundary:
                continue
            nonce = str(row.get("transactionConfirmationData") or row.get("hash") or "")
            key = f"{int(height)}:{nonce}"
            before = seen.get(key)
            data = {"pool": pool, "height": int(height), "nonce": nonce, "status": status,
                    "miner": row.get("miner"), "hash": row.get("hash"), "reward": as_number(row.get("reward")),
                    "effort": as_number(row.get("effort")), "created": created}
            base = f"block:{pool}:{int(height)}:{nonce}"
            if before is None:
                events.append(Event(f"{base}:found", "block_found", min(created, now), data))
            if status in STATUS_EVENT and (before is None or before[0] != status):
                events.append(Event(f"{base}:{status}", STATUS_EVENT[status], now, data))
            seen[key] = [status, created]
        if seen:
            blocks["watermark"] = max(blocks["watermark"], max(c for _s, c in seen.values()))
        new_boundary = min([c for s, c in seen.values() if s == "pending"] + [blocks["watermark"]])
        blocks["seen"] = {k: v for k, v in seen.items() if v[1] >= new_boundary}
        return sorted(events, key=lambda e: (e.data["created"], e.kind != "block_found"))

    def _payments(self, pool: str, pool_state: dict[str, Any]) -> list[Event]:
        payments = pool_state.get("payments")
        first_run = payments is None
        if first_run:
            payments = pool_state["payments"] = {"seen": {}, "watermark": 0.0}
        seen: dict[str, float] = payments["seen"]  # id -> created
        floor = payments["watermark"] - PAYMENT_OVERLAP_SECONDS
        now = self.clock()
        events: list[Event] = []
        for row in self._pages(f"/api/pools/{pool}/payments", first_run, floor):
            created = parse_timestamp(row.get("created"))
            tx, address = row.get("transactionConfirmationData"), row.get("address")
            if created is None or not tx or not address or (not first_run and created < floor):
                continue
            event_id = f"payment:{pool}:{tx}:{address}"
            if event_id in seen:
                continue
            seen[event_id] = created
            events.append(Event(event_id, "payment_sent", min(created, now),
                                {"pool": pool, "address": address, "amount": as_number(row.get("amount")),
                                 "tx": tx, "created": created}))
        if seen:
            payments["watermark"] = max(payments["watermark"], max(seen.values()))
        keep_from = payments["watermark"] - PAYMENT_OVERLAP_SECONDS
        payments["seen"] = {k: c for k, c in seen.items() if c >= keep_from}
        return sorted(events, key=lambda e: e.ts)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()
