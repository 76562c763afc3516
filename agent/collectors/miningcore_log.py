"""Payout failures and other lines an operator must hear about, read from Miningcore's log file.

Miningcore's API does not show a failed payout; its log does. This collector follows the main log
(``miningcore.log`` in ``miningcore.logDir``, the name set by ``collectors.miningcore_log.fileName``),
which holds every logger's lines in the layout
``[yyyy-MM-dd HH:mm:ss.ffff] [E] [<logger short name or pool id>] message`` (miningcore.md §6.4, §8),
and turns these warning, error and fatal lines into events:

* ``payment_failed``: the payout handler's ``Payment transaction failed: …``, ``Failed to unlock
  wallet…`` and ``Wallet is not initialized`` (logger = the pool id), and PayoutManager's
  ``Error while processing payout for pool <id>: …`` and ``[<id>] Payment processing failed…``.
  A PayoutManager line that follows a pool's own failure line within ``FOLLOW_UP_SECONDS`` is the
  same failure and gives no second event. A PayoutManager line naming no pool is put on the only
  watched pool, or on pool ``""`` when there are several. With ``miningcore.poolIds`` set, other
  pools' lines are left out;
* ``block_submission_failed``: ``Block <h> submission failed with: …`` (the node rejected a solution);
* ``shares_lost``: ``Fatal error during policy fallback execution. Share(s) will be lost!``.

Data: ``pool``, ``error`` (the message, at most 500 characters), ``logger``, ``level``, ``logged``
(the line's time, read as UTC: NLog writes local time, which is UTC in a container without ``TZ``)
and ``height`` for a block. The event's ts is when the agent read the line, not the line's time: a
Miningcore with a local ``TZ`` (or a simulated clock) must not date an alert hours away, and a
failure logged while the agent was down is news when it is read. Ids
are a hash of the line itself (its time has 0.1 ms resolution), so a line read twice, after a lost
batch, a lost cursor or a rotation, is ingested once. Continuation lines (an exception's stack
trace) are skipped: the first line carries the message.

Following: the cursor (``miningcore-log.cursor`` in the state directory) holds the file's device
and inode, the byte offset read up to and the last bytes before it; it is saved only after the
batch holding the events is in Redis or the spool (``commit``). The very first run starts at the
end of the file (old failures are not news). A file shorter than the offset, or whose bytes before
the offset changed, was truncated (logrotate ``copytruncate``) and is read from its start; a new
inode (rename rotation) is read from its start too. Either way, what was written between the last
run and the rotation is not read (it is in the rotated file, often compressed at once). A file
that appears after the agent saw it missing is read from its start. At most ``MAX_BYTES_PER_RUN``
are read per run (a backlog is caught up over several runs); an unfinished last line waits for
the next run; bytes that are not UTF-8 are replaced.

No file is not a failure (Miningcore may log to the console only); a missing directory is logged
once as a warning.
"""

from __future__ import annotations

import base64
import calendar
import copy
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.collectors.base import Collector, CollectorFailed
from agent.contract import Event, Sample

log = logging.getLogger("agent.collectors.miningcore_log")

CURSOR_FILE = "miningcore-log.cursor"
CURSOR_VERSION = 1
DEFAULT_FILE_NAME = "miningcore.log"
MAX_BYTES_PER_RUN = 8 * 1024 * 1024
FINGERPRINT_BYTES = 64  # the bytes before the offset, to notice a file truncated and written past it again
MAX_ERROR_CHARS = 500
FOLLOW_UP_SECONDS = 10.0  # PayoutManager's line after the handler's own (LockWallet runs in between)

LEVELS = {"T": "trace", "D": "debug", "I": "info", "W": "warn", "E": "error", "F": "fatal"}
LINE = re.compile(r"\[(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?\] \[([TDIWEF])\] \[([^\]]*)\] ?(.*)")
CATEGORY = re.compile(r"\[([^\]]*)\]\s*")  # "[Ergo Payout Handler] ..." or PayoutManager's "[ergo1] ..."
POOL_ID = re.compile(r"[A-Za-z0-9_.-]+")
POOL_PAYMENT_FAILURE = re.compile(r"Payment transaction failed|Failed to unlock wallet|Wallet is not initialized")
PAYOUT_ERROR = re.compile(r"Error while processing payout for pool ([A-Za-z0-9_.-]+)")
PAYOUT_FAILED = re.compile(r"Payment processing failed")
BLOCK_SUBMISSION = re.compile(r"Block (\d+) submission failed with\b")
SHARES_LOST = re.compile(r"Fatal error during policy fallback execution")


def parse_line(line: str) -> tuple[float, str, str, str] | None:
    """``(logged, level letter, logger, message)`` of a Miningcore log line, None for anything else."""
    m = LINE.fullmatch(line)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, level, logger, message = m.groups()
    try:
        logged = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    except (ValueError, OverflowError):
        return None
    if fraction:
        logged += int(fraction) / 10 ** len(fraction)
    return round(logged, 4), level, logger, message


def _valid_cursor(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
        return False
    offset, last = data.get("offset"), data.get("lastFailure")
    try:
        base64.b64decode(data.get("tail") or "", validate=True)
    except (TypeError, ValueError):
        return False
    return (isinstance(offset, int) and offset >= 0 and isinstance(data.get("file"), str)
            and (last is None or isinstance(last, dict) and isinstance(last.get("pool"), str)
                 and isinstance(last.get("logged"), (int, float))))


class MiningcoreLogCollector(Collector):
    name = "miningcore_log"
    METRICS = ()
    every = 10.0

    def __init__(self, log_dir: str | os.PathLike[str], state_dir: str | os.PathLike[str],
                 file_name: str = DEFAULT_FILE_NAME, pool_ids: Sequence[str] = (),
                 discovered_pool_ids: Callable[[], Sequence[str]] | None = None,
                 max_bytes: int = MAX_BYTES_PER_RUN, clock: Callable[[], float] = time.time):
        """``pool_ids``: the pools configured in pool.json (events of other pools are left out);
        empty = every pool, and ``discovered_pool_ids`` (what the API lists) names the only pool."""
        self.dir = Path(log_dir)
        self.path = self.dir / file_name
        self.cursor_path = Path(state_dir) / CURSOR_FILE
        self.pool_ids = tuple(pool_ids)
        self.discovered_pool_ids = discovered_pool_ids
        self.max_bytes = max_bytes
        self.clock = clock
        self.state = self._load()
        self.proposed: dict[str, Any] | None = None
        self._reported_missing: str | None = None  # "dir" or "file" once logged, until it appears

    # -- the cursor
    def _load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.cursor_path.read_text(encoding="utf-8"))
            if _valid_cursor(data):
                return data
            log.warning("miningcore log: cursor %s has an unknown layout; starting at the end of the file",
                        self.cursor_path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("miningcore log: cursor %s unreadable (%s); starting at the end of the file",
                        self.cursor_path, exc)
        return None

    def commit(self) -> None:
        if self.proposed is None:
            return
        if self.proposed != self.state:
            self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cursor_path.with_name(f".{self.cursor_path.name}.tmp")
            tmp.write_text(json.dumps(self.proposed, separators=(",", ":")), encoding="utf-8")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.cursor_path)
        self.commit_memory()

    def commit_memory(self) -> None:
        if self.proposed is not None:
            self.state, self.proposed = self.proposed, None

    # -- reading
    def collect(self) -> list[Sample | Event]:
        state = copy.deepcopy(self.state)
        last_failure = state.get("lastFailure") if state else None
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            if not self.dir.is_dir():  # not mounted yet? keep the cursor (or the first-run rule) as it is
                self._report_missing("dir")
                self.proposed = state
                return []
            self._report_missing("file")  # a file that appears later is read from its start
            self.proposed = {"version": CURSOR_VERSION, "file": str(self.path), "dev": None, "ino": None,
                             "offset": 0, "tail": "", "lastFailure": last_failure}
            return []
        except OSError as exc:
            hint = ": the agent's user needs read access to it" if isinstance(exc, PermissionError) else ""
            raise CollectorFailed(f"cannot read Miningcore's log {self.path}: {exc.strerror or exc}{hint}") from None
        self._reported_missing = None
        with f:
            st = os.fstat(f.fileno())
            start = self._start(f, st, state)
            f.seek(start)
            data = f.read(self.max_bytes)
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) == self.max_bytes:
                cut = len(data)  # no line end in a whole run's worth (a NUL hole?): skip it, never stall
            end = start + cut
            f.seek(max(0, end - FINGERPRINT_BYTES))
            tail = f.read(end - max(0, end - FINGERPRINT_BYTES))
        events, last_failure = self._events(data[:cut], last_failure)
        self.proposed = {"version": CURSOR_VERSION, "file": str(self.path), "dev": st.st_dev, "ino": st.st_ino,
                         "offset": end, "tail": base64.b64encode(tail).decode("ascii"), "lastFailure": last_failure}
        return events

    def _report_missing(self, what: str) -> None:
        if self._reported_missing == what:
            return
        self._reported_missing = what
        if what == "dir":
            log.warning("miningcore log: the directory %s (miningcore.logDir) does not exist: payout failures "
                        "cannot be seen until it does", self.dir)
        else:
            log.info("miningcore log: %s does not exist (yet): Miningcore may log to the console only "
                     "(logging.logFile in its config.json)", self.path)

    def _start(self, f: Any, st: os.stat_result, state: dict[str, Any] | None) -> int:
        """Where to read from: see the module docstring."""
        if state is None or state.get("file") != str(self.path):
            return st.st_size  # first run: old lines are not news
        if state.get("ino") is None:
            return 0  # the file appeared since the last run
        if (state.get("dev"), state.get("ino")) != (st.st_dev, st.st_ino):
            log.info("miningcore log: %s is a new file (rotated); reading it from the start", self.path)
            return 0
        offset = state["offset"]
        if st.st_size < offset:
            log.info("miningcore log: %s shrank below the last position (truncated); reading it from the start",
                     self.path)
            return 0
        tail = base64.b64decode(state.get("tail") or "")
        if tail:
            f.seek(offset - len(tail))
            if f.read(len(tail)) != tail:
                log.info("miningcore log: %s was rewritten (truncated and written again); reading it from the start",
                         self.path)
                return 0
        return offset

    def _pools(self) -> Sequence[str]:
        if self.pool_ids or self.discovered_pool_ids is None:
            return self.pool_ids
        try:
            return tuple(self.discovered_pool_ids())
        except Exception:  # the Miningcore collector's list, read while it may change: best effort
            return ()

    def _only_pool(self) -> str:
        pools = list(dict.fromkeys(self._pools()))
        return pools[0] if len(pools) == 1 else ""

    def _events(self, data: bytes, last_failure: dict[str, Any] | None,
                ) -> tuple[list[Sample | Event], dict[str, Any] | None]:
        events: list[Sample | Event] = []
        now = self.clock()
        for raw in data.split(b"\n"):
            line = raw.decode("utf-8", errors="replace").replace("\x00", "").rstrip("\r")
            parsed = parse_line(line)
            if parsed is None or parsed[1] not in "WEF":
                continue  # info and debug lines, stack trace lines, a NUL hole, other layouts
            logged, level, logger, message = parsed
            kind, data_, last_failure = self._classify(logged, logger, message, last_failure)
            if kind is None:
                continue
            if self.pool_ids and data_["pool"] and data_["pool"] not in self.pool_ids:
                continue  # a pool this agent is not configured to watch
            digest = hashlib.sha256(line.encode("utf-8")).hexdigest()[:32]
            events.append(Event(f"mclog:{kind}:{digest}", kind, now,
                                {**data_, "logger": logger, "level": LEVELS[level], "logged": logged}))
        return events, last_failure

    def _classify(self, logged: float, logger: str, message: str, last_failure: dict[str, Any] | None,
                  ) -> tuple[str | None, dict[str, Any], dict[str, Any] | None]:
        """(kind or None, data, the new ``lastFailure``) for one warning or error line.

        ``lastFailure`` is the pool and time of the last pool-scoped payout failure, until a
        PayoutManager line repeats it (that line then gives no event)."""
        category = CATEGORY.match(message)
        body = message[category.end():] if category else message
        error = body.strip()[:MAX_ERROR_CHARS]
        if POOL_PAYMENT_FAILURE.search(body):
            return "payment_failed", {"pool": logger, "error": error}, {"pool": logger, "logged": logged}
        m = PAYOUT_ERROR.search(body)
        if m or PAYOUT_FAILED.search(body):
            if m:
                pool = m.group(1)
            elif category and POOL_ID.fullmatch(category.group(1)):
                pool = category.group(1)  # oliverw's "[ergo1] Payment processing failed"
            else:
                pool = ""
            if (last_failure and 0 <= logged - last_failure["logged"] <= FOLLOW_UP_SECONDS
                    and pool in ("", last_failure["pool"])):
                return None, {}, None  # the same failure, already reported from the pool's own line
            return "payment_failed", {"pool": pool or self._only_pool(), "error": error}, last_failure
        m = BLOCK_SUBMISSION.search(body)
        if m:
            return ("block_submission_failed", {"pool": logger, "height": int(m.group(1)), "error": error},
                    last_failure)
        if SHARES_LOST.search(body):
            return "shares_lost", {"pool": self._only_pool(), "error": error}, last_failure
        return None, {}, last_failure
