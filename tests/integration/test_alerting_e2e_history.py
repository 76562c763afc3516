"""Alerting from end to end for the rules that need history: a baseline, a round, a forecast line,
a block's life, a payout run.

The same real processes as ``test_alerting_e2e.py`` (poolsim, ``poolwarden-agent collect --interval 1``,
the engine, the notify worker, a webhook sink and aiosmtpd), with two differences that give the
rules the history they judge:

* **poolsim's clock starts 48 hours behind the wall clock**, with ``block_drought`` on: its last
  pool block is 48 hours and more old, longer than the ~30 hours its hashrate and the network
  difficulty make expected. Later the clock is warped forward to the wall clock.
* **the agent has a past**: before the faults, seven hours of batches for the series the
  baselines need (pool hashrate, the backups component, the test's disk) are sent to the host's
  stream with their old timestamps, the way an agent's spool is replayed after a Redis outage, and
  the engine ingests and rolls them up like any other batch.

The faults, each notified firing and then resolved by webhook and by e-mail:

* ``no_block``: the drought (effort over 100 %); resolved when the clock is warped to now and the
  pool finds a block;
* ``pool_no_miners`` and ``pool_hashrate_drop``: poolsim's ``miners_leave`` (every miner
  disconnects; the clock is warped past Miningcore's 10-minute hashrate window), then back;
* ``node_height_stalled``: poolsim's ``node_stalled`` while the chain moves on (the clock ticks a
  minute every 2 s), then followed again;
* ``disk_full_forecast`` and ``component_growth``: a runaway writer fills the backups directory on a
  small tmpfs; the files removed, both resolve at once (a clean-up starts their lines again);
* ``block_pending_too_long``: Miningcore's payout processor down (``payout_processor_down``) while
  the pool finds a block; resolved when the processor runs again and the block is confirmed;
* ``payment_failed`` and ``payouts_stalled``: that payout fails (``payment_failure``: the agent reads
  the failure from Miningcore's log) and no payment follows the confirmed block; resolved when the
  next payout run pays;
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redislib
import requests

from agent.contract import Batch, Sample, stream_key
from devtools.services import ROOT
from tests.integration.alerting import (
    POOL,
    WAIT,
    Harness,
    Inbox,
    assert_all_delivered_and_resolved,
    channels,
    check_delivery,
    explain,
)
from tests.integration.conftest import HOST, control, panel_client, wait_until

pytest_plugins = ["tests.sinks"]  # fixtures: webhook_sink, smtp_sink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LAG = 48 * 3600                  # poolsim's clock starts this far behind the wall clock
PAST = 7 * 3600                  # how far back the replayed batches go
DISK_MIB = 8


@pytest.fixture
def poolsim_args() -> tuple[str, ...]:
    return ("--start-time", str(int(time.time() - LAG)))


def agent_config(tmp: Path, mount: Path) -> Path:
    target = tmp / "agent-config"
    shutil.copytree(ROOT / "config", target)
    monitoring = json.loads((target / "monitoring.json").read_text())
    monitoring["collectors"]["pool_events"] = {"everySeconds": 1}
    monitoring["collectors"]["miningcore_log"] = {"everySeconds": 1}
    monitoring["intervals"]["componentSizesSeconds"] = 10
    monitoring["mounts"] = {"include": [str(mount)]}
    (target / "monitoring.json").write_text(json.dumps(monitoring, indent=2))
    return target


def alert_rules(mount: Path) -> dict:
    return {"alerts": {
        "noBlocksFound": {"type": "no_block", "effortPercent": 100, "minWait": "0s"},
        "poolNoMiners": {"type": "pool_no_miners", "for": "0s"},
        "poolHashrateDrop": {"type": "pool_hashrate_drop", "for": "0s", "dropPercent": 50, "clearPercent": 30,
                             "window": "1m", "baseline": "1h"},
        "nodeHeightStalled": {"type": "node_height_stalled", "stalledFor": "2m"},
        "diskFullForecast": {"type": "disk_full_forecast", "fullWithin": "1d", "clearAbove": "2d",
                             "criticalWithin": None, "window": "30m", "matchers": [f'mount="{mount}"']},
        "componentGrowth": {"type": "component_growth", "factor": 5, "minBytesPerHour": 2**20, "window": "15m",
                            "baseline": "6h", "include": ["components"]},
        "blockPendingTooLong": {"type": "block_pending_too_long", "maxAge": "1m"},
        "paymentFailed": {"type": "payment_failed", "window": "1m"},
        "payoutsStalled": {"type": "payouts_stalled", "maxWait": "1m"},
    }}


# -- the agent's past ---------------------------------------------------------------------------------------


def replay_the_past(h: Harness, mount: Path) -> None:
    """Seven hours of minute batches for the series the baselines read, with the labels and the newest
    values the running agent reports: a steady hashrate, a flat backups directory and disk."""
    wanted = {"poolwarden_pool_hashrate_hps": {"pool": POOL},
              "poolwarden_component_size_bytes": {"component": "backups"},
              "poolwarden_disk_used_bytes": {"mount": str(mount)},
              "poolwarden_disk_free_bytes": {"mount": str(mount)}}

    def current() -> dict | None:
        with h.db() as conn:
            found = {}
            for name, labels in wanted.items():
                row = conn.execute("SELECT s.labels, l.value FROM series s JOIN latest l ON l.series_id = s.id "
                                   "WHERE s.name = %s AND s.labels @> %s::jsonb", (name, json.dumps(labels))).fetchone()
                if row is None or (name == "poolwarden_pool_hashrate_hps" and row[1] <= 0):
                    return None
                found[name] = row
            return found

    series = wait_until(current, WAIT, "the agent's first pool, component and disk samples")
    now = int(time.time()) // 60 * 60
    client = redislib.Redis.from_url(h.stack["redis_url"])
    try:
        for minute in range(now - PAST, now - 60, 60):
            samples = [Sample(name, value, labels, float(minute)) for name, (labels, value) in series.items()]
            client.xadd(stream_key(HOST), Batch(float(minute), samples, agent_version="replayed").to_fields())
    finally:
        client.close()
    base = time.time() - 6 * 3600 - 15 * 60

    def rolled_up() -> bool:
        with h.db() as conn:
            return conn.execute(
                "SELECT count(*) FROM samples_1m r JOIN series s ON s.id = r.series_id "
                "WHERE s.name = 'poolwarden_component_size_bytes' AND r.bucket < to_timestamp(%s)",
                (base + 3 * 3600,)).fetchone()[0] >= 3 * 60 - 5
    wait_until(rolled_up, 120, "the replayed minutes rolled up")


# -- the scenarios ------------------------------------------------------------------------------------------


def miners_leave(h: Harness) -> None:
    """Every miner disconnects: once Miningcore's 10-minute window has slid past (a warp), the pool
    reports no miners and no hashrate; they come back and, a window later, so does the hashrate."""

    def leave() -> None:
        h.fault("miners_leave", ratio=1.0)
        control(h.stack, "POST", "/time/warp", seconds=610)

    def back() -> None:
        h.fault("miners_leave", on=False)
        control(h.stack, "POST", "/time/warp", seconds=610)

    h.fires_and_resolves("poolNoMiners", leave, back, labels={"pool": POOL}, timeout=90,
                         also=(("poolHashrateDrop", {"pool": POOL}),))


class Ticker:
    """The chain moving on: poolsim's clock warped a minute every 2 s while the node is judged."""

    def __init__(self, stack):
        self.stack, self.stop = stack, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(2):
            control(self.stack, "POST", "/time/warp", seconds=60)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def node_height_stalled(h: Harness) -> None:
    with Ticker(h.stack):
        time.sleep(10)   # a few heights while it is healthy
        h.fires_and_resolves("nodeHeightStalled", lambda: h.fault("node_stalled"),
                             lambda: h.fault("node_stalled", on=False), timeout=120 + WAIT)


def runaway_backup(h: Harness, mount: Path) -> None:
    """A backup job gone wrong writes 64 KiB/s into the backups directory on an 8 MiB disk: the disk's
    forecast and the component's growth fire; the files removed, both resolve at once."""
    backups = Path(f"/proc/{h.agent.proc.pid}/root") / mount.relative_to("/") / "backups"
    stop, written = threading.Event(), []

    def write() -> None:
        for n in range(80):            # at most 5 MiB
            if stop.wait(1):
                return
            (backups / f"part-{n:03d}").write_bytes(b"\1" * 65536)
            written.append(n)

    writer = threading.Thread(target=write, daemon=True)

    def clean() -> None:
        # at least 1.5 MiB, so that removing it is a clean-up (a fall by 1 MiB and more)
        wait_until(lambda: len(written) >= 24 or not writer.is_alive(), 60, "1.5 MiB written")
        stop.set()
        writer.join(5)
        for part in backups.glob("part-*"):
            part.unlink()

    h.fires_and_resolves("diskFullForecast", writer.start, clean, labels={"mount": str(mount)}, timeout=60 + WAIT,
                         also=(("componentGrowth", {"target": "backups"}),))


def newest_block(h: Harness) -> dict:
    return control(h.stack, "GET", "/state")["blocks"]["newest"]


def drought_ends(h: Harness) -> dict:
    """The drought ends: poolsim's clock is warped to just after the panel first heard of the host and
    the pool finds a block there (found earlier, it would be history to the block rules). From now on
    the wallet cannot pay (``payment_failure``) and the payout processor is down: see ``payout_trouble``.
    Returns the block."""
    started = time.time()
    h.fault("payment_failure")
    with h.db() as conn:
        first_seen = conn.execute("SELECT extract(epoch FROM first_seen) FROM hosts WHERE name = %s",
                                  (HOST,)).fetchone()[0]
    behind = float(first_seen) + 10 - control(h.stack, "GET", "/state")["simTime"]
    control(h.stack, "POST", "/time/warp", seconds=max(0, int(behind)))
    control(h.stack, "POST", "/clock/pause")
    h.fault("payout_processor_down")
    h.fault("block_drought", on=False)
    before = newest_block(h)["height"]
    control(h.stack, "POST", "/blocks/find")
    for _ in range(120):                   # the next network block is the pool's
        if newest_block(h)["height"] != before:
            break
        control(h.stack, "POST", "/clock/step", seconds=10)
    control(h.stack, "POST", "/clock/resume")
    block = newest_block(h)
    assert block["height"] != before and block["status"] == "pending", block
    check_delivery(h.inbox.wait("resolved", "noBlocksFound", started, timeout=60 + WAIT, pool=POOL), "resolved",
                   "noBlocksFound")
    return block


def payout_trouble(h: Harness, block: dict, since: float) -> None:
    """The payout processor is down while the pool found a block: it stays pending past maxAge. The
    processor back, a day later the block is confirmed but its payout fails (Miningcore's log says
    so): pending resolves, payment_failed fires, and no payment follows the confirmation: payouts
    stalled. The wallet fixed, the next payout run pays: both resolve."""
    height = block["height"]
    due = max(0.0, block["created"] + 60 - time.time())    # maxAge after it was found
    got = h.inbox.wait("firing", "blockPendingTooLong", since, timeout=due + 60 + WAIT, pool=POOL,
                       height=str(height))
    check_delivery(got, "firing", "blockPendingTooLong")

    confirming = time.time()
    h.fault("payout_processor_down", on=False)
    for _ in range(10):                                    # about 720 network blocks
        control(h.stack, "POST", "/time/warp", seconds=4 * 3600)
        if control(h.stack, "GET", "/state")["blocks"]["confirmed"] and confirmed_in_sim(h, height):
            break
    wait_until(lambda: confirmed_height(h, height), WAIT, f"block {height}'s block_confirmed event")
    check_delivery(h.inbox.wait("resolved", "blockPendingTooLong", confirming, timeout=60 + WAIT, pool=POOL,
                                height=str(height)), "resolved", "blockPendingTooLong")
    check_delivery(h.inbox.wait("firing", "paymentFailed", since, pool=POOL), "firing", "paymentFailed")
    check_delivery(h.inbox.wait("firing", "payoutsStalled", confirming, timeout=60 + WAIT, pool=POOL), "firing",
                   "payoutsStalled")

    paying = time.time()
    h.fault("payment_failure", on=False)
    control(h.stack, "POST", "/time/warp", seconds=900)      # the next payout run
    check_delivery(h.inbox.wait("resolved", "payoutsStalled", paying, timeout=60 + WAIT, pool=POOL), "resolved",
                   "payoutsStalled")
    # payment_failed resolves a window (1 minute) after the last failed run: while the payout runs are
    # 10 minutes apart that may come before the wallet is fixed; after it, no new failure
    check_delivery(h.inbox.wait("resolved", "paymentFailed", since, timeout=60 + WAIT, pool=POOL), "resolved",
                   "paymentFailed")
    assert [a["status"] for _at, _p, a in h.inbox.about("paymentFailed", paying)] in ([], ["resolved"])


def confirmed_in_sim(h: Harness, height: int) -> bool:
    """Miningcore's API lists the block as confirmed."""
    blocks = requests.get(f"{h.stack['urls']['api']}/api/pools/{POOL}/blocks", params={"pageSize": 50},
                          timeout=10).json()
    return any(b["blockHeight"] == height and b["status"] == "confirmed" for b in blocks)


def confirmed_height(h: Harness, height: int) -> bool:
    with h.db() as conn:
        return conn.execute("SELECT count(*) FROM events WHERE kind = 'block_confirmed' AND data->>'height' = %s",
                            (str(height),)).fetchone()[0] > 0


def test_rules_that_need_history_fire_and_resolve_end_to_end(stack, webhook_sink, smtp_sink):
    tmp = stack["tmp"]
    mount = tmp / "pool-disk"
    mount.mkdir()
    rules_file = tmp / "alerts.json"
    rules_file.write_text(json.dumps(alert_rules(mount), indent=2))
    (tmp / "integrations.json").write_text(json.dumps(channels(webhook_sink.url, smtp_sink.port), indent=2))
    control(stack, "POST", "/faults/block_drought")

    stack["panel_env"].update({"POOLWARDEN_ALERTS_CONFIG": str(rules_file),
                               "POOLWARDEN_INTEGRATIONS_CONFIG": str(tmp / "integrations.json"),
                               "POOLWARDEN_ALERTS_EVALUATE_SECONDS": "1",
                               "POOLWARDEN_NOTIFY_RETRY_INTERVALS": "1,2,4"})
    stack["run_engine"]()
    stack["run_notify_worker"]()
    stack["agent_env"]["POOLWARDEN_BACKUP_DIR"] = str(mount / "backups")
    wrapper = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
               f'mount -t tmpfs -o size={DISK_MIB}m poolwarden-e2e "$0" && mkdir "$0/backups" && exec "$@"',
               str(mount))
    h = Harness(stack, Inbox(webhook_sink, smtp_sink, explain(stack["pw_dsn"])), panel_client(stack), wrapper,
                ("--interval", "1", "--config-dir", str(agent_config(tmp, mount))))
    started = time.time()
    h.start_agent()
    try:
        replay_the_past(h, mount)
        drought = h.inbox.wait("firing", "noBlocksFound", started, timeout=60 + WAIT, pool=POOL)
        check_delivery(drought, "firing", "noBlocksFound")
        assert drought.alert["value"] >= 100, drought.alert

        with ThreadPoolExecutor(2) as background:
            slow = [background.submit(node_height_stalled, h), background.submit(runaway_backup, h, mount)]
            miners_leave(h)
            for future in slow:
                future.result()
        found_at = time.time()
        block = drought_ends(h)
        payout_trouble(h, block, found_at)

        assert_all_delivered_and_resolved(h)
        print("fault -> firing, fix -> resolved notification (s):", dict(sorted(h.latencies.items())))
    finally:
        if h.agent is not None:
            h.agent.stop()
