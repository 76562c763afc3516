"""rotate_logs with the real logrotate: a big Miningcore log rotated with copytruncate while a process
keeps it open and writing, the bytes freed measured; refusals and logrotate's own refusals."""

from __future__ import annotations

import dataclasses
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.actions import ActionContext, ActionFailed
from agent.actions.logs import render_config, rotation_interval, run_rotate_logs
from agent.config import load_config
from tests.agent.conftest import write_config

LINE = "[2025-06-09 22:47:13.9023] [I] [ergo1] Share accepted: D=0.01, miner 9fE5...abc, worker rig{:06d}\n"


def make_ctx(tmp_path: Path, log_dirs: list[str], mc_log_dir: str | None = None, **maintenance) -> ActionContext:
    pool = {"host": "pool-test",
            "miningcore": {"apiUrl": "http://127.0.0.1:1", **({"logDir": mc_log_dir} if mc_log_dir else {})},
            "ergoNode": {"url": "http://127.0.0.1:1"}, "paths": {"logs": log_dirs}}
    monitoring = {"agent": {"redisUrl": "redis://127.0.0.1:1/0", "spoolDir": str(tmp_path / "spool")},
                  "maintenance": {"workDir": str(tmp_path / "work"), "logMaxSizeMb": 1, "logMaxAgeDays": 1,
                                  "logKeep": 3, **maintenance}}
    config = load_config(write_config(tmp_path / "etc", pool, monitoring), env={})
    return ActionContext(host="pool-test", config=config)


def write_log(path: Path, lines: int) -> int:
    with open(path, "w") as f:
        for i in range(lines):
            f.write(LINE.format(i))
    return path.stat().st_size


@pytest.fixture
def writer():
    """Start a process that keeps a log file open (O_APPEND, like NLog and nginx) and writes to it."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        code = ("import sys, time\n"
                "f = open(sys.argv[1], 'a', buffering=1)\n"
                "i = 0\n"
                "while True:\n"
                "    f.write(f'after-start line {i}\\n'); i += 1; time.sleep(0.01)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_big_log_is_rotated_with_copytruncate_while_it_is_written(tmp_path, writer):
    logs = tmp_path / "mc-logs"
    logs.mkdir()
    big, small, empty = logs / "miningcore.log", logs / "api.log", logs / "ergo1.log"
    size = write_log(big, 60_000)  # ~6 MB, over the 1 MB limit
    write_log(small, 50)
    empty.touch()
    (logs / "notes.txt").write_text("not a log\n")
    proc = writer(big)
    time.sleep(0.3)
    inode = big.stat().st_ino
    ctx = make_ctx(tmp_path, [str(logs)], mc_log_dir=str(logs))  # the same directory twice: once in the config

    result = run_rotate_logs(ctx, {"force": False})

    assert [r["file"] for r in result["rotated"]] == [str(big)]
    assert result["summary"].startswith("rotated 1 log file, freed ")
    rotated = result["rotated"][0]
    assert rotated["archive"] == f"{big}.1.gz" and rotated["bytes_before"] >= size
    # the archive holds the old lines, compressed; the live file is the same inode, nearly empty
    with gzip.open(f"{big}.1.gz", "rt") as f:
        archived = f.read()
    assert archived.startswith(LINE.format(0)) and LINE.format(59_999) in archived
    assert rotated["archive_bytes"] < size / 5
    assert big.stat().st_ino == inode
    assert result["bytes_freed"] > size * 0.7
    assert result["bytes_on_disk_before"] - result["bytes_on_disk_after"] == result["bytes_freed"]
    # the writer kept its file open and goes on writing into it
    time.sleep(0.3)
    assert proc.poll() is None
    live = big.read_text()
    assert live.startswith("after-start line") and LINE.format(0) not in live
    assert big.stat().st_size < 1024 * 1024
    assert not Path(f"{small}.1.gz").exists() and not Path(f"{empty}.1.gz").exists()
    assert not (logs / "notes.txt.1.gz").exists()
    conf = Path(result["config_file"]).read_text()
    assert conf.count('"/') == 1  # the directory once, although configured twice
    assert "copytruncate" in conf and "maxsize 1M" in conf and "rotate 3" in conf
    assert any("rotated" in line and "miningcore.log" in line for line in ctx.lines)

    again = run_rotate_logs(ctx, {"force": False})
    assert again["rotated"] == [] and again["summary"].startswith("nothing needed rotating")

    forced = run_rotate_logs(ctx, {"force": True})
    assert {Path(r["file"]).name for r in forced["rotated"]} == {"miningcore.log", "api.log"}  # never the empty one
    assert Path(f"{big}.2.gz").exists() and Path(f"{small}.1.gz").exists()


def test_only_log_keep_rotations_are_kept(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "miningcore.log"
    ctx = make_ctx(tmp_path, [str(logs)], logKeep=2)
    removed = []
    for _ in range(4):
        write_log(log, 100)
        result = run_rotate_logs(ctx, {"force": True})
        removed += result["removed"]
    assert sorted(p.name for p in logs.iterdir()) == ["miningcore.log", "miningcore.log.1.gz", "miningcore.log.2.gz"]
    assert removed  # logrotate removed the ones beyond logKeep and said so


def test_world_writable_directory_and_loose_umask_are_handled(tmp_path):
    logs = tmp_path / "shared-logs"
    logs.mkdir()
    os.chmod(logs, 0o777)  # noqa: S103 - logrotate refuses such a directory without an "su" directive
    write_log(logs / "miningcore.log", 20_000)
    ctx = make_ctx(tmp_path, [str(logs)])
    work = Path(ctx.work_dir) / "logrotate"
    work.mkdir(parents=True)
    (work / "poolwarden.conf").write_text("# left group-writable by someone\n")
    os.chmod(work / "poolwarden.conf", 0o666)  # noqa: S103 - the state being repaired
    old_umask = os.umask(0)
    try:
        result = run_rotate_logs(ctx, {"force": False})
    finally:
        os.umask(old_umask)
    assert [Path(r["file"]).name for r in result["rotated"]] == ["miningcore.log"]
    assert (work / "poolwarden.conf").stat().st_mode & 0o777 == 0o600
    assert "    su root root" in (work / "poolwarden.conf").read_text()


@pytest.mark.parametrize("directory", ["/var/log/mining*", "/srv/logs/[ab]", "/srv/lo\"gs"])
def test_glob_and_quote_characters_are_refused(tmp_path, directory):
    ctx = make_ctx(tmp_path, [directory])
    with pytest.raises(ActionFailed, match="contains glob or quote characters: refused"):
        run_rotate_logs(ctx, {"force": False})
    assert not (Path(ctx.work_dir) / "logrotate").exists()


def test_relative_directory_is_refused(tmp_path):
    ctx = make_ctx(tmp_path, [str(tmp_path)])
    paths = dataclasses.replace(ctx.config.pool.paths, logs=("logs",))
    ctx.config = dataclasses.replace(ctx.config, pool=dataclasses.replace(ctx.config.pool, paths=paths))
    with pytest.raises(ActionFailed, match="'logs' is not an absolute path"):
        run_rotate_logs(ctx, {"force": False})


def test_missing_directories(tmp_path):
    present = tmp_path / "present"
    present.mkdir()
    ctx = make_ctx(tmp_path, [str(tmp_path / "gone"), str(present)])
    result = run_rotate_logs(ctx, {"force": False})
    assert result["missing_directories"] == [str(tmp_path / "gone")]
    assert result["summary"] == "nothing needed rotating (0 log files checked)"
    ctx = make_ctx(tmp_path, [str(tmp_path / "gone")])
    with pytest.raises(ActionFailed, match="none of the log directories exists"):
        run_rotate_logs(ctx, {"force": False})


def test_logrotate_failure_and_absence_are_clear(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_log(logs / "miningcore.log", 10)
    ctx = make_ctx(tmp_path, [str(logs)])
    (Path(ctx.work_dir) / "logrotate" / "state").mkdir(parents=True)  # logrotate cannot open its state file
    with pytest.raises(ActionFailed, match=r"logrotate failed \(exit status \d+\): error opening state file") as info:
        run_rotate_logs(ctx, {"force": True})
    assert info.value.details["rotated"] == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ActionFailed, match="logrotate is not installed"):
        run_rotate_logs(ctx, {"force": True})


def test_configuration_follows_the_maintenance_settings(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    ctx = make_ctx(tmp_path, [str(logs)], logMaxSizeMb=250, logMaxAgeDays=7, logKeep=8)
    text = render_config([str(logs)], ctx.config.monitoring.maintenance)
    block = text[text.index('"'):]
    assert block.splitlines() == [f'"{logs}/*.log" {{', "    weekly", "    maxsize 250M", "    rotate 8",
                                  "    maxage 56", "    compress", "    nodelaycompress", "    nodateext",
                                  "    missingok", "    notifempty", "    copytruncate", "    nomail", "}"]
    assert [rotation_interval(d) for d in (1, 6, 7, 29, 30, 364, 365)] == [
        "daily", "daily", "weekly", "weekly", "monthly", "monthly", "yearly"]
