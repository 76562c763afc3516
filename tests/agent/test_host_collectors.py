"""Host collectors against the real host; directory sizing and component sizes against real
directory trees and a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from agent.collectors import (
    BackgroundCollector,
    ComponentSizeCollector,
    CpuCollector,
    DiskCollector,
    LoadCollector,
    MemoryCollector,
    run_collector,
)
from agent.collectors.components import directory_size
from agent.config import DEFAULT_EXCLUDE_FS_TYPES
from agent.contract import METRICS


def names(samples):
    return {s.name for s in samples}


def test_declared_metrics_are_in_the_contract():
    for cls in (DiskCollector, CpuCollector, MemoryCollector, LoadCollector, ComponentSizeCollector):
        assert set(cls.METRICS) <= set(METRICS), cls


def test_disk_reports_each_real_filesystem_once():
    result = run_collector(DiskCollector(psutil, exclude_fs_types=DEFAULT_EXCLUDE_FS_TYPES))
    assert result.ok
    assert names(result.samples) == {"poolwarden_disk_total_bytes", "poolwarden_disk_used_bytes",
                                     "poolwarden_disk_free_bytes", "poolwarden_disk_used_percent"}
    mounts = {s.labels["mount"] for s in result.samples}
    assert "/" in mounts or any(os.path.ismount(m) for m in mounts)
    devices = [s.labels["device"] for s in result.samples if s.name == "poolwarden_disk_total_bytes"]
    assert len(devices) == len(set(devices))  # deduplicated by device
    for s in result.samples:
        assert set(s.labels) == {"mount", "device", "fstype"}
        assert s.labels["fstype"] not in DEFAULT_EXCLUDE_FS_TYPES
        assert s.value >= 0
    root = {s.name: s.value for s in result.samples if s.labels["mount"] == "/"}
    if root:
        usage = psutil.disk_usage("/")
        assert root["poolwarden_disk_total_bytes"] == usage.total
        assert root["poolwarden_disk_used_bytes"] <= usage.total
        assert abs(root["poolwarden_disk_used_percent"] - usage.used / (usage.used + usage.free) * 100) < 0.01


def test_disk_include_lists_only_those_mounts():
    result = run_collector(DiskCollector(psutil, include=["/"]))
    assert {s.labels["mount"] for s in result.samples} == {"/"}
    assert len(result.samples) == 4


def test_cpu_memory_load_emit_exactly_their_metrics():
    cpu = CpuCollector(psutil)
    time.sleep(0.05)
    r = run_collector(cpu)
    assert r.ok and names(r.samples) == {"poolwarden_cpu_usage_percent", "poolwarden_cpu_count",
                                         "poolwarden_cpu_core_usage_percent", "poolwarden_cpu_iowait_percent"}
    values = {s.name: s.value for s in r.samples}
    assert 0 <= values["poolwarden_cpu_usage_percent"] <= 100
    assert values["poolwarden_cpu_count"] == psutil.cpu_count()
    cores = [s for s in r.samples if s.name == "poolwarden_cpu_core_usage_percent"]
    assert [s.labels["core"] for s in cores] == [str(i) for i in range(psutil.cpu_count())]
    assert all(0 <= s.value <= 100 for s in cores)

    r = run_collector(MemoryCollector(psutil))
    assert r.ok and names(r.samples) == {
        "poolwarden_memory_total_bytes", "poolwarden_memory_used_bytes", "poolwarden_memory_available_bytes",
        "poolwarden_swap_total_bytes", "poolwarden_swap_used_bytes", "poolwarden_memory_used_percent"}
    values = {s.name: s.value for s in r.samples}
    assert values["poolwarden_memory_total_bytes"] == psutil.virtual_memory().total
    assert 0 < values["poolwarden_memory_used_bytes"] < values["poolwarden_memory_total_bytes"]

    r = run_collector(LoadCollector())
    assert r.ok and names(r.samples) == {"poolwarden_load1", "poolwarden_load5", "poolwarden_load15"}


def test_a_failing_collector_is_reported_down_not_raised():
    def broken():
        raise OSError("no /proc/loadavg")

    result = run_collector(LoadCollector(getloadavg=broken))
    assert not result.ok and result.samples == []
    assert "no /proc/loadavg" in result.error
    status = {s.name: s.value for s in result.all_samples()}
    assert status == {"poolwarden_collector_up": 0.0, "poolwarden_collector_duration_seconds": status[
        "poolwarden_collector_duration_seconds"]}
    assert all(s.labels == {"collector": "load"} for s in result.all_samples())


def du_bytes(path) -> int:
    """What du(1) says, in bytes (the reference the walk must match)."""
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@pytest.fixture
def tree(tmp_path):
    """A tree with files, a sub-directory, a hard link, a symlink to a big file outside and a
    symlink loop."""
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(100_000))
    (root / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    (root / "sub" / "deeper" / "c.log").write_text("x" * 10)
    os.link(root / "a.bin", root / "sub" / "a-hardlink.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(os.urandom(1_000_000))
    os.symlink(outside, root / "link-to-outside")
    os.symlink(tmp_path, root / "sub" / "loop")
    (root / "sparse.img").open("wb").truncate(50_000_000)  # allocated size ~0, apparent 50 MB
    return root


def test_directory_size_matches_du(tree):
    size = directory_size(str(tree))
    assert size.bytes == du_bytes(tree)
    assert size.bytes < 1_000_000  # symlinked 1 MB file not followed, sparse file not counted by length
    assert size.bytes >= 150_000  # a.bin once + b.bin


def test_hard_links_are_counted_once(tree):
    before = directory_size(str(tree)).bytes
    os.link(tree / "sub" / "b.bin", tree / "b-again.bin")
    assert directory_size(str(tree)).bytes == before


def test_directory_size_of_missing_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        directory_size(str(tmp_path / "nope"))


def test_components_emit_sizes_and_skip_missing_dirs(fresh_db, tree, tmp_path):
    logs1, logs2 = tmp_path / "logs1", tmp_path / "logs2"
    logs1.mkdir()
    logs2.mkdir()
    (logs1 / "pool.log").write_bytes(b"y" * 20_000)
    collector = ComponentSizeCollector(database_dsn=fresh_db, ergo_data_dir=str(tree),
                                       log_dirs=[str(logs1), str(logs2), str(tmp_path / "missing-logs")],
                                       backup_dir=str(tmp_path / "no-backups-yet"))
    result = run_collector(collector)
    assert result.ok, result.error
    assert names(result.samples) == {"poolwarden_component_size_bytes", "poolwarden_component_mount_info",
                                     "poolwarden_log_file_size_bytes", "poolwarden_log_rotated_files",
                                     "poolwarden_log_rotation_configured"}
    by_key = {(s.labels["component"], s.labels["path"]): s.value for s in result.samples
              if s.name == "poolwarden_component_size_bytes"}
    dbname = fresh_db.rsplit("/", 1)[1]
    assert set(by_key) == {("postgresql", f"db:{dbname}"), ("ergoNode", str(tree)),
                           ("ergoNode.history", f"{tree}/history"), ("ergoNode.state", f"{tree}/state"),
                           ("ergoNode.other", str(tree)),
                           ("logs", str(logs1)), ("logs", str(logs2))}
    assert by_key[("postgresql", f"db:{dbname}")] > 1_000_000  # an empty database is still several MB
    assert by_key[("ergoNode", str(tree))] == du_bytes(tree)
    assert by_key[("logs", str(logs1))] == du_bytes(logs1)


def test_components_database_down_keeps_directory_sizes(tree, refused_url):
    port = refused_url.rsplit(":", 1)[1]
    collector = ComponentSizeCollector(database_dsn=f"postgresql://postgres@127.0.0.1:{port}/mc",
                                       ergo_data_dir=str(tree), connect_timeout=2)
    result = run_collector(collector)
    assert not result.ok
    assert "PostgreSQL" in result.error
    assert [(s.labels["component"], s.value) for s in result.samples
            if s.name == "poolwarden_component_size_bytes"][0] == ("ergoNode", du_bytes(tree))


def test_background_collector_hands_each_result_over_once(tree):
    slow = BackgroundCollector(ComponentSizeCollector(ergo_data_dir=str(tree)), every=3600).start()
    try:
        slow.wait_first(10)
        result = slow.take()
        assert result is not None and result.ok
        assert all(s.ts == result.ts > 0 for s in result.all_samples())  # stamped with measurement time
        assert slow.take() is None  # not repeated until the next run
        slow.refresh()
        assert slow.take() is not None
    finally:
        slow.stop()


def test_log_rotation_backups_and_mounts(tmp_path):
    logs, backups = tmp_path / "logs", tmp_path / "backups"
    (logs / "nginx").mkdir(parents=True)
    backups.mkdir()
    (logs / "miningcore.log").write_bytes(b"a" * 5000)
    (logs / "ergo1.log").write_bytes(b"b" * 300)
    (logs / "nginx" / "access.log").write_bytes(b"c" * 70)
    for name, age in (("miningcore.log.1", 3600), ("miningcore.log.2.gz", 90_000), ("api-2025-06-01.log", 7200)):
        (logs / name).write_bytes(b"old")
        os.utime(logs / name, (time.time() - age, time.time() - age))
    (backups / "mc-1.sql.gz").write_bytes(b"x")
    os.utime(backups / "mc-1.sql.gz", (time.time() - 500, time.time() - 500))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "app.log").write_bytes(b"z")
    conf = tmp_path / "logrotate.d"
    conf.mkdir()
    collector = ComponentSizeCollector(log_dirs=[str(logs), str(bare)], backup_dir=str(backups),
                                       extra_dirs=[("agentSpool", str(tmp_path))],
                                       logrotate_configs=[str(conf / "*")])
    result = run_collector(collector)
    assert result.ok, result.error
    by = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in result.samples}
    logs_l = (("path", str(logs)),)
    assert by[("poolwarden_log_rotated_files", logs_l)] == 3
    assert 3500 < by[("poolwarden_log_newest_rotated_age_seconds", logs_l)] < 3700
    assert by[("poolwarden_log_rotation_configured", logs_l)] == 1
    assert by[("poolwarden_log_file_size_bytes", (("file", "miningcore.log"), ("path", str(logs))))] == 5000
    assert by[("poolwarden_log_file_size_bytes", (("file", "nginx/access.log"), ("path", str(logs))))] == 70
    assert {k[1][0][1] for k in by if k[0] == "poolwarden_log_file_size_bytes" and k[1][1][1] == str(logs)} == {
        "miningcore.log", "ergo1.log", "nginx/access.log"}
    bare_l = (("path", str(bare)),)
    assert by[("poolwarden_log_rotation_configured", bare_l)] == 0  # nothing rotated, no logrotate entry
    assert ("poolwarden_log_newest_rotated_age_seconds", bare_l) not in by
    (conf / "pool").write_text(f"{bare}/*.log {{\n  daily\n  copytruncate\n}}\n")
    again = {(s.name, s.labels.get("path")): s.value for s in run_collector(collector).samples}
    assert again[("poolwarden_log_rotation_configured", str(bare))] == 1
    assert by[("poolwarden_backup_files", (("path", str(backups)),))] == 1
    assert 450 < by[("poolwarden_backup_newest_age_seconds", (("path", str(backups)),))] < 600
    mounts = {s.labels["component"]: s.labels["mount"] for s in result.samples
              if s.name == "poolwarden_component_mount_info"}
    assert set(mounts) == {"logs", "backups", "agentSpool"}
    assert all(os.path.ismount(m) for m in mounts.values())


def test_ergo_data_split_into_history_and_state(tmp_path):
    ergo = tmp_path / ".ergo"
    for part, size in (("history", 300_000), ("state", 120_000), ("peers", 8_000)):
        (ergo / part / "sub").mkdir(parents=True)
        (ergo / part / "sub" / "data").write_bytes(b"e" * size)
    result = run_collector(ComponentSizeCollector(ergo_data_dir=str(ergo)))
    sizes = {s.labels["component"]: s.value for s in result.samples if s.name == "poolwarden_component_size_bytes"}
    assert sizes["ergoNode.history"] == du_bytes(ergo / "history")
    assert sizes["ergoNode.state"] == du_bytes(ergo / "state")
    assert sizes["ergoNode"] == du_bytes(ergo)
    assert sizes["ergoNode.other"] == sizes["ergoNode"] - sizes["ergoNode.history"] - sizes["ergoNode.state"]
