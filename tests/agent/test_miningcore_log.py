"""Miningcore's log file followed by the miningcore_log collector: payout failures and the other lines
an operator must hear about become events, read once across lost batches, restarts and rotations.

The files are real files written in Miningcore's line layout (poolsim's ``format_line``); the last
test reads what a running poolsim writes when its payouts fail."""

from __future__ import annotations

import json
import logging
import os

import pytest
import requests

from agent.collectors import MiningcoreLogCollector, build_collectors, run_collector
from agent.config import ConfigError, load_config
from agent.contract import Event
from poolsim.logs import format_line
from tests.agent.conftest import example_config, write_config

T0 = 1795860000.0  # 2026-11-28 09:20:00 UTC
TX_FAILED = ("Payment transaction failed: Wallet is locked or insufficient funds "
             "(node answered 400 bad.request on /wallet/payment/send)")


def append(path, *lines: tuple[float, str, str, str], end: str = "\n") -> None:
    """Append Miningcore lines ``(ts, level, logger, message)``; ``end`` "" leaves the last one unfinished."""
    text = "".join(format_line(*line) for line in lines)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text[:-1] + end if lines else "")


READ_AT = T0 + 86400 * 3          # the agent's clock: the line's own time (UTC as NLog wrote it) is data


def reader(tmp_path, **kw) -> MiningcoreLogCollector:
    kw.setdefault("pool_ids", ("ergo1",))
    kw.setdefault("clock", lambda: READ_AT)
    return MiningcoreLogCollector(tmp_path / "logs", tmp_path / "state", **kw)


def events_of(collector, commit: bool = True) -> list[Event]:
    result = run_collector(collector)
    assert result.ok, result.error
    assert result.samples == []
    if commit:
        collector.commit()
    return result.events


def brief(events) -> list[tuple[str, str, str]]:
    return [(e.kind, e.data["pool"], e.data["error"]) for e in events]


@pytest.fixture
def log_file(tmp_path):
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "miningcore.log"
    append(path, (T0 - 3600, "error", "ergo1", "Payment transaction failed: an old failure"),
           (T0 - 3500, "info", "PayoutManager", "No balances over configured minimum payout for pool ergo1"))
    return path


def test_payout_failures_and_lost_shares_become_events(tmp_path, log_file):
    collector = reader(tmp_path)
    assert events_of(collector) == []  # the first run starts at the end: the old failure is not news
    append(log_file,
           (T0, "info", "PayoutManager", "Processing payments for pool ergo1"),
           (T0 + 0.3, "info", "ergo1", "[Ergo Payout Handler] Paying 12.5 ERG to 3 addresses"),
           (T0 + 0.3, "error", "ergo1", TX_FAILED),
           (T0 + 0.31, "error", "PayoutManager", "Payment processing failed"),  # the same failure
           (T0 + 600, "error", "ergo1", "[Ergo Payout Handler] Failed to unlock wallet: invalid password"),
           (T0 + 1200, "error", "PayoutManager", "Error while processing payout for pool ergo1: Connection refused"),
           (T0 + 1300, "warn", "ergo1", "Block 1612400 submission failed with: Invalid PoW solution"),
           (T0 + 1400, "fatal", "ShareRecorder",
            "Fatal error during policy fallback execution. Share(s) will be lost!"),
           (T0 + 1500, "error", "ergo1", "Error during UpdateJob: Connection refused"))
    events = events_of(collector)
    assert brief(events) == [
        ("payment_failed", "ergo1", TX_FAILED),
        ("payment_failed", "ergo1", "Failed to unlock wallet: invalid password"),
        ("payment_failed", "ergo1", "Error while processing payout for pool ergo1: Connection refused"),
        ("block_submission_failed", "ergo1", "Block 1612400 submission failed with: Invalid PoW solution"),
        ("shares_lost", "ergo1", "Fatal error during policy fallback execution. Share(s) will be lost!"),
    ]
    first = events[0]
    assert first.ts == READ_AT            # dated when read: a skewed Miningcore clock cannot hide an alert
    assert first.data == {"pool": "ergo1", "error": TX_FAILED, "logger": "ergo1", "level": "error",
                          "logged": pytest.approx(T0 + 0.3, abs=1e-3)}
    assert events[2].data["logger"] == "PayoutManager"
    assert events[3].data["height"] == 1612400 and events[3].data["level"] == "warn"
    assert events[4].data["level"] == "fatal" and events[4].data["logged"] == pytest.approx(T0 + 1400)
    assert len({e.id for e in events}) == len(events) and all(len(e.id) <= 200 for e in events)
    assert events_of(collector) == []  # nothing new


def test_uncommitted_batches_are_read_again_with_the_same_ids(tmp_path, log_file):
    collector = reader(tmp_path)
    events_of(collector)
    cursor = (tmp_path / "state" / "miningcore-log.cursor").read_text()
    append(log_file, (T0, "error", "ergo1", TX_FAILED))
    lost = events_of(collector, commit=False)
    assert [e.kind for e in lost] == ["payment_failed"]
    assert (tmp_path / "state" / "miningcore-log.cursor").read_text() == cursor  # not moved without commit
    again = events_of(collector, commit=False)
    assert again == lost
    restarted = reader(tmp_path)  # the agent restarts before the batch was stored
    assert events_of(restarted) == lost
    assert events_of(reader(tmp_path)) == []  # committed: a later restart does not repeat it
    (tmp_path / "state" / "miningcore-log.cursor").unlink()  # cursor lost: the line, if read, keeps its id
    fresh = reader(tmp_path)
    assert events_of(fresh) == []
    log_file.write_bytes(b"")
    append(log_file, (T0, "error", "ergo1", TX_FAILED))
    assert [e.id for e in events_of(fresh)] == [lost[0].id]


@pytest.mark.parametrize("cursor", ["[]", "{not json", json.dumps({"version": 1, "file": "x", "offset": 5,
                                                                   "tail": "%%%", "lastFailure": None})])
def test_damaged_cursor_starts_at_the_end_with_a_warning(tmp_path, log_file, caplog, cursor):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "miningcore-log.cursor").write_text(cursor)
    collector = reader(tmp_path)
    assert events_of(collector) == []
    assert "starting at the end of the file" in caplog.text
    append(log_file, (T0, "error", "ergo1", TX_FAILED))
    assert len(events_of(reader(tmp_path))) == 1


def test_payout_manager_line_alone_and_after_a_failure_in_the_previous_run(tmp_path, log_file):
    collector = reader(tmp_path)
    events_of(collector)
    append(log_file, (T0, "error", "ergo1", TX_FAILED))
    assert len(events_of(collector)) == 1
    append(log_file, (T0 + 0.02, "error", "PayoutManager", "Payment processing failed"))  # next run, same failure
    assert events_of(reader(tmp_path)) == []  # a restarted agent still knows the pool's line came first
    # alone (no pool line before it): a failure of the only configured pool
    append(log_file, (T0 + 600, "error", "PayoutManager", "Payment processing failed"))
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", "Payment processing failed")]
    # oliverw's layout names the pool; several pools and none named: pool unknown
    several = reader(tmp_path, pool_ids=(), discovered_pool_ids=lambda: ["ergo1", "ergo2"])
    append(log_file, (T0 + 1200, "error", "PayoutManager", "[ergo2] Payment processing failed: Connection refused"),
           (T0 + 1800, "error", "PayoutManager", "Payment processing failed"))
    assert brief(events_of(several)) == [("payment_failed", "ergo2", "Payment processing failed: Connection refused"),
                                         ("payment_failed", "", "Payment processing failed")]


def test_pools_not_configured_are_left_out(tmp_path, log_file):
    collector = reader(tmp_path, pool_ids=("ergo1",))
    events_of(collector)
    append(log_file, (T0, "error", "ergo2", TX_FAILED), (T0 + 1, "error", "ergo1", TX_FAILED))
    assert [e.data["pool"] for e in events_of(collector)] == ["ergo1"]


def test_copytruncate_rotation(tmp_path, log_file):
    collector = reader(tmp_path)
    events_of(collector)
    append(log_file, *[(T0 + i, "info", "ergo1", f"Detected new block {1612400 + i}") for i in range(20)])
    events_of(collector)
    with open(log_file, "r+b") as fh:  # logrotate copytruncate
        fh.truncate(0)
    append(log_file, (T0 + 100, "error", "ergo1", TX_FAILED))  # shorter than the old position
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", TX_FAILED)]
    with open(log_file, "r+b") as fh:  # truncated, then written past the old position before the next run
        fh.truncate(0)
    append(log_file, (T0 + 200, "error", "ergo1", "[Ergo Payout Handler] Wallet is not initialized"),
           *[(T0 + 300 + i, "info", "ergo1", f"Detected new block {1612500 + i}") for i in range(5)])
    assert os.path.getsize(log_file) > collector.state["offset"]
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", "Wallet is not initialized")]


def test_rename_rotation_reads_the_new_file_from_its_start(tmp_path, log_file):
    collector = reader(tmp_path)
    events_of(collector)
    append(log_file, (T0, "error", "ergo1", "Payment transaction failed: before the rotation"))
    assert len(events_of(collector)) == 1
    log_file.rename(log_file.with_name("miningcore.log.1"))
    assert events_of(collector) == []  # not created yet: nothing, and not a failure
    append(log_file, (T0 + 600, "error", "ergo1", "Payment transaction failed: in the new file"))
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", "Payment transaction failed: in the new file")]
    os.replace(log_file, log_file.with_name("miningcore.log.2"))  # replaced at once by a bigger new file
    append(log_file, (T0 + 1200, "warn", "ergo1", "Block 1612600 submission failed with: stale"),
           *[(T0 + 1300 + i, "info", "ergo1", f"Detected new block {1612601 + i}") for i in range(30)])
    assert [e.kind for e in events_of(collector)] == ["block_submission_failed"]


def test_partial_lines_wait_for_their_end(tmp_path, log_file):
    collector = reader(tmp_path)
    events_of(collector)
    line = format_line(T0, "error", "ergo1", TX_FAILED)
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(line[:40])
    assert events_of(collector) == []
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write(line[40:-1])
    assert events_of(collector) == []
    with open(log_file, "a", encoding="utf-8") as fh:
        fh.write("\n")
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", TX_FAILED)]


def test_backlog_is_read_in_bounded_runs_and_bad_bytes_are_replaced(tmp_path, log_file):
    collector = reader(tmp_path, max_bytes=4096)
    events_of(collector)
    for i in range(40):
        append(log_file, *[(T0 + i * 10 + j, "info", "ergo1", f"Detected new block {i * 10 + j}") for j in range(9)],
               (T0 + i * 10 + 9, "error", "ergo1", f"Payment transaction failed: attempt {i}"))
    with open(log_file, "ab") as fh:
        fh.write(format_line(T0 + 500, "error", "ergo1", "Payment transaction failed: X").encode()
                 .replace(b"X", b"bad \xff\xfe bytes \x00 and a NUL"))
    assert os.path.getsize(log_file) > 4 * 4096
    runs = []
    while collector.state["offset"] < os.path.getsize(log_file):
        runs.append(events_of(collector))
        assert len(runs) < 50
    assert len(runs) > 3
    errors = [e.data["error"] for run in runs for e in run]
    assert errors == [f"Payment transaction failed: attempt {i}" for i in range(40)] + [
        "Payment transaction failed: bad \ufffd\ufffd bytes  and a NUL"]


def test_missing_file_and_missing_directory(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.collectors.miningcore_log")
    collector = reader(tmp_path)
    assert events_of(collector) == [] and events_of(collector) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path / "logs") in warnings[0].getMessage()
    assert "does not exist" in warnings[0].getMessage()
    (tmp_path / "logs").mkdir()
    assert events_of(collector) == []  # the directory exists, Miningcore logs to the console only
    path = tmp_path / "logs" / "miningcore.log"
    append(path, (T0, "error", "ergo1", TX_FAILED))  # Miningcore starts writing its file: all of it is new
    assert brief(events_of(collector)) == [("payment_failed", "ergo1", TX_FAILED)]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_unreadable_log_is_a_failure(tmp_path):
    (tmp_path / "logs" / "miningcore.log").mkdir(parents=True)  # a directory where the file should be
    result = run_collector(reader(tmp_path))
    assert not result.ok and result.events == []
    assert result.error == f"cannot read Miningcore's log {tmp_path}/logs/miningcore.log: Is a directory"


def test_configured_file_name(tmp_path):
    (tmp_path / "logs").mkdir()
    append(tmp_path / "logs" / "miningcore-solo.log", (T0, "info", "ergo1", "Detected new block 1"))
    collector = reader(tmp_path, file_name="miningcore-solo.log")
    events_of(collector)
    append(tmp_path / "logs" / "miningcore-solo.log", (T0 + 1, "error", "ergo1", TX_FAILED))
    append(tmp_path / "logs" / "miningcore.log", (T0 + 2, "error", "ergo1", TX_FAILED))
    assert [e.data["logged"] for e in events_of(collector)] == [pytest.approx(T0 + 1)]


# --- configuration -----------------------------------------------------------------------------


def built(tmp_path, pool_changes=None, collectors=None):
    pool, monitoring = example_config()
    pool["miningcore"].update(pool_changes or {})
    monitoring["agent"]["stateDir"] = str(tmp_path / "state")
    if collectors is not None:
        monitoring["collectors"] = collectors
    config = load_config(write_config(tmp_path / "config", pool, monitoring), env={})
    fast, slow = build_collectors(config)
    for c in fast + slow:
        c.close()
    return config, [c for c in fast if isinstance(c, MiningcoreLogCollector)]


def test_built_when_a_log_directory_is_configured(tmp_path):
    config, found = built(tmp_path, {"logDir": str(tmp_path / "mc"), "poolIds": ["ergo1"]})
    assert config.monitoring.collectors["miningcore_log"].every_seconds == 10  # the example's default
    assert [c.path for c in found] == [tmp_path / "mc" / "miningcore.log"]
    assert found[0].cursor_path == tmp_path / "state" / "miningcore-log.cursor"
    _config, found = built(tmp_path, {"logDir": str(tmp_path / "mc")},
                           {"miningcore_log": {"fileName": "miningcore-public.log", "everySeconds": 5}})
    assert [c.path for c in found] == [tmp_path / "mc" / "miningcore-public.log"]
    _config, found = built(tmp_path, {"logDir": None})
    assert found == []
    _config, found = built(tmp_path, {"logDir": str(tmp_path / "mc")}, {"miningcore_log": {"enabled": False}})
    assert found == []


@pytest.mark.parametrize(("collectors", "message"), [
    ({"miningcore_log": {"fileName": "logs/miningcore.log"}},
     "collectors.miningcore_log.fileName: must be a file name (no directory: the directory is miningcore.logDir)"),
    ({"miningcore_log": {"fileName": ""}}, "collectors.miningcore_log.fileName: must not be empty"),
    ({"pool_events": {"fileName": "x.log"}}, "collectors.pool_events.fileName: unknown key"),
])
def test_file_name_option_is_checked(tmp_path, collectors, message):
    with pytest.raises(ConfigError) as err:
        built(tmp_path, collectors=collectors)
    assert message in str(err.value)


# --- against poolsim -----------------------------------------------------------------------------


def test_failed_payout_of_poolsim_reaches_the_collector(fresh_db, tmp_path):
    """poolsim's ``payment_failure`` fault: the next payout run with balances due logs the handler's
    failure and PayoutManager's follow-up; the collector reports one payment_failed per run."""
    from poolsim import PoolSim

    logs = tmp_path / "logs"
    with PoolSim(seed=42, dsn=fresh_db, paused=True, history_days=1.5, payout_interval=600,
                 log_dir=str(logs)) as sim:
        collector = MiningcoreLogCollector(logs, tmp_path / "state", discovered_pool_ids=lambda: ["ergo1"])
        assert events_of(collector) == []  # poolsim's history is not news
        control = sim.urls["control"]
        requests.post(control + "/faults/payment_failure", json={}, timeout=5).raise_for_status()
        events: list[Event] = []
        for _ in range(48):  # payouts run every 600 s and pay once a pool block has matured (720 blocks)
            requests.post(control + "/time/warp", json={"seconds": 3600}, timeout=60).raise_for_status()
            events += events_of(collector)
            if events:
                break
    text = (logs / "miningcore.log").read_text()
    failures = text.count("Payment transaction failed")
    assert failures >= 1 and text.count("[PayoutManager] Payment processing failed") == failures
    assert [(e.kind, e.data["pool"], e.data["logger"]) for e in events] == [
        ("payment_failed", "ergo1", "ergo1")] * failures
    assert all(e.data["error"].startswith("Payment transaction failed: Wallet is locked") for e in events)
    assert json.loads((tmp_path / "state" / "miningcore-log.cursor").read_text())["offset"] == len(text.encode())
