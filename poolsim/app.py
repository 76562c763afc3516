"""``PoolSim``: the simulation, its database, its three HTTP servers and the thread that drives it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from poolsim.clock import SimClock
from poolsim.engine import Batch, Simulation, utc
from poolsim.faults import FaultBoard
from poolsim.logs import MiningcoreLogs
from poolsim.store import Store

log = logging.getLogger("poolsim")


class QuietHandler(WSGIRequestHandler):
    """No per-request stderr lines; ``Server`` header set by the app wrapper."""

    def log_request(self, *args, **kwargs):
        pass

    def log(self, *args, **kwargs):
        pass

    def version_string(self) -> str:
        return getattr(self.server, "server_header", "poolsim")

    def make_environ(self):
        # werkzeug drops headers with "_" in their name; the node's auth header is "api_key"
        environ = super().make_environ()
        environ["poolsim.api_key"] = self.headers.get("api_key")
        return environ


class SwitchableServer:
    """A threaded werkzeug server that can be closed (connection refused) and reopened on its port."""

    def __init__(self, host: str, port: int, app, server_header: str):
        self.host = host
        self.port = port
        self.app = app
        self.server_header = server_header
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            for attempt in range(50):
                try:
                    server = make_server(self.host, self.port, self.app, threaded=True, request_handler=QuietHandler)
                    break
                except OSError:
                    if attempt == 49 or self.port == 0:
                        raise
                    time.sleep(0.1)
            server.server_header = self.server_header
            server.daemon_threads = True
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"poolsim-http-{self.port}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class PoolSim:
    """A simulated Ergo pool usable in-process.

    ``PoolSim(seed=42, dsn=DSN).start()`` creates the schema, seeds history (or resumes an existing
    one), opens the Miningcore API, Ergo node and control servers and starts the clock;
    ``stop()`` closes everything. ``start_servers=False`` gives a sim without HTTP (drive it with
    ``advance``/``warp``/``step`` and read ``sim``/``store``). ``start`` (epoch seconds) fixes the
    sim's start time: two sims with the same seed and start hold the same state at the same sim time.
    """

    def __init__(self, seed: int = 42, dsn: str = "", *, pool_id: str = "ergo1", history_days: float = 3.0,
                 speed: float = 1.0, stats_interval: int = 120, payout_interval: int = 600,
                 log_dir: str | None = None, node_api_key: str = "hello", start: float | None = None,
                 paused: bool = False, host: str = "127.0.0.1", api_port: int = 0, node_port: int = 0,
                 control_port: int = 0, tick: float = 0.1):
        if not dsn:
            raise ValueError("a PostgreSQL DSN is required")
        self.seed = seed
        self.dsn = dsn
        self.pool_id = pool_id
        self.node_api_key = node_api_key
        self.host = host
        self.tick = tick
        self.start_time = float(int(start if start is not None else time.time()))
        self.faults = FaultBoard()
        self.logs = MiningcoreLogs(log_dir, pool_id)
        self.sim = Simulation(seed, pool_id, self.start_time, history_days=history_days,
                              stats_interval=stats_interval, payout_interval=payout_interval,
                              faults=self.faults, logs=self.logs)
        self.clock = SimClock(self.start_time, speed=speed, paused=paused)
        self.lock = threading.RLock()
        self.store: Store | None = None
        self.seeded = False
        self._ports = (api_port, node_port, control_port)
        self.api_server: SwitchableServer | None = None
        self.node_server: SwitchableServer | None = None
        self.control_server: SwitchableServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # ---------------------------------------------------------------- lifecycle
    def setup(self) -> PoolSim:
        """Connect, create the schema, seed or resume history. Raises DatabaseUnavailable."""
        self.store = Store(self.dsn, self.pool_id)
        try:
            self.store.ensure_schema()
            if self.store.has_history():
                self.sim.resume(self.store.load_snapshot())
                self.logs.log(self.start_time, "info", "Program", "poolsim resuming existing pool history")
            else:
                self.seeded = True
            self._advance_locked_to(self.start_time)
        except Exception:
            self.store.close()
            self.store = None
            raise
        self.logs.log(self.start_time, "info", "Program", f"Miningcore (poolsim seed {self.seed}) started")
        self.logs.flush()
        return self

    def start(self, start_servers: bool = True) -> PoolSim:
        if self.store is None:
            self.setup()
        if start_servers:
            from poolsim.control_api import ControlApi
            from poolsim.miningcore_api import MiningcoreApi
            from poolsim.node_api import NodeApi

            api_port, node_port, control_port = self._ports
            self.api_server = SwitchableServer(self.host, api_port, MiningcoreApi(self), "Kestrel")
            self.node_server = SwitchableServer(self.host, node_port, NodeApi(self), "ergo-node")
            self.control_server = SwitchableServer(self.host, control_port, ControlApi(self), "poolsim")
            for server in (self.api_server, self.node_server, self.control_server):
                server.start()
        self._thread = threading.Thread(target=self._run, name="poolsim-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for server in (self.control_server, self.api_server, self.node_server):
            if server is not None:
                server.stop()
        with self.lock:
            self.logs.flush()
            if self.store is not None:
                self.store.close()
                self.store = None

    def __enter__(self) -> PoolSim:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def urls(self) -> dict:
        return {"api": self.api_server.url if self.api_server else None,
                "node": self.node_server.url if self.node_server else None,
                "control": self.control_server.url if self.control_server else None,
                "pool_id": self.pool_id}

    # ---------------------------------------------------------------- driving
    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.apply_faults()
                self.advance()
                self.last_error = None
            except Exception as exc:  # keep simulating; report on /state
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                log.exception("poolsim step failed")

    def _advance_locked_to(self, target: float) -> int:
        batch = Batch()
        done = self.sim.advance_to(target, batch)
        self._flush(batch)
        return done

    def _flush(self, batch: Batch) -> None:
        balances = []
        for address in sorted(batch.dirty_balances):
            amount, created, updated = self.sim.balances[address]
            balances.append((self.pool_id, address, amount, utc(created), utc(updated)))
        self.store.flush(batch, balances)
        self.logs.flush()

    def advance(self) -> int:
        """Process every step up to the clock's current sim time."""
        with self.lock:
            self.faults.expire()
            if self.store is None:
                return 0
            return self._advance_locked_to(self.clock.now())

    def warp(self, seconds: float) -> int:
        self.clock.warp(seconds)
        return self.advance()

    def step(self, seconds: float) -> int:
        self.clock.step(seconds)
        return self.advance()

    def sync_servers(self) -> None:
        """Open or close the API and node ports according to the active faults."""
        self.faults.expire()
        for server, fault in ((self.api_server, "pool_api_down"), (self.node_server, "node_down")):
            if server is None:
                continue
            down = self.faults.is_active(fault)
            if down and server.running:
                server.stop()
            elif not down and not server.running:
                server.start()

    def apply_faults(self) -> None:
        """Make the ports and the miners follow the active faults now, not at the next step."""
        self.sync_servers()
        with self.lock:
            self.sim.apply_miners_leave()

    def now_dt(self) -> datetime:
        """Sim time of the state the APIs show (the last processed step)."""
        return utc(self.sim.t)

    def orphan_newest_pending(self):
        with self.lock:
            batch = Batch()
            block = self.sim.orphan_newest_pending(batch)
            self._flush(batch)
            return block

    def find_block(self) -> None:
        with self.lock:
            self.sim.force_find = True

    def state(self) -> dict:
        """The simulation's truth right now (for the control API's GET /state)."""
        with self.lock:
            s = self.sim
            online = s.connected_miners()
            counts = s.block_counts()
            newest = max(s.blocks, key=lambda b: b.created, default=None)
            return {
                "seed": self.seed,
                "poolId": self.pool_id,
                "simTime": s.t,
                "simTimeIso": utc(s.t).isoformat().replace("+00:00", "Z"),
                "clockTime": self.clock.now(),
                "startTime": self.start_time,
                "paused": self.clock.paused,
                "speed": self.clock.speed,
                "pool": {
                    "hashrate": s.pool_reported_hashrate(),
                    "trueHashrate": s.pool_true_hashrate(),
                    "miners": len(online),
                    "workers": sum(len(m.workers) for m in online),
                    "minerAddresses": sorted(m.address for m in online),
                    "minersAway": sorted(m.address for m in s.miners if m.away),
                    "roundEffort": s.round_effort,
                    "validShares": s.valid_shares,
                    "invalidShares": s.invalid_shares,
                    "walletBalance": s.wallet_nanoerg / 1e9,
                    "pendingBalances": float(sum(e[0] for e in s.balances.values())),
                    "totalPaid": float(s.total_paid),
                    "payments": s.payment_count,
                },
                "network": {"height": s.network_height, "difficulty": s.difficulty,
                            "hashrate": s.difficulty / 120},
                "node": {"fullHeight": s.node_height, "headersHeight": s.node_height,
                         "maxPeerHeight": s.max_peer_height, "peers": 0 if self.faults.is_active("zero_peers")
                         else s.peers, "difficulty": s.node_difficulty(),
                         "reachable": not self.faults.is_active("node_down")},
                "miningcore": {"blockHeight": s.mc_height + 1, "networkDifficulty": s.mc_difficulty,
                               "lastNetworkBlockTime": s.mc_last_block_time[0] if s.mc_last_block_time else None,
                               "connectedPeers": s.mc_peers,
                               "apiUp": bool(self.api_server and self.api_server.running)},
                "blocks": {**counts, "total": len(s.blocks),
                           "newest": {"height": newest.height, "status": newest.status,
                                      "created": newest.created} if newest else None},
                "faults": self.faults.snapshot(),
                "lastError": self.last_error,
            }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
