"""The backup and test_restore actions against a real PostgreSQL holding poolsim's Miningcore data, with
the real pg_dump and pg_restore."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest

from agent.actions import ActionContext, ActionFailed
from agent.actions.backup import (
    BACKUP_NAME,
    BackupFile,
    expected_backup_size,
    find_pg_tool,
    list_backups,
    plan_retention,
    run_backup,
    run_test_restore,
    space_shortfall,
)
from agent.config import (
    AgentSettings,
    Config,
    DockerConfig,
    ErgoNodeConfig,
    IntervalsConfig,
    MaintenanceConfig,
    MiningcoreConfig,
    MonitoringConfig,
    MountsConfig,
    PathsConfig,
    PoolConfig,
    ThresholdsConfig,
)
from agent.contract import ParamError, validate_params

ROOT = Path(__file__).resolve().parents[2]


# -- helpers shared with test_actions_vacuum and test_actions_cleanup ----------------------------


def action_context(dsn: str | None, backups: str | Path | None = None, *, config_file: str | None = None,
                   **maintenance) -> ActionContext:
    """An ActionContext whose agent config points at ``dsn`` (Miningcore's database) and ``backups``."""
    pool = PoolConfig(
        host="pool-1",
        miningcore=MiningcoreConfig(api_url="http://127.0.0.1:4000", metrics_url=None, pool_ids=(), timeout_seconds=5,
                                    database_dsn=dsn, log_dir=None, config_file=config_file),
        ergo_node=ErgoNodeConfig(url="http://127.0.0.1:9053", api_key=None, timeout_seconds=5, data_dir=None),
        paths=PathsConfig(backups=str(backups) if backups else None),
        docker=DockerConfig(enabled=False))
    monitoring = MonitoringConfig(
        agent=AgentSettings(redis_url="redis://127.0.0.1:6379/0", spool_dir="/var/lib/poolwarden-agent/spool"),
        intervals=IntervalsConfig(), mounts=MountsConfig(), thresholds=ThresholdsConfig(),
        maintenance=MaintenanceConfig(**maintenance))
    return ActionContext(host="pool-1", config=Config(pool=pool, monitoring=monitoring, config_dir="/etc/poolwarden"))


def seed_miningcore(dsn: str, history_days: float = 0.3) -> None:
    """Miningcore's schema with a few hours of poolsim's history (shares, blocks, stats)."""
    from poolsim import PoolSim

    PoolSim(seed=7, dsn=dsn, paused=True, history_days=history_days).setup().stop()


def row_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def table_digest(dsn: str, table: str) -> str:
    """md5 over a table's rows in a fixed order: equal digests, equal contents."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {table} t").fetchone()[0]


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


# -- backup and restore ----------------------------------------------------------------------------


def test_backup_restores_to_the_same_rows(fresh_db, pg, tmp_path):
    seed_miningcore(fresh_db)
    backups = tmp_path / "backups"
    ctx = action_context(fresh_db, backups)
    result = run_backup(ctx, validate_params("backup", {}))

    dump = Path(result["file"])
    assert BACKUP_NAME.match(dump.name) and dump.parent == backups
    assert files(backups) == {dump.name, dump.name + ".sha256", dump.name + ".json", ".miningcore.lock"}
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    check = subprocess.run(["sha256sum", "-c", dump.name + ".sha256"], cwd=backups, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((backups / (dump.name + ".json")).read_text())
    source_counts = row_counts(fresh_db)
    assert manifest["row_counts"] == source_counts and manifest["verified"] is True
    assert manifest["size"] == dump.stat().st_size == result["size"]
    assert source_counts["shares"] > 1000 and source_counts["minerstats"] > 100
    assert result["summary"].startswith(dump.name) and "verified" in result["summary"]
    assert any("pg_restore --list" in line for line in ctx.lines)

    # restore it ourselves, independently of the action: same rows, same contents
    target = pg.create_database(f"restored_{os.getpid()}")
    try:
        restore = subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={target}", str(dump)],
                                 capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
        assert row_counts(target) == source_counts
        for table in ("shares", "blocks", "minerstats"):
            assert table_digest(target, table) == table_digest(fresh_db, table), table
    finally:
        pg.drop_database(f"restored_{os.getpid()}")

    # and the action's own test restore agrees, leaving no scratch database behind
    restored = run_test_restore(ctx, validate_params("test_restore", {}))
    assert "all counts match" in restored["summary"]
    assert restored["comparison"]["shares"] == {"backup": source_counts["shares"], "restored": source_counts["shares"]}
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pw_restore%'").fetchone()[0] == 0
    assert json.loads((backups / (dump.name + ".json")).read_text())["last_test_restore"]["ok"] is True


def test_row_counts_match_the_dump_while_miningcore_writes(fresh_db, tmp_path):
    """Shares keep arriving during the backup: the manifest's counts are those of the dump's snapshot."""
    seed_miningcore(fresh_db)
    stop = threading.Event()
    written = []

    def writer():
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO shares SELECT * FROM shares LIMIT 50")
                conn.execute("INSERT INTO poolstats (poolid, created) VALUES ('ergo1', now())")
                written.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        ctx = action_context(fresh_db, tmp_path)
        at_start = len(written)
        backup = run_backup(ctx, validate_params("backup", {}))
        at_end = len(written)
    finally:
        stop.set()
        thread.join()
    assert at_end > at_start  # the writer really wrote while the backup ran
    restored = run_test_restore(ctx, validate_params("test_restore", {}))
    assert restored["comparison"]["shares"]["restored"] == backup["row_counts"]["shares"]
    assert backup["row_counts"]["shares"] < row_counts(fresh_db)["shares"]


def test_test_restore_fails_on_a_damaged_or_mismatching_backup(fresh_db, pg, tmp_path):
    seed_miningcore(fresh_db)
    ctx = action_context(fresh_db, tmp_path)
    dump = Path(run_backup(ctx, validate_params("backup", {}))["file"])
    manifest_path = dump.with_name(dump.name + ".json")
    manifest = json.loads(manifest_path.read_text())

    manifest["row_counts"]["shares"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ActionFailed) as exc:
        run_test_restore(ctx, validate_params("test_restore", {}))
    assert "row counts differ" in exc.value.message and "shares" in exc.value.message
    comparison = exc.value.details["comparison"]["shares"]
    assert comparison["backup"] == comparison["restored"] + 1

    with open(dump, "r+b") as f:  # flip a byte in the middle of the archive
        f.seek(dump.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ActionFailed, match="does not match the checksum"):
        run_test_restore(ctx, validate_params("test_restore", {}))
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pw_restore%'").fetchone()[0] == 0


def test_test_restore_without_a_backup_says_so(fresh_db, tmp_path):
    ctx = action_context(fresh_db, tmp_path)
    with pytest.raises(ActionFailed, match="no verified backup of the miningcore database"):
        run_test_restore(ctx, validate_params("test_restore", {}))


# -- killed in the middle ----------------------------------------------------------------------------

CHILD = """
import sys
from agent.actions.backup import run_backup
from agent.contract import validate_params
from tests.agent.test_actions_backup import action_context
run_backup(action_context(sys.argv[1], sys.argv[2]), validate_params("backup", {}))
"""


def _pg_dump_processes(directory: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(directory) in arg for arg in cmdline) and any("pg_dump" in arg for arg in cmdline[:2]):
            found.append(proc)
    return found


@pytest.mark.slow
def test_backup_killed_in_the_middle_leaves_nothing_that_counts(fresh_db, tmp_path):
    seed_miningcore(fresh_db)
    backups = tmp_path / "backups"
    # an exclusive lock on a table holds pg_dump in the middle of its work, deterministically
    blocker = psycopg.connect(fresh_db)
    blocker.execute("LOCK TABLE blocks IN ACCESS EXCLUSIVE MODE")
    child = subprocess.Popen([sys.executable, "-c", CHILD, fresh_db, str(backups)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (backups.is_dir() and any(n.endswith(".partial") for n in files(backups))
                   and _pg_dump_processes(backups)):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "pg_dump did not start"
            time.sleep(0.05)
        with psycopg.connect(fresh_db) as conn:  # pg_dump really is mid-way: waiting for the table lock
            while not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                                   "AND wait_event_type = 'Lock'").fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # as RQ does with a work horse past its timeout
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    deadline = time.monotonic() + 10
    while _pg_dump_processes(backups):  # pg_dump dies with its parent
        assert time.monotonic() < deadline, "pg_dump outlived the killed action"
        time.sleep(0.05)
    left = files(backups)
    partial = [n for n in left if n.endswith(".partial")]
    assert partial and list_backups(backups, "miningcore") == []
    assert not any(BACKUP_NAME.match(n) or n.endswith((".json", ".sha256")) for n in left)
    blocker.rollback()
    blocker.close()

    result = run_backup(action_context(fresh_db, backups), validate_params("backup", {}))
    assert result["stale_removed"] == partial
    name = Path(result["file"]).name
    assert files(backups) == {name, name + ".sha256", name + ".json", ".miningcore.lock"}
    assert [b.name for b in list_backups(backups, "miningcore")] == [name]


# -- free space -------------------------------------------------------------------------------------


def test_space_decision_with_real_disk_numbers(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert space_shortfall(free, free // 2, 20) == 0
    assert space_shortfall(free, free, 0) == 0
    assert space_shortfall(free, free, 20) == pytest.approx(free * 0.2, abs=1)
    assert space_shortfall(free, free // 2, 150) == pytest.approx(free * 0.25, abs=2)
    previous = BackupFile(tmp_path / "miningcore-20260101T000000Z.dump", "miningcore",
                          datetime(2026, 1, 1, tzinfo=UTC), 123_456, None)
    assert expected_backup_size(previous, 10**9)[0] == 123_456
    assert expected_backup_size(None, 10**9) == (10**9, "the database's size (no previous backup)")


def test_refused_up_front_when_the_previous_backup_would_not_fit(fresh_db, tmp_path):
    """The previous backup (a sparse file) is larger than the free space: nothing is written."""
    seed_miningcore(fresh_db)
    previous = tmp_path / "miningcore-20260101T000000Z.dump"
    with open(previous, "wb") as f:
        f.truncate(shutil.disk_usage(tmp_path).free + 10**9)
    before = files(tmp_path)
    with pytest.raises(ActionFailed) as exc:
        run_backup(action_context(fresh_db, tmp_path), validate_params("backup", {}))
    assert "not enough free space" in exc.value.message and "nothing was written" in exc.value.message
    assert exc.value.details["space"]["expected_from"] == f"the size of the previous backup {previous.name}"
    assert files(tmp_path) - {".miningcore.lock"} == before


SHORT_SPACE_CHILD = """
import json, os, subprocess, sys
directory = sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", directory], check=True)
from agent.actions import ActionFailed
from agent.actions.backup import run_backup
from agent.contract import validate_params
from tests.agent.test_actions_backup import action_context
try:
    run_backup(action_context(sys.argv[1], directory), validate_params("backup", {}))
    print(json.dumps({"ok": True}))
except ActionFailed as exc:
    print(json.dumps({"ok": False, "message": exc.message, "details": exc.details, "files": os.listdir(directory)}))
"""


@pytest.mark.slow
def test_refused_on_a_nearly_full_filesystem(fresh_db, tmp_path):
    """A 1 MB tmpfs (in a private mount namespace) cannot hold a backup of a 14 MB database."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private tmpfs")
    seed_miningcore(fresh_db)
    directory = tmp_path / "small"
    directory.mkdir()
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SHORT_SPACE_CHILD,
                           fresh_db, str(directory)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] is False and "not enough free space" in out["message"]
    assert out["details"]["space"]["expected_from"] == "the database's size (no previous backup)"
    assert out["details"]["space"]["free_bytes"] <= 1024 * 1024
    assert set(out["files"]) <= {".miningcore.lock"}


# -- retention --------------------------------------------------------------------------------------


def _backup(stamp: str, verified: bool) -> BackupFile:
    taken = datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    name = f"miningcore-{taken:%Y%m%dT%H%M%SZ}.dump"
    return BackupFile(Path("/b") / name, "miningcore", taken, 100, {"verified": True} if verified else None)


def test_retention_always_keeps_the_newest_verified_backup():
    v = _backup("2026-11-20 03:00", verified=True)
    u1 = _backup("2026-11-22 03:00", verified=False)
    u2 = _backup("2026-11-23 03:00", verified=False)
    plan = plan_retention([v, u1, u2], keep_daily=1, keep_weekly=0)
    assert plan.keep == {u2.name: "daily 2026-11-23", v.name: "newest verified"}
    assert [b.name for b in plan.delete] == [u1.name]


def test_retention_one_per_day_and_per_iso_week():
    # Mon 2026-11-09 .. Tue 2026-11-24: ISO weeks 46, 47, 48
    days = [_backup(f"2026-11-{d:02d} 03:00", verified=True) for d in range(9, 25)]
    extra_today = _backup("2026-11-24 15:00", verified=False)  # newer, but unverified: the verified one stays
    plan = plan_retention([*days, extra_today], keep_daily=3, keep_weekly=3)
    kept = {name[11:19]: why for name, why in plan.keep.items()}
    assert kept == {"20261124": "newest verified", "20261123": "daily 2026-11-23", "20261122": "daily 2026-11-22",
                    "20261115": "weekly 2026-W46"}
    assert extra_today in plan.delete and len(plan.delete) == 17 - 4


def test_retention_in_the_backup_directory(fresh_db, tmp_path):
    seed_miningcore(fresh_db)
    ctx = action_context(fresh_db, tmp_path)
    first = Path(run_backup(ctx, validate_params("backup", {"keep_daily": 30, "keep_weekly": 10}))["file"])
    now = datetime.now(UTC)
    old_names = []
    for days in (1, 2, 3, 8, 9, 15, 40):
        taken = now - timedelta(days=days)
        name = f"miningcore-{taken:%Y%m%dT%H%M%SZ}.dump"
        shutil.copy(first, tmp_path / name)
        manifest = json.loads(first.with_name(first.name + ".json").read_text()) | {"file": name}
        (tmp_path / (name + ".json")).write_text(json.dumps(manifest))
        (tmp_path / (name + ".sha256")).write_text(f"{hashlib.sha256(first.read_bytes()).hexdigest()}  {name}\n")
        old_names.append((taken, name))
    (tmp_path / "panel-20200101T000000Z.dump").write_text("another database's backup")
    (tmp_path / "notes.txt").write_text("the operator's own file")
    (tmp_path / ".miningcore-20200101T000000Z.dump.partial").write_text("left by a killed run")

    result = run_backup(ctx, validate_params("backup", {"keep_daily": 2, "keep_weekly": 2}))
    newest = Path(result["file"]).name
    everything = [newest, first.name] + [n for _t, n in old_names]

    def taken(name: str) -> datetime:
        return datetime.strptime(BACKUP_NAME.match(name).group("stamp"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    weeks = sorted({taken(n).isocalendar()[:2] for n in everything}, reverse=True)
    newest_of_second_week = max(n for n in everything if taken(n).isocalendar()[:2] == weeks[1])
    # today (the new one), yesterday, and the newest of the second-newest ISO week
    expected = {newest, old_names[0][1], newest_of_second_week}
    assert {b.name for b in list_backups(tmp_path, "miningcore")} == expected
    deleted = set(result["retention"]["deleted"])
    assert deleted == ({first.name} | {n for _t, n in old_names}) - expected
    for name in deleted:
        assert not (tmp_path / (name + ".json")).exists() and not (tmp_path / (name + ".sha256")).exists()
    assert {"panel-20200101T000000Z.dump", "notes.txt"} <= files(tmp_path)
    assert ".miningcore-20200101T000000Z.dump.partial" in result["stale_removed"]


# -- configuration and parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(("action", "params", "message"), [
    ("backup", {"database": "postgres"}, "database: must be one of miningcore, panel"),
    ("backup", {"keep_daily": 0}, "keep_daily: must be at least 1"),
    ("backup", {"keep_weekly": "4"}, "keep_weekly: must be a whole number"),
    ("backup", {"path": "/etc"}, "path: is not a parameter of backup"),
    ("test_restore", {"database": "panel; DROP"}, "database: must be one of miningcore, panel"),
])
def test_bad_parameters_are_refused_with_a_clear_message(action, params, message):
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        validate_params(action, params)


def test_missing_configuration_is_named(fresh_db, tmp_path):
    with pytest.raises(ActionFailed, match="maintenance.panelDatabaseDsn"):
        run_backup(action_context(fresh_db, tmp_path), validate_params("backup", {"database": "panel"}))
    with pytest.raises(ActionFailed, match="miningcore.database.dsn"):
        run_backup(action_context(None, tmp_path), validate_params("backup", {}))
    with pytest.raises(ActionFailed, match="paths.backups"):
        run_backup(action_context(fresh_db, None), validate_params("backup", {}))


def test_unreachable_database_is_named_without_its_password(tmp_path):
    from devtools.services import free_port

    port = free_port()
    with pytest.raises(ActionFailed) as exc:
        run_backup(action_context(f"postgresql://mc:s3cret@127.0.0.1:{port}/miningcore", tmp_path),
                   validate_params("backup", {}))
    assert f"127.0.0.1:{port}/miningcore" in exc.value.message and "s3cret" not in exc.value.message
    assert list_backups(tmp_path, "miningcore") == []


def test_the_client_tools_match_the_server_version():
    path, major = find_pg_tool("pg_dump", 15)
    assert major == 15 and os.access(path, os.X_OK)
    assert find_pg_tool("pg_restore", 12)[1] == 15  # a newer client reads an older server
    with pytest.raises(ActionFailed, match="install postgresql-client-99"):
        find_pg_tool("pg_dump", 99)
