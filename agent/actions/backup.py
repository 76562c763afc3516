"""``backup`` and ``test_restore``: ``pg_dump -Fc`` of Miningcore's (or the panel's) database.

A backup is ``<database>-<YYYYmmddTHHMMSSZ>.dump`` in the backup directory (``paths.backups``),
with ``<name>.sha256`` (``sha256sum -c`` format) and ``<name>.json`` (the manifest: database,
snapshot time, size, checksum, exact row counts per table at dump time, verified flag) beside it.
Nothing else counts as a backup. How one is made, so that a crash at any point never leaves a
half-written file that looks like a backup:

1. take the directory's lock for that database (one backup or test restore at a time), remove the
   temporary files a killed earlier run left (``.<name>.partial``) and side files without a dump;
2. refuse up front when the free space is short of the expected size (the previous backup's size,
   or ``pg_database_size`` for the first one) plus ``maintenance.backupMarginPercent``;
3. export a snapshot (REPEATABLE READ) and run ``pg_dump -Fc --snapshot`` into ``.<name>.partial``
   while counting the rows of every table in the same snapshot, so the counts match the dump
   exactly even while Miningcore writes shares;
4. fsync, checksum, ``pg_restore --list`` (every counted table must have its data in the archive),
   write the checksum and manifest, then rename the dump to its final name (the commit point) and
   fsync the directory;
5. retention: keep the newest backup of each of the last ``keep_daily`` days and of the last
   ``keep_weekly`` ISO weeks, and always the newest verified backup; delete the rest of *this
   database's* backups (never any other file).

``test_restore`` restores the newest verified backup into a scratch database on the server of
``maintenance.scratchDatabaseDsn`` (default: the source's server), compares the row counts with
the manifest and always drops the scratch database.

The client tools are the ones matching the server's major version: ``PATH`` first, then
``/usr/lib/postgresql/*/bin``. Passwords travel in ``PGPASSWORD``, never on a command line.
The connection helpers at the top are shared with the ``vacuum`` and ``cleanup`` actions.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import glob
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent.actions import ActionContext, ActionFailed
from agent.config import Config

DATABASES = ("miningcore", "panel")
BACKUP_NAME = re.compile(r"^(?P<database>miningcore|panel)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
SIDE_FILE = re.compile(r"^(?P<dump>(?:miningcore|panel)-\d{8}T\d{6}Z\.dump)\.(?:sha256|json)$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
TEMP_SUFFIX = ".partial"
MANIFEST_FORMAT = 1
PG_LIB_GLOB = "/usr/lib/postgresql/*/bin"
LOCK_WAIT_TIMEOUT = "120s"  # pg_dump gives up instead of queueing forever behind an exclusive lock
STALE_SCRATCH_AGE = timedelta(hours=12)  # scratch databases a killed test restore left behind
SCRATCH_PREFIX = "pw_restore_"


# --- PostgreSQL connections (shared with vacuum and cleanup) ----------------------------------


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` for messages: never the password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured database"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def miningcore_dsn(config: Config) -> str:
    dsn = config.pool.miningcore.database_dsn
    if not dsn:
        raise ActionFailed("Miningcore's database is not configured: set miningcore.database.dsn in pool.json")
    return dsn


def connect(dsn: str, *, autocommit: bool = False, purpose: str = "maintenance") -> psycopg.Connection:
    """A connection, or ``ActionFailed`` naming the server (host:port/db) and the reason."""
    try:
        return psycopg.connect(dsn, connect_timeout=10, autocommit=autocommit,
                               application_name=f"poolwarden-{purpose}")
    except psycopg.OperationalError as exc:
        raise ActionFailed(f"PostgreSQL at {describe_dsn(dsn)} refused the connection: {first_line(exc)} "
                           "(is it running, and are the credentials right?)") from None


def server_major(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def libpq_target(dsn: str, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """(a connection string without the password, an environment carrying it in PGPASSWORD)."""
    info = conninfo_to_dict(dsn)
    password = info.pop("password", None)
    if dbname is not None:
        info["dbname"] = dbname
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **info), env


# --- client tools --------------------------------------------------------------------------------

_libc: Any = None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the agent process dies (a killed backup leaves no
    pg_dump running on its own)."""
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child_setup():
    global _libc
    if _libc is None:
        with contextlib.suppress(OSError):
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return _die_with_parent


@functools.lru_cache(maxsize=32)
def tool_major(path: str) -> int | None:
    """The major version ``<tool> --version`` reports (9 for 9.6, 15 for 15.4), None if it does not run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(m.group(1)) if m else None


def _version_of_dir(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return -1.0


def tool_candidates(name: str) -> list[str]:
    """``PATH`` first, then the versioned directories, newest first. Debian's ``pg_wrapper`` (what
    ``/usr/bin/pg_dump`` links to) picks a version by its own rules, so it goes last: the versioned
    binaries behind it are the same tools, chosen here by the server's version."""
    on_path = shutil.which(name)
    versioned = [os.path.join(d, name) for d in sorted(glob.glob(PG_LIB_GLOB), key=_version_of_dir, reverse=True)]
    versioned = [p for p in versioned if os.access(p, os.X_OK)]
    if on_path is None:
        return versioned
    if os.path.basename(os.path.realpath(on_path)) == "pg_wrapper":
        return [*versioned, on_path]
    return [on_path, *[p for p in versioned if p != on_path]]


def find_pg_tool(name: str, major: int) -> tuple[str, int]:
    """The ``pg_dump``/``pg_restore`` for a server of this major version: the same major if there is
    one, else the closest newer one (they read older servers); an older one is refused."""
    versions = [(path, tool_major(path)) for path in tool_candidates(name)]
    usable = [(path, v) for path, v in versions if v is not None]
    if not usable:
        raise ActionFailed(f"{name} was not found on PATH or in {PG_LIB_GLOB}: install the PostgreSQL client "
                           f"(apt-get install postgresql-client-{major})")
    for path, v in usable:
        if v == major:
            return path, v
    newer = [(path, v) for path, v in usable if v > major]
    if newer:
        return min(newer, key=lambda item: item[1])
    have = ", ".join(sorted({str(v) for _p, v in usable}))
    raise ActionFailed(f"the server runs PostgreSQL {major} but {name} here is version {have}, which cannot read "
                       f"it: install postgresql-client-{major}")


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no message"


# --- the backup directory -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupFile:
    path: Path
    database: str
    taken: datetime
    size: int
    manifest: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def verified(self) -> bool:
        return bool(self.manifest and self.manifest.get("verified") is True)


def backup_directory(config: Config, *, create: bool) -> Path:
    raw = config.pool.paths.backups
    if not raw:
        raise ActionFailed("no backup directory is configured: set paths.backups in pool.json")
    path = Path(raw)
    if not path.is_dir():
        if not create:
            raise ActionFailed(f"the backup directory {path} does not exist: no backup has been made yet")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ActionFailed(f"cannot create the backup directory {path}: {exc.strerror or exc}") from None
    return path


def source_dsn(config: Config, database: str) -> str:
    if database == "miningcore":
        return miningcore_dsn(config)
    if database == "panel":
        dsn = config.monitoring.maintenance.panel_database_dsn
        if not dsn:
            raise ActionFailed("the panel's database is not configured on this host: set "
                               "maintenance.panelDatabaseDsn in monitoring.json (panel backups run on the "
                               "control host's agent)")
        return dsn
    raise ActionFailed(f"unknown database {database!r}; choose {' or '.join(DATABASES)}")


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_backups(directory: Path, database: str) -> list[BackupFile]:
    """This database's backups, oldest first. Temporary files never match."""
    out = []
    for entry in directory.iterdir():
        m = BACKUP_NAME.match(entry.name)
        if not m or m.group("database") != database or not entry.is_file():
            continue
        taken = datetime.strptime(m.group("stamp"), STAMP_FORMAT).replace(tzinfo=UTC)
        out.append(BackupFile(entry, database, taken, entry.stat().st_size,
                              read_manifest(entry.with_name(entry.name + ".json"))))
    return sorted(out, key=lambda b: b.taken)


def remove_stale_files(directory: Path, database: str) -> list[str]:
    """Temporary files of a killed earlier run, and side files whose dump never got its final name."""
    removed = []
    for entry in sorted(directory.iterdir()):
        name = entry.name
        stale = name.startswith(f".{database}-") and name.endswith(TEMP_SUFFIX)
        m = SIDE_FILE.match(name)
        if m and m.group("dump").startswith(f"{database}-") and not (directory / m.group("dump")).exists():
            stale = True
        if stale and entry.is_file():
            entry.unlink()
            removed.append(name)
    return removed


@contextlib.contextmanager
def directory_lock(directory: Path, database: str) -> Iterator[None]:
    """One backup or test restore of a database at a time; the kernel frees the lock if we die."""
    path = directory / f".{database}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ActionFailed(f"another backup or test restore of the {database} database is running on this "
                               f"host (lock {path})") from None
        yield
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target under a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# --- decisions (pure, tested on their own) --------------------------------------------------------


def expected_backup_size(previous: BackupFile | None, database_size: int) -> tuple[int, str]:
    """What the new backup will probably need: the last one's size, else the database's size (an upper
    bound: a compressed dump is smaller than the tables and indexes it comes from)."""
    if previous is not None and previous.size > 0:
        return previous.size, f"the size of the previous backup {previous.name}"
    return database_size, "the database's size (no previous backup)"


def space_needed(expected: int, margin_percent: float) -> int:
    return math.ceil(expected * (1 + margin_percent / 100))


def space_shortfall(free: int, expected: int, margin_percent: float) -> int:
    """Bytes missing for a backup of ``expected`` bytes plus the margin; 0 when there is room."""
    return max(0, space_needed(expected, margin_percent) - free)


@dataclass(frozen=True)
class RetentionPlan:
    keep: dict[str, str]  # name -> why it is kept
    delete: list[BackupFile]


def plan_retention(backups: list[BackupFile], keep_daily: int, keep_weekly: int) -> RetentionPlan:
    """Keep the newest backup of each of the ``keep_daily`` newest days and ``keep_weekly`` newest ISO
    weeks (a verified one preferred within a day or week) and, always, the newest verified backup."""
    newest_first = sorted(backups, key=lambda b: b.taken, reverse=True)
    keep: dict[str, str] = {}

    def pick(group: list[BackupFile]) -> BackupFile:
        verified = [b for b in group if b.verified]
        return (verified or group)[0]

    def buckets(key) -> list[list[BackupFile]]:
        groups: dict[Any, list[BackupFile]] = {}
        for b in newest_first:
            groups.setdefault(key(b), []).append(b)
        return list(groups.values())  # dicts keep insertion order: newest bucket first

    for group in buckets(lambda b: b.taken.date())[:keep_daily]:
        chosen = pick(group)
        keep.setdefault(chosen.name, f"daily {chosen.taken:%Y-%m-%d}")
    for group in buckets(lambda b: b.taken.isocalendar()[:2])[:keep_weekly]:
        chosen = pick(group)
        year, week = chosen.taken.isocalendar()[:2]
        keep.setdefault(chosen.name, f"weekly {year}-W{week:02d}")
    newest_verified = next((b for b in newest_first if b.verified), None)
    if newest_verified is not None:
        keep[newest_verified.name] = "newest verified"
    return RetentionPlan(keep=keep, delete=[b for b in newest_first if b.name not in keep])


# --- row counts and the archive's table of contents -------------------------------------------

TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


def table_key(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def split_key(key: str) -> tuple[str, str]:
    schema, _, table = key.rpartition(".")
    return schema or "public", table


def count_rows(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every ordinary table (partitions each once; ``ONLY``: no inherited rows).
    One core only: this runs beside pg_dump on a host that also runs the pool."""
    conn.execute("SET max_parallel_workers_per_gather = 0")
    counts = {}
    for schema, table in conn.execute(TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, table))
        counts[table_key(schema, table)] = conn.execute(query).fetchone()[0]
    return counts


def verify_archive(pg_restore: str, path: Path, tables: list[str]) -> dict[str, Any]:
    """``pg_restore --list``: the archive is readable and holds the data of every counted table."""
    try:
        proc = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ActionFailed(f"pg_restore --list could not run: {exc}") from None
    if proc.returncode != 0:
        raise ActionFailed(f"pg_restore --list cannot read the new backup: {_tail(proc.stderr)}")
    entries = [line for line in proc.stdout.splitlines() if line.strip() and not line.startswith(";")]
    missing = []
    for key in tables:
        schema, table = split_key(key)
        needle = f" TABLE DATA {schema} {table} "
        if not any(needle in line + " " for line in entries):
            missing.append(key)
    if missing:
        raise ActionFailed(f"the new backup's table of contents has no data for {', '.join(missing)}")
    return {"toc_entries": len(entries), "tables_with_data": len(tables)}


# --- backup --------------------------------------------------------------------------------------


def _unique_name(directory: Path, database: str, when: datetime) -> str:
    while True:
        name = f"{database}-{when.strftime(STAMP_FORMAT)}.dump"
        if not (directory / name).exists() and not (directory / f".{name}{TEMP_SUFFIX}").exists():
            return name
        when += timedelta(seconds=1)


def run_backup(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    database = params["database"]
    keep_daily, keep_weekly = params["keep_daily"], params["keep_weekly"]
    dsn = source_dsn(ctx.config, database)
    directory = backup_directory(ctx.config, create=True)
    margin = ctx.config.monitoring.maintenance.backup_margin_percent
    started = time.monotonic()
    with directory_lock(directory, database):
        stale = remove_stale_files(directory, database)
        if stale:
            ctx.say(f"removed {len(stale)} leftover file(s) of an interrupted earlier run: {', '.join(stale)}")
        previous = list_backups(directory, database)
        with connect(dsn, purpose="backup") as conn:
            major = server_major(conn)
            db_size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            conn.commit()
            expected, basis = expected_backup_size(previous[-1] if previous else None, db_size)
            free = shutil.disk_usage(directory).free
            needed = space_needed(expected, margin)
            space = {"free_bytes": free, "expected_bytes": expected, "expected_from": basis,
                     "margin_percent": margin, "needed_bytes": needed}
            if space_shortfall(free, expected, margin) > 0:
                raise ActionFailed(
                    f"not enough free space in {directory}: {human_bytes(free)} free, {human_bytes(needed)} needed "
                    f"({basis}: {human_bytes(expected)}, plus {margin:g} % margin); nothing was written",
                    {"space": space})
            pg_dump, dump_major = find_pg_tool("pg_dump", major)
            pg_restore, _ = find_pg_tool("pg_restore", major)
            ctx.say(f"backing up {database} ({describe_dsn(dsn)}, {human_bytes(db_size)}, PostgreSQL {major}) "
                    f"with {pg_dump}; {human_bytes(free)} free, {human_bytes(needed)} needed")
            name = _unique_name(directory, database, datetime.now(UTC))
            final = directory / name
            temp = directory / f".{name}{TEMP_SUFFIX}"
            committed = False
            try:
                taken, counts = _dump(ctx, conn, dsn, pg_dump, temp)
                fsync_path(temp)
                size = temp.stat().st_size
                digest = file_sha256(temp)
                ctx.say(f"dump written: {human_bytes(size)}, sha256 {digest[:16]}…; checking it with pg_restore --list")
                check = verify_archive(pg_restore, temp, list(counts))
                manifest = {
                    "format": MANIFEST_FORMAT, "database": database, "file": name,
                    "created": taken.isoformat().replace("+00:00", "Z"), "size": size, "sha256": digest,
                    "row_counts": counts, "verified": True,
                    "verification": f"pg_restore --list: {check['toc_entries']} entries, data for every table",
                    "server_major": major, "pg_dump_major": dump_major, "source": describe_dsn(dsn),
                    "host": ctx.host, "job": ctx.job_id, "requested_by": ctx.requested_by,
                }
                write_atomic(final.with_name(name + ".sha256"), f"{digest}  {name}\n".encode())
                write_atomic(final.with_name(name + ".json"), json.dumps(manifest, indent=2).encode())
                os.replace(temp, final)
                committed = True
                fsync_path(directory)
            finally:
                if not committed:
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
        duration = time.monotonic() - started
        rows = sum(counts.values())
        ctx.say(f"backup {name} verified: {len(counts)} tables, {rows:,} rows, {human_bytes(size)} "
                f"in {duration:.1f} s")
        retention = _apply_retention(ctx, directory, database, keep_daily, keep_weekly)
    summary = (f"{name}: {human_bytes(size)}, {len(counts)} tables, {rows:,} rows, verified in {duration:.1f} s"
               + (f"; retention deleted {len(retention['deleted'])}" if retention["deleted"] else ""))
    return {"summary": summary, "file": str(final), "size": size, "sha256": digest, "row_counts": counts,
            "verified": True, "duration_seconds": round(duration, 3), "space": space, "stale_removed": stale,
            "retention": retention}


def _dump(ctx: ActionContext, conn: psycopg.Connection, dsn: str, pg_dump: str,
          temp: Path) -> tuple[datetime, dict[str, int]]:
    """pg_dump into ``temp`` from an exported snapshot while the rows are counted in the same one."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    snapshot, taken = conn.execute("SELECT pg_export_snapshot(), now()").fetchone()
    target, env = libpq_target(dsn)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the dump is private from byte one
    argv = [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
            f"--file={temp}", f"--dbname={target}"]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                preexec_fn=_child_setup())
        try:
            counts = count_rows(conn)
            ctx.say(f"counted {sum(counts.values()):,} rows in {len(counts)} tables (same snapshot as the dump)")
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        if code != 0:
            stderr.seek(0)
            message = _tail(stderr.read().decode(errors="replace"))
            raise ActionFailed(f"pg_dump failed (exit code {code}): {message}")
    return taken.astimezone(UTC), counts


def _apply_retention(ctx: ActionContext, directory: Path, database: str, keep_daily: int,
                     keep_weekly: int) -> dict[str, Any]:
    plan = plan_retention(list_backups(directory, database), keep_daily, keep_weekly)
    deleted, freed, errors = [], 0, []
    for backup in plan.delete:
        try:
            # the dump first: a run killed in between leaves side files, which the next run removes
            for path in (backup.path, backup.path.with_name(backup.name + ".sha256"),
                         backup.path.with_name(backup.name + ".json")):
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    freed += size
            deleted.append(backup.name)
        except OSError as exc:
            errors.append(f"{backup.name}: {exc.strerror or exc}")
    if deleted:
        ctx.say(f"retention (keep {keep_daily} daily, {keep_weekly} weekly, always the newest verified): deleted "
                f"{', '.join(deleted)}, freed {human_bytes(freed)}")
    else:
        ctx.say(f"retention (keep {keep_daily} daily, {keep_weekly} weekly): nothing to delete")
    for error in errors:
        ctx.say(f"retention could not delete {error}")
    return {"kept": plan.keep, "deleted": deleted, "freed_bytes": freed, "errors": errors}


# --- test restore --------------------------------------------------------------------------------


def run_test_restore(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    database = params["database"]
    dsn = source_dsn(ctx.config, database)
    directory = backup_directory(ctx.config, create=False)
    scratch_server = ctx.config.monitoring.maintenance.scratch_database_dsn or dsn
    started = time.monotonic()
    with directory_lock(directory, database):
        verified = [b for b in list_backups(directory, database) if b.verified]
        if not verified:
            raise ActionFailed(f"no verified backup of the {database} database in {directory}: run a backup first")
        backup = verified[-1]
        expected = backup.manifest.get("row_counts") if backup.manifest else None
        if not isinstance(expected, dict) or not expected:
            raise ActionFailed(f"the manifest of {backup.name} has no row counts to compare with")
        ctx.say(f"checking {backup.name} ({human_bytes(backup.size)}) against its sha256")
        digest = file_sha256(backup.path)
        if digest != backup.manifest.get("sha256"):
            raise ActionFailed(f"{backup.name} does not match the checksum in its manifest: the file is damaged",
                               {"file": str(backup.path), "sha256": digest,
                                "expected_sha256": backup.manifest.get("sha256")})
        with connect(scratch_server, autocommit=True, purpose="test-restore") as admin:
            major = server_major(admin)
            pg_restore, _ = find_pg_tool("pg_restore", major)
            dropped_stale = _drop_stale_scratch(ctx, admin, major)
            scratch = f"{SCRATCH_PREFIX}{database}_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"
            try:
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(scratch)))
            except psycopg.errors.InsufficientPrivilege:
                raise ActionFailed(f"the role of {describe_dsn(scratch_server)} may not create databases: grant it "
                                   "CREATEDB or set maintenance.scratchDatabaseDsn to a server where it may") from None
            except psycopg.Error as exc:
                raise ActionFailed(f"cannot create the scratch database on {describe_dsn(scratch_server)}: "
                                   f"{first_line(exc)}") from None
            ctx.say(f"restoring into scratch database {scratch} on {describe_dsn(scratch_server)}")
            try:
                restored = _restore_and_count(pg_restore, scratch_server, scratch, backup)
            finally:
                try:
                    _drop_database(admin, scratch, major)
                    ctx.say(f"dropped scratch database {scratch}")
                except psycopg.Error as exc:
                    ctx.say(f"could not drop the scratch database {scratch}: {first_line(exc)} (a later test "
                            f"restore drops it once it is {STALE_SCRATCH_AGE.total_seconds() / 3600:.0f} h old)")
        _record_test_restore(backup, ok=_counts_match(expected, restored), when=datetime.now(UTC))
    comparison = {table: {"backup": expected.get(table), "restored": restored.get(table)}
                  for table in sorted(set(expected) | set(restored))}
    differ = {t: c for t, c in comparison.items() if c["backup"] != c["restored"]}
    duration = time.monotonic() - started
    details = {"file": str(backup.path), "backup_created": backup.manifest.get("created"),
               "scratch_database": scratch, "comparison": comparison, "duration_seconds": round(duration, 3),
               "stale_scratch_dropped": dropped_stale}
    if differ:
        shown = ", ".join(f"{t} {c['backup']} in the backup vs {c['restored']} restored" for t, c in differ.items())
        raise ActionFailed(f"test restore of {backup.name}: row counts differ: {shown}", details)
    rows = sum(v for v in restored.values())
    ctx.say(f"all {len(comparison)} tables match the manifest ({rows:,} rows)")
    return {"summary": f"{backup.name} restored into a scratch database: {len(comparison)} tables, {rows:,} rows, "
                       f"all counts match ({duration:.1f} s)", **details}


def _counts_match(expected: dict[str, Any], restored: dict[str, int]) -> bool:
    return all(expected.get(t) == restored.get(t) for t in set(expected) | set(restored))


def _restore_and_count(pg_restore: str, server_dsn: str, scratch: str, backup: BackupFile) -> dict[str, int]:
    target, env = libpq_target(server_dsn, dbname=scratch)
    argv = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--jobs=2", f"--dbname={target}",
            str(backup.path)]
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              preexec_fn=_child_setup())
    except OSError as exc:
        raise ActionFailed(f"pg_restore could not run: {exc}") from None
    if proc.returncode != 0:
        raise ActionFailed(f"restoring {backup.name} failed (pg_restore exit code {proc.returncode}): "
                           f"{_tail(proc.stderr)}")
    with connect(make_conninfo(server_dsn, dbname=scratch), autocommit=True, purpose="test-restore") as conn:
        return count_rows(conn)


def _drop_database(admin: psycopg.Connection, name: str, major: int) -> None:
    force = sql.SQL(" WITH (FORCE)") if major >= 13 else sql.SQL("")
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)) + force)


def _drop_stale_scratch(ctx: ActionContext, admin: psycopg.Connection, major: int) -> list[str]:
    """Scratch databases a killed test restore left behind (older than the longest restore may take)."""
    dropped = []
    pattern = re.compile(rf"^{SCRATCH_PREFIX}(?:{'|'.join(DATABASES)})_(\d{{14}})_[0-9a-f]{{6}}$")
    names = [r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pw\\_restore\\_%'")]
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        made = datetime.strptime(m.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if datetime.now(UTC) - made > STALE_SCRATCH_AGE:
            with contextlib.suppress(psycopg.Error):
                _drop_database(admin, name, major)
                dropped.append(name)
    if dropped:
        ctx.say(f"dropped {len(dropped)} scratch database(s) an interrupted test restore left: {', '.join(dropped)}")
    return dropped


def _record_test_restore(backup: BackupFile, *, ok: bool, when: datetime) -> None:
    """Note the result in the backup's manifest (best effort: the job's record is the authority)."""
    manifest = dict(backup.manifest or {})
    manifest["last_test_restore"] = {"at": when.isoformat().replace("+00:00", "Z"), "ok": ok}
    with contextlib.suppress(OSError):
        write_atomic(backup.path.with_name(backup.name + ".json"), json.dumps(manifest, indent=2).encode())
