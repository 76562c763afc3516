"""Sizes of the pool's parts on disk: Miningcore's database, the Ergo node's data, logs, backups.

Walking a large ``.ergo`` directory takes time, so the agent runs this collector in a
background thread every ``intervals.componentSizesSeconds`` (see ``BackgroundCollector``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from agent.collectors.base import Collector, CollectorFailed
from agent.contract import Sample

log = logging.getLogger("agent.collectors.components")

METRIC = "poolwarden_component_size_bytes"


@dataclass
class DirSize:
    bytes: int = 0
    files: int = 0
    errors: int = 0
    top: dict[str, int] = field(default_factory=dict)  # bytes per top-level entry (when asked)


WALK_THREADS = 4  # directories scanned at once: on a cold cache the stat calls wait on the disk


def _scan_dir(path: str, seen: set[tuple[int, int]], seen_lock: threading.Lock
              ) -> tuple[int, int, int, list[tuple[str, str, int, bool]]]:
    """One directory: (bytes of its non-directory entries, entries counted, errors,
    [(path, name, bytes, True)] of its subdirectories)."""
    subtotal = files = errors = 0
    entries_out: list[tuple[str, str, int, bool]] = []
    S_ISDIR = stat.S_ISDIR  # noqa: N806 - local alias: this loop runs once per file
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    errors += 1
                    continue
                is_dir = S_ISDIR(st.st_mode)
                if st.st_nlink > 1 and not is_dir:
                    inode = (st.st_dev, st.st_ino)
                    with seen_lock:
                        if inode in seen:
                            continue
                        seen.add(inode)
                blocks = st.st_blocks * 512
                files += 1
                if is_dir:
                    entries_out.append((entry.path, entry.name, blocks, True))
                else:
                    subtotal += blocks
    except OSError:
        errors += 1
    return subtotal, files, errors, entries_out


def directory_size(root: str, split: bool = False, threads: int = WALK_THREADS) -> DirSize:
    """Allocated bytes under ``root`` like ``du -s``: st_blocks * 512, each hard-linked inode once,
    symlinks never followed (the link itself counts). Unreadable entries are skipped and counted.
    With ``split``, ``top`` holds the bytes under each top-level entry too (one walk for both).

    Directories are scanned by ``threads`` threads at once: ``os.scandir`` and ``stat`` release the
    GIL, so on a cold cache their disk waits overlap (``du`` waits for one at a time).

    Raises FileNotFoundError / NotADirectoryError if ``root`` is not a directory.
    """
    top = os.stat(root, follow_symlinks=False)
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(root)
    size = DirSize(bytes=top.st_blocks * 512)
    seen: set[tuple[int, int]] = set()
    lock = threading.Lock()

    # the top level first, in this thread: it decides the split's owners
    with os.scandir(root) as entries:
        first = list(entries)
    pending: list[tuple[str, str]] = []
    for entry in first:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            size.errors += 1
            continue
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            if inode in seen:
                continue
            seen.add(inode)
        blocks = st.st_blocks * 512
        size.files += 1
        size.bytes += blocks
        if split:
            size.top[entry.name] = size.top.get(entry.name, 0) + blocks
        if stat.S_ISDIR(st.st_mode):
            pending.append((entry.path, entry.name))

    def account(owner: str, result: tuple[int, int, int, list]) -> list[tuple[str, str]]:
        subtotal, files, errors, subdirs = result
        dir_bytes = subtotal + sum(b for _, _, b, _ in subdirs)
        size.bytes += dir_bytes
        size.files += files
        size.errors += errors
        if split:
            size.top[owner] = size.top.get(owner, 0) + dir_bytes
        return [(p, owner) for p, _, _, is_dir in subdirs if is_dir]

    if threads <= 1:
        while pending:
            path, owner = pending.pop()
            pending += account(owner, _scan_dir(path, seen, lock))
        return size
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="du") as pool:
        running = {pool.submit(_scan_dir, path, seen, lock): owner for path, owner in pending}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                owner = running.pop(future)
                for path, child_owner in account(owner, future.result()):
                    running[pool.submit(_scan_dir, path, seen, lock)] = child_owner
    return size


def mount_point(path: str) -> str:
    """The mount point holding ``path`` (walks up to the nearest one)."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


# Rotated log names: app.log.1, app.log.2.gz, app-2025-06-01.log(.gz), app.log-20250601, ergo-2025-06-10.3.log.gz
_ROTATED = re.compile(r"(\.\d+(\.(gz|xz|bz2|zst|lz4))?$)|(\.(gz|xz|bz2|zst|lz4|zip)$)|(\d{4}-?\d{2}-?\d{2})")
LOGROTATE_CONFIGS = ("/etc/logrotate.conf", "/etc/logrotate.d/*")


def is_rotated(name: str) -> bool:
    return bool(_ROTATED.search(name))


@dataclass
class LogDir:
    active: dict[str, int] = field(default_factory=dict)  # relative name -> bytes
    rotated: int = 0
    newest_rotated_mtime: float | None = None


def scan_log_dir(root: str, max_depth: int = 2) -> LogDir:
    """Active log files (``*.log``, ``*.txt``, ``*.out``, ``*.err`` not matching a rotated name) and
    rotated ones, ``max_depth`` levels down (``logs/nginx/access.log``)."""
    out = LogDir()
    stack = [(root, 0)]
    while stack:
        path, depth = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth + 1 < max_depth:
                        stack.append((entry.path, depth + 1))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            rel = os.path.relpath(entry.path, root)
            if is_rotated(entry.name):
                out.rotated += 1
                if out.newest_rotated_mtime is None or st.st_mtime > out.newest_rotated_mtime:
                    out.newest_rotated_mtime = st.st_mtime
            elif entry.name.endswith((".log", ".txt", ".out", ".err")):
                out.active[rel] = st.st_size
    return out


def logrotate_names(directory: str, configs: Sequence[str] = LOGROTATE_CONFIGS) -> bool:
    """True if a logrotate configuration mentions ``directory``."""
    needle = directory.rstrip("/") + "/"
    for pattern in configs:
        for name in glob.glob(pattern):
            try:
                with open(name, encoding="utf-8", errors="replace") as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue
    return False


class ComponentSizeCollector(Collector):
    """``poolwarden_component_size_bytes{component, path}`` for each configured part.

    * ``postgresql``: ``pg_database_size(current_database())`` on Miningcore's DSN, path ``db:<name>``;
    * ``ergoNode``: the node's data directory;
    * ``logs``: one sample per log directory;
    * ``backups``: the backup directory.

    A directory that does not exist yields no sample and a log line (it may simply not exist yet,
    e.g. before the first backup). A database that cannot be reached marks the collector down but
    the directory sizes are still sent.
    """

    name = "components"
    METRICS = (METRIC, "poolwarden_component_mount_info", "poolwarden_log_file_size_bytes",
               "poolwarden_log_rotated_files", "poolwarden_log_newest_rotated_age_seconds",
               "poolwarden_log_rotation_configured", "poolwarden_backup_files", "poolwarden_backup_newest_age_seconds")
    ERGO_PARTS = ("history", "state")  # the rest (snapshots, peers, wallet) is ergoNode.other

    def __init__(self, database_dsn: str | None = None, ergo_data_dir: str | None = None,
                 log_dirs: Sequence[str] = (), backup_dir: str | None = None, connect_timeout: float = 5.0,
                 extra_dirs: Sequence[tuple[str, str]] = (), logrotate_configs: Sequence[str] = LOGROTATE_CONFIGS):
        self.database_dsn = database_dsn
        self.connect_timeout = connect_timeout
        self.logrotate_configs = tuple(logrotate_configs)
        self.dirs: list[tuple[str, str]] = []
        if ergo_data_dir:
            self.dirs.append(("ergoNode", ergo_data_dir))
        self.dirs += [("logs", d) for d in dict.fromkeys(log_dirs)]
        if backup_dir:
            self.dirs.append(("backups", backup_dir))
        self.extra_dirs = list(extra_dirs)  # (component, path): mount info only (e.g. the spool)

    def collect(self) -> list[Sample]:
        samples: list[Sample] = []
        failure = None
        if self.database_dsn:
            try:
                samples.append(self.database_size())
            except Exception as exc:  # psycopg errors, bad DSN: report, keep the directory sizes
                failure = f"Miningcore database size: {describe_db_error(exc)}"
        now = time.time()
        for component, path in self.dirs:
            try:
                size = directory_size(path, split=component == "ergoNode")
            except FileNotFoundError:
                log.warning("components: %s directory %s does not exist; no size reported", component, path)
                continue
            except OSError as exc:
                log.warning("components: cannot size %s directory %s: %s", component, path, exc)
                continue
            if size.errors:
                log.info("components: %d entries under %s could not be read (size is a lower bound)",
                         size.errors, path)
            samples.append(Sample(METRIC, float(size.bytes), {"component": component, "path": path}))
            samples.append(Sample("poolwarden_component_mount_info", 1.0,
                                  {"component": component, "path": path, "mount": mount_point(path)}))
            if component == "ergoNode":
                parts = {p: size.top.get(p, 0) for p in self.ERGO_PARTS}
                other = size.bytes - sum(parts.values())
                for part, value in [*parts.items(), ("other", other)]:
                    samples.append(Sample(METRIC, float(value), {"component": f"ergoNode.{part}",
                                                                 "path": os.path.join(path, part) if part != "other"
                                                                 else path}))
            elif component == "logs":
                samples += self.log_samples(path, now)
            elif component == "backups":
                samples += self.backup_samples(path, now)
        for component, path in self.extra_dirs:
            if os.path.isdir(path):
                samples.append(Sample("poolwarden_component_mount_info", 1.0,
                                      {"component": component, "path": path, "mount": mount_point(path)}))
        if failure:
            raise CollectorFailed(failure, samples)
        return samples

    def log_samples(self, path: str, now: float) -> list[Sample]:
        scan = scan_log_dir(path)
        labels = {"path": path}
        out = [Sample("poolwarden_log_file_size_bytes", float(size), {"path": path, "file": name})
               for name, size in sorted(scan.active.items())]
        out.append(Sample("poolwarden_log_rotated_files", float(scan.rotated), labels))
        if scan.newest_rotated_mtime is not None:
            out.append(Sample("poolwarden_log_newest_rotated_age_seconds",
                              round(max(now - scan.newest_rotated_mtime, 0.0), 3), labels))
        configured = scan.rotated > 0 or logrotate_names(path, self.logrotate_configs)
        out.append(Sample("poolwarden_log_rotation_configured", 1.0 if configured else 0.0, labels))
        return out

    @staticmethod
    def backup_samples(path: str, now: float) -> list[Sample]:
        files, newest = 0, None
        for dirpath, _dirs, names in os.walk(path):
            for name in names:
                try:
                    mtime = os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_mtime
                except OSError:
                    continue
                files += 1
                newest = mtime if newest is None else max(newest, mtime)
        out = [Sample("poolwarden_backup_files", float(files), {"path": path})]
        if newest is not None:
            out.append(Sample("poolwarden_backup_newest_age_seconds", round(max(now - newest, 0.0), 3),
                              {"path": path}))
        return out

    def database_size(self) -> Sample:
        import psycopg

        timeout_ms = int(max(self.connect_timeout, 1) * 1000)
        with psycopg.connect(self.database_dsn, connect_timeout=max(int(self.connect_timeout), 1),
                             options=f"-c statement_timeout={timeout_ms}", autocommit=True) as conn:
            name, size = conn.execute(
                "SELECT current_database(), pg_database_size(current_database())").fetchone()
        return Sample(METRIC, float(size), {"component": "postgresql", "path": f"db:{name}"})


def describe_db_error(exc: Exception) -> str:
    """One line an operator can act on, without the DSN's password."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"PostgreSQL query failed: {message}"
