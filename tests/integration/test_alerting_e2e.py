"""Alerting from end to end: a fault injected into poolsim (or the host) reaches the operator.

poolsim → ``poolwarden-agent collect`` (every second) → Redis → ``poolwarden-panel engine`` (ingest,
the alert rules as batches arrive, the dispatcher) → RQ → ``poolwarden-panel notify-worker`` → a webhook
sink (HTTP on loopback, signature checked) and a real SMTP server (aiosmtpd). Every process is the
real console script; the rules and the channels come from ``alerts.json`` and ``integrations.json``
files written here, as an operator would provision them, with short pending durations, group_wait
0 and every alert in a group of its own, so each firing and each resolution is one notification.

For each rule type a fault is switched on, the alert's firing notification must arrive by webhook
and by e-mail, the fault is switched off, and its resolution must arrive the same way. The faults:

* poolsim's control API: Miningcore API down, node down, node stalled (plus a time warp, so the
  network moves on), no peers, an invalid-share spike, an orphaned block;
* PostgreSQL as the agent sees it: a TCP gate in front of Miningcore's database that is closed
  (connection refused, open connections cut) and reopened; extra client connections; a query
  that sleeps;
* the host: a small tmpfs mounted in the agent's own mount namespace (``unshare``), filled and
  emptied; Miningcore's container (busybox, on a private dockerd) stopped and started again; the
  agent itself stopped and started again;
* a maintenance job (vacuum) the agent's worker runs while its database path is closed, then again.

Noise: a no-peers condition that flaps for a while produces at most one notification per
group_interval; a silence holds a firing alert back while a sibling alert goes out, and releases
it when it ends. One stack serves everything; slow scenarios (a 1-minute window to clear) run in
background threads while the quick ones run one after another. Which rule types are covered here
and which only by unit tests (and why) is listed in docs/alerts.md, "How the rules are tested".
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from devtools.services import ROOT
from tests.integration.alerting import (
    POOL,
    SIGNING_SECRET,
    WAIT,
    Harness,
    Inbox,
    alert_state,
    assert_all_delivered_and_resolved,
    channels,
    check_delivery,
    explain,
)
from tests.integration.conftest import HOST, control, panel_client, wait_until

pytest_plugins = ["tests.sinks"]  # fixtures: webhook_sink, smtp_sink

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

FLAP_GROUP_INTERVAL = 6          # the flapping alert's route: at most one notification per 6 s
SILENCE_SECONDS = 15
DISK_MIB = 8                     # the tmpfs the disk rules watch


# -- faults outside poolsim -----------------------------------------------------------------------------


class TcpGate:
    """A TCP forwarder on loopback in front of PostgreSQL. ``close()`` is the database going down as
    a client sees it (new connections refused, open ones cut); ``open()`` brings it back on the same port."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> TcpGate:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            cut, self._open = self._open, set()
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


# -- configuration written as an operator would ---------------------------------------------------------


def agent_config(tmp: Path, mount: Path) -> Path:
    """The repository's agent configuration, with block events read every second and the test's mount watched."""
    target = tmp / "agent-config"
    shutil.copytree(ROOT / "config", target)
    monitoring = json.loads((target / "monitoring.json").read_text())
    monitoring["collectors"]["pool_events"] = {"everySeconds": 1}
    monitoring["mounts"] = {"include": [str(mount)]}
    (target / "monitoring.json").write_text(json.dumps(monitoring, indent=2))
    return target


def alert_rules(mount: Path) -> dict:
    on_mount = [f'mount="{mount}"']
    return {"alerts": {
        "poolOffline": {"type": "pool_down", "for": "2s"},
        "poolInvalidShares": {"type": "pool_invalid_shares", "for": "0s", "maxPercent": 10, "clearPercent": 9,
                              "window": "1m", "minSharesPerSecond": 0},
        "blockOrphaned": {"type": "block_orphaned", "window": "1m"},
        "nodeDown": {"type": "node_down", "for": "2s"},
        "nodeOutOfSync": {"type": "node_sync_lag", "for": "2s", "maxBlocks": 3, "clearBlocks": 1},
        "nodeNoPeers": {"type": "node_no_peers", "for": "0s"},
        "databaseDown": {"type": "database_down", "for": "2s"},
        "databaseConnections": {"type": "database_connections", "for": "2s", "maxPercent": 30, "clearPercent": 25},
        "databaseLongQuery": {"type": "database_long_query", "for": "1s", "measure": "query", "maxDuration": "3s",
                              "clearDuration": "2s"},
        "diskSpace": {"type": "disk_usage", "for": "1s", "warningPercent": 50, "criticalPercent": 90,
                      "clearPercent": 40, "matchers": on_mount},
        "diskUsedBytes": {"type": "threshold", "for": "1s", "metric": "poolwarden_disk_used_bytes", "op": ">",
                          "threshold": 4 * 2**20, "component": "disk", "matchers": on_mount},
        "containerUnhealthy": {"type": "container_unhealthy", "for": "2s", "includeStopped": True},
        "containerRestarts": {"type": "container_restarts", "maxRestarts": 1, "window": "1m"},
        "collectorFailing": {"type": "collector_failing", "for": "2s"},
        "agentSilent": {"type": "agent_silent", "missedIntervals": 3, "intervalSeconds": 1},
        "maintenanceFailed": {"type": "maintenance_failed", "window": "1h"},
    }}


# -- the test -------------------------------------------------------------------------------------------




def orphaned_block(h: Harness, height: int) -> None:
    """The newest pending block (found after the agent's start) is orphaned: one alert for that block,
    resolved once the rule's 1-minute window has passed."""
    started = time.time()
    answer = control(h.stack, "POST", "/faults/orphan_block")
    assert answer["orphaned"]["blockHeight"] == height, answer
    got = h.inbox.wait("firing", "blockOrphaned", started, timeout=60, pool=POOL, height=str(height))
    check_delivery(got, "firing", "blockOrphaned")
    got = h.inbox.wait("resolved", "blockOrphaned", started, timeout=120, pool=POOL, height=str(height))
    check_delivery(got, "resolved", "blockOrphaned")


def invalid_share_spike(h: Harness) -> None:
    """30 % of the shares invalid: over the 1-minute window the rate passes 10 %; once the spike is off
    and has slid out of the window, the alert resolves."""
    h.fires_and_resolves("poolInvalidShares",
                         lambda: h.fault("invalid_share_spike", ratio=0.3),
                         lambda: h.fault("invalid_share_spike", on=False), labels={"pool": POOL}, timeout=120)


def failed_maintenance(h: Harness, worker_gate: TcpGate) -> None:
    """A vacuum the agent's worker cannot run (its database path is closed) raises maintenance_failed;
    the same action succeeding afterwards resolves it."""

    def vacuum() -> dict:
        answer = h.post(f"/api/admin/maintenance/vacuum?host={HOST}", {})
        assert answer.status_code == 202, answer.get_json()
        job_id = answer.get_json()["id"]

        def finished():
            state = h.get(f"/api/admin/maintenance/jobs/{job_id}").get_json()
            return state if state["status"] not in ("queued", "running") else None

        return wait_until(finished, 90, "the vacuum job to finish")

    def fail() -> None:
        worker_gate.close()
        state = vacuum()
        assert state["status"] == "failed", state

    def succeed() -> None:
        worker_gate.open()
        state = vacuum()
        assert state["status"] == "succeeded", state

    h.fires_and_resolves("maintenanceFailed", fail, succeed, labels={"action": "vacuum"})


# Quick scenarios, one after another.


def node_down(h: Harness) -> None:
    h.fires_and_resolves("nodeDown", lambda: h.fault("node_down"), lambda: h.fault("node_down", on=False),
                         also=(("collectorFailing", {"collector": "ergo_node"}),))


def flapping_peers(h: Harness) -> None:
    """No peers, on and off every 2 s for 16 s: a new alert episode each time, but at most one
    notification per group_interval; the last one says it is resolved."""
    started = time.time()
    for _ in range(4):
        h.fault("zero_peers")
        time.sleep(2)
        h.fault("zero_peers", on=False)
        time.sleep(2)
    flapped = time.time() - started
    h.inbox.wait("resolved", "nodeNoPeers", started, timeout=FLAP_GROUP_INTERVAL + WAIT)
    time.sleep(FLAP_GROUP_INTERVAL + 2)  # anything still to come would come now
    told = sorted({(at, payload["idempotencyKey"]) for at, payload, _ in h.inbox.about("nodeNoPeers", started)})
    with h.db() as conn:
        episodes = conn.execute("SELECT count(*) FILTER (WHERE a.fired_at IS NOT NULL) FROM alerts a "
                                "JOIN alert_rules r ON r.id = a.rule_id WHERE r.name = 'nodeNoPeers'").fetchone()[0]
    assert episodes >= 3, f"the condition should have fired repeatedly, got {episodes} episodes"
    assert 2 <= len(told) <= 1 + math.ceil((flapped + 2) / FLAP_GROUP_INTERVAL), (episodes, told)
    gaps = [b[0] - a[0] for a, b in zip(told, told[1:], strict=False)]
    assert all(gap >= FLAP_GROUP_INTERVAL - 1 for gap in gaps), gaps
    last = h.inbox.about("nodeNoPeers", told[-1][0])
    assert [a["status"] for _at, _p, a in last] == ["resolved"], last


def silenced_database_down(h: Harness, agent_gate: TcpGate) -> None:
    """Miningcore's database goes down while a silence covers databaseDown: the collector alert goes
    out, databaseDown fires but is held back; when the silence ends it is notified, still firing."""
    ends = datetime.now(UTC) + timedelta(seconds=SILENCE_SECONDS)
    answer = h.post("/api/admin/silences", {
        "matchers": [{"name": "alertname", "op": "=", "value": "databaseDown"},
                     {"name": "host", "op": "=", "value": HOST}],
        "endsAt": ends.strftime("%Y-%m-%dT%H:%M:%SZ"), "comment": "e2e: database swap"})
    assert answer.status_code == 201, answer.get_json()
    started = time.time()
    agent_gate.close()
    check_delivery(h.inbox.wait("firing", "collectorFailing", started, collector="postgresql"), "firing",
                   "collectorFailing")
    wait_until(lambda: alert_state(h, "databaseDown") == "firing", WAIT, "databaseDown to fire")
    assert datetime.now(UTC) < ends - timedelta(seconds=1), "databaseDown fired too late to test the silence"
    assert h.inbox.about("databaseDown", started) == [], "a silenced alert was notified"
    released = h.inbox.wait("firing", "databaseDown", started, timeout=SILENCE_SECONDS + WAIT)
    check_delivery(released, "firing", "databaseDown")
    assert released.received_at >= ends.timestamp() - 1, "notified before the silence ended"
    cleared = time.time()
    agent_gate.open()
    check_delivery(h.inbox.wait("resolved", "databaseDown", cleared), "resolved", "databaseDown")
    check_delivery(h.inbox.wait("resolved", "collectorFailing", cleared, collector="postgresql"), "resolved",
                   "collectorFailing")


def many_connections(h: Harness) -> None:
    """Enough client connections to pass 30 % of max_connections, then closed."""
    held: list[psycopg.Connection] = []
    dsn = h.stack["mc_dsn"]

    def connect() -> None:
        with psycopg.connect(dsn) as conn:
            maximum = int(conn.execute("SHOW max_connections").fetchone()[0])
            now = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                               ).fetchone()[0]
        assert now < 0.25 * maximum, f"{now} of {maximum} connections in use before the test"
        held.extend(psycopg.connect(dsn) for _ in range(math.ceil(0.3 * maximum) - now + 5))

    def close() -> None:
        for conn in held:
            conn.close()

    try:
        h.fires_and_resolves("databaseConnections", connect, close)
    finally:
        close()


def long_query(h: Harness) -> None:
    """A query that runs (pg_sleep) past maxDuration, then is cancelled."""
    sleeper = psycopg.connect(h.stack["mc_dsn"], autocommit=True)
    pid = sleeper.info.backend_pid

    def run() -> None:
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            sleeper.execute("SELECT pg_sleep(120)")

    thread = threading.Thread(target=run, daemon=True)

    def cancel() -> None:
        with psycopg.connect(h.stack["mc_dsn"], autocommit=True) as conn:
            conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)

    try:
        h.fires_and_resolves("databaseLongQuery", thread.start, cancel)
    finally:
        sleeper.close()


def disk_filling(h: Harness, mount: Path) -> None:
    """5 of the tmpfs's 8 MiB written: disk_usage (warning at 50 %) and a threshold rule on the used
    bytes fire; the file removed, both resolve."""
    fill = Path(f"/proc/{h.agent.proc.pid}/root") / mount.relative_to("/") / "fill"
    h.fires_and_resolves("diskSpace", lambda: fill.write_bytes(b"\0" * (5 * 2**20)), fill.unlink,
                         labels={"mount": str(mount)}, also=(("diskUsedBytes", {"mount": str(mount)}),))


def container_stopped(h: Harness, container) -> None:
    """Miningcore's container stops: containerUnhealthy fires; started again, it resolves, and the
    start counts as a restart (containerRestarts, at 1 restart in its 1-minute window)."""
    labels = {"container": container.name}
    started = time.time()

    def start() -> None:
        container.start()
        check_delivery(h.inbox.wait("firing", "containerRestarts", started, **labels), "firing", "containerRestarts")

    h.fires_and_resolves("containerUnhealthy", lambda: container.stop(timeout=5), start, labels=labels)


def container_restart_forgotten(h: Harness, container) -> None:
    """Once the restart has left the window, containerRestarts resolves."""
    got = h.inbox.wait("resolved", "containerRestarts", 0.0, timeout=120, container=container.name)
    check_delivery(got, "resolved", "containerRestarts")


def node_stalled(h: Harness) -> None:
    """The node stops at its height while the network goes on (poolsim's clock warped forward until
    it is 4 blocks ahead); once the node follows again, it catches up."""

    def stall() -> None:
        h.fault("node_stalled")
        for _ in range(10):
            state = control(h.stack, "GET", "/state")
            if state["node"]["maxPeerHeight"] - state["node"]["fullHeight"] >= 4:
                return
            control(h.stack, "POST", "/time/warp", seconds=600)
        raise AssertionError(f"the network did not move on: {state['node']}")

    def follow() -> None:
        h.fault("node_stalled", on=False)
        control(h.stack, "POST", "/time/warp", seconds=20)  # the node catches up in its next steps

    h.fires_and_resolves("nodeOutOfSync", stall, follow)


def pool_api_down(h: Harness) -> None:
    h.fires_and_resolves("poolOffline", lambda: h.fault("pool_api_down"), lambda: h.fault("pool_api_down", on=False),
                         labels={"pool": POOL}, also=(("collectorFailing", {"collector": "miningcore"}),))


def agent_silent(h: Harness) -> None:
    h.fires_and_resolves("agentSilent", h.agent.stop, h.start_agent)


def test_every_rule_fault_reaches_webhook_and_email_and_so_does_its_resolution(stack, webhook_sink, smtp_sink,
                                                                                session_dir):
    from devtools.dockerd import PrivateDockerd, build_busybox_image

    tmp = stack["tmp"]
    mount = tmp / "pool-data"
    mount.mkdir()
    (tmp / "alerts.json").write_text(json.dumps(alert_rules(mount), indent=2))
    flapping = {"name": "flapping", "matchers": [{"name": "alertname", "op": "=", "value": "nodeNoPeers"}],
                "groupIntervalSeconds": FLAP_GROUP_INTERVAL}
    (tmp / "integrations.json").write_text(json.dumps(channels(webhook_sink.url, smtp_sink.port, (flapping,)),
                                                      indent=2))
    pg_port = urlsplit(stack["mc_dsn"]).port
    agent_gate, worker_gate = TcpGate(pg_port).open(), TcpGate(pg_port).open()
    dockerd = PrivateDockerd("dockerd-alerting", base=session_dir).start()
    h = None
    try:
        docker = dockerd.client()
        image = build_busybox_image(docker)
        containers = {name: docker.containers.run(image, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                                                  detach=True, name=name, network_mode="none")
                      for name in ("ergo-miningcore-solo", "ergo-miningcore-postgres-solo")}  # pool.json's names
        stack["agent_env"].update({"DOCKER_ENABLED": "true", "DOCKER_HOST": dockerd.url})
        # A pool block found after the panel first hears of the host (poolsim's clock runs 5 minutes and
        # more ahead from now on), to be orphaned later: blocks found before that are history to the rule.
        control(stack, "POST", "/time/warp", seconds=300)
        control(stack, "POST", "/blocks/find")
        control(stack, "POST", "/time/warp", seconds=900)
        newest = control(stack, "GET", "/state")["blocks"]["newest"]
        assert newest["status"] == "pending" and newest["created"] > time.time() + 200, newest

        stack["panel_env"].update({"POOLWARDEN_ALERTS_CONFIG": str(tmp / "alerts.json"),
                                   "POOLWARDEN_INTEGRATIONS_CONFIG": str(tmp / "integrations.json"),
                                   "POOLWARDEN_ALERTS_EVALUATE_SECONDS": "1",
                                   "POOLWARDEN_NOTIFY_RETRY_INTERVALS": "1,2,4"})
        stack["run_engine"]()
        stack["run_notify_worker"]()
        stack["agent_env"]["MININGCORE_DB_DSN"] = through(stack["mc_dsn"], worker_gate.port)
        stack["run_worker"]()
        stack["agent_env"]["MININGCORE_DB_DSN"] = through(stack["mc_dsn"], agent_gate.port)
        wrapper = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f'mount -t tmpfs -o size={DISK_MIB}m poolwarden-e2e "$0" && exec "$@"', str(mount))
        h = Harness(stack, Inbox(webhook_sink, smtp_sink, explain(stack["pw_dsn"])), panel_client(stack), wrapper,
                    ("--interval", "1", "--config-dir", str(agent_config(tmp, mount))))
        h.start_agent()
        with h.db() as conn:
            def ready():
                return (conn.execute("SELECT count(*) FROM ingested_batches").fetchone()[0] >= 3
                        and conn.execute("SELECT count(*) FROM alert_rules").fetchone()[0]
                        == len(alert_rules(mount)["alerts"])
                        and conn.execute("SELECT count(*) FROM notify_routes").fetchone()[0] == 2)
            wait_until(ready, 60, "the agent's first batches, the rules and the routes in the panel")

        with ThreadPoolExecutor(3) as background:
            slow = [background.submit(orphaned_block, h, newest["height"]),
                    background.submit(invalid_share_spike, h),
                    background.submit(failed_maintenance, h, worker_gate)]
            container_stopped(h, containers["ergo-miningcore-solo"])
            slow.append(background.submit(container_restart_forgotten, h, containers["ergo-miningcore-solo"]))
            node_down(h)
            flapping_peers(h)
            many_connections(h)
            long_query(h)
            disk_filling(h, mount)
            slow[2].result()   # the vacuum's own silence (service=postgresql) must not overlap the next one
            silenced_database_down(h, agent_gate)
            slow[1].result()   # time warps make share rates jump: not while the spike is judged
            node_stalled(h)
            pool_api_down(h)
            agent_silent(h)
            slow[0].result()
            slow[3].result()

        for request in webhook_sink.requests:
            expected = "sha256=" + hmac.new(SIGNING_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
            assert request.headers["x-poolwarden-signature"] == expected
        assert_all_delivered_and_resolved(h)
        # told within seconds: the agent's interval, the rule's `for` (at most 3 s here) and the pipeline
        told = {name: fired for name, (fired, _resolved) in h.latencies.items()
                if name not in ("poolInvalidShares", "maintenanceFailed")}   # a sliding window, a job's run
        assert all(seconds < 12 for seconds in told.values()), h.latencies
        print("fault -> firing, fix -> resolved notification (s):", dict(sorted(h.latencies.items())))
    finally:
        if h is not None and h.agent is not None:
            h.agent.stop()   # before dockerd: its mount namespace was copied from the host's while dockerd ran
        agent_gate.close()
        worker_gate.close()
        dockerd.stop()
