"""Sizes of the pool's parts on disk: Miningcore's database, the Ergo node's data, logs, backups.

Walking a large ``.ergo`` directory takes time, so the agent runs this collector in a
background thread every ``intervals.componentSizesSeconds`` (see ``BackgroundCollector``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from agent.collectors.base import Collector, CollectorFailed
from agent.contract import Sample

log = logging.getLogger("agent.collectors.components")

METRIC = "poolwarden_component_size_bytes"


@dataclass
class DirSize:
    bytes: int = 0
    files: int = 0
    errors: int = 0


def directory_size(root: str) -> DirSize:
    """Allocated bytes under ``root`` like ``du -s``: st_blocks * 512, each hard-linked inode once,
    symlinks never followed (the link itself counts). Unreadable entries are skipped and counted.

    Raises FileNotFoundError / NotADirectoryError if ``root`` is not a directory.
    """
    top = os.stat(root, follow_symlinks=False)
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(root)
    size = DirSize(bytes=top.st_blocks * 512)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
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
                    size.bytes += st.st_blocks * 512
                    size.files += 1
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            size.errors += 1
    return size


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
    METRICS = (METRIC,)

    def __init__(self, database_dsn: str | None = None, ergo_data_dir: str | None = None,
                 log_dirs: Sequence[str] = (), backup_dir: str | None = None, connect_timeout: float = 5.0):
        self.database_dsn = database_dsn
        self.connect_timeout = connect_timeout
        self.dirs: list[tuple[str, str]] = []
        if ergo_data_dir:
            self.dirs.append(("ergoNode", ergo_data_dir))
        self.dirs += [("logs", d) for d in dict.fromkeys(log_dirs)]
        if backup_dir:
            self.dirs.append(("backups", backup_dir))

    def collect(self) -> list[Sample]:
        samples: list[Sample] = []
        failure = None
        if self.database_dsn:
            try:
                samples.append(self.database_size())
            except Exception as exc:  # psycopg errors, bad DSN: report, keep the directory sizes
                failure = f"Miningcore database size: {describe_db_error(exc)}"
        for component, path in self.dirs:
            try:
                size = directory_size(path)
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
        if failure:
            raise CollectorFailed(failure, samples)
        return samples

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
