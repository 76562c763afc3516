"""The simulated Ergo pool: network, node, Miningcore and miners, advanced in fixed sim steps.

Determinism: time is cut into ``STEP``-second steps on a grid that starts ``history_days`` before
the sim's start time. Step ``k`` draws its randomness from ``Random(seed, k)`` only, and the state
after step ``k`` is a pure function of the state before it, the step's RNG and the active faults.
So two sims with the same seed, start time and faults hold the same state at the same sim time,
however fast or slow they were driven there.

What moves:

- **network**: a block every ~120 s (each step has a 1/12 chance); difficulty drifts at each
  128-block epoch around ~2.4e15; networkHashrate = difficulty / 120.
- **miners**: ~12 addresses with 1-3 workers each; workers' hashrates random-walk around their
  base (~18 GH/s for the pool as Miningcore reports it, +15 % "bonus" included); miners go
  offline (mean 16 h online) and come back (mean 4 h away). Each worker submits ~1.5 shares per
  minute with a vardiff difficulty that makes Miningcore's hashrate formula give its hashrate.
- **pool blocks**: each network block is the pool's with probability poolHashrate /
  networkHashrate (true hashrate, without the +15 %). The seeded history also gets a few
  scripted finds (one of them orphaned) so that 3 days of history show every block status;
  ``force_find`` (control API ``POST /blocks/find``) makes the pool find the next network block.
- **payout runs** every ``payout_interval`` sim seconds, as Miningcore's PayoutManager: unseen
  pending blocks are classified (effort, hash, reward; or orphaned), confirmation progress is
  confirmations/720, confirmed blocks credit balances PPLNS-style (pool fee to the reward
  recipient "Reward for block N", miners "Reward for <qty> shares for block N") and delete the
  shares older than the block; balances >= minimumPayment are paid in one transaction.
- **stats cycles** every ``stats_interval`` sim seconds, as Miningcore's StatsRecorder: one
  poolstats row and one minerstats row per worker from the shares of the last 10 minutes
  (connectedMiners = addresses with a share in that window; none at all: "Reset performance stats").

Faults that change the simulation itself: ``miners_leave`` marks miners ``away`` (disconnected):
their shares are still drawn, so every other miner's shares stay exactly what they would have
been, but never submitted, and they count for nothing (block finds, /metrics connections,
PPLNS). ``payout_processor_down`` skips payout runs altogether.

Everything that must reach PostgreSQL is appended to a ``Batch``; ``poolsim.store`` writes it.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

from poolsim.faults import FaultBoard
from poolsim.logs import MiningcoreLogs

STEP = 10
BLOCK_TIME = 120
TWO32 = 2**32
SHARE_MULTIPLIER = 256
HASHRATE_BONUS = 1.15
MIN_CONFIRMATIONS = 720
HASHRATE_WINDOW = 600
BASE_DIFFICULTY = 2_404_351_766_609_920
START_HEIGHT = 1_612_345
DIFFICULTY_EPOCH = 128
BASE_POOL_HASHRATE = 18.0e9  # as Miningcore reports it (with the +15 %)
SHARES_PER_WORKER_PER_SECOND = 1.5 / 60
MINIMUM_PAYMENT = Decimal("0.5")
POOL_FEE_PERCENT = Decimal("1")
BLOCK_REWARD = Decimal("6")
SECP256K1_ORDER = 115792089237316195423570985008687907852837564279074904382605163141518161494337
POOL_ADDRESS = "9uiwT7XW2GJAQpUjDH14fGLkprGSrmaxMeEYrodjRcKXLfdQbsc"
NATURAL_ORPHAN_RATE = 0.03
SCRIPTED_FINDS = ((0.14, True), (0.35, False), (0.58, False), (0.90, False))
Q12 = Decimal("0.000000000001")
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
MINER_SOFTWARE = ("lolMiner 1.88", "TeamRedMiner/0.10.21", "SRBMiner-MULTI/2.5.2", "NBMiner/42.3")


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def format_quantity(value: float) -> str:
    """Miningcore's FormatUtil.FormatQuantity (1234 -> 1.23K)."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def nbits(difficulty: int) -> int:
    """Compact ("nBits") encoding of the target for a difficulty, like the node's header field."""
    target = SECP256K1_ORDER // max(difficulty, 1)
    size = (target.bit_length() + 7) // 8
    mantissa = target >> (8 * (size - 3)) if size > 3 else target << (8 * (3 - size))
    if mantissa & 0x800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


@dataclass
class Worker:
    name: str
    base: float  # true hashrate H/s
    hashrate: float
    ip: str
    useragent: str
    next_share: float = 0.0
    last_sample_nonzero: bool = False


@dataclass
class Miner:
    address: str
    workers: list[Worker]
    online: bool  # would be mining (its own comings and goings)
    away: bool = False  # disconnected by the miners_leave fault

    @property
    def connected(self) -> bool:
        return self.online and not self.away


@dataclass
class Block:
    id: int
    height: int
    network_difficulty: float  # Bitcoin diff1 units, as Miningcore stores it for Ergo
    nonce: str
    miner: str | None
    created: float
    status: str = "pending"
    confirmation_progress: float = 0.0
    effort: float | None = None
    reward: Decimal = Decimal("0E-12")
    hash: str | None = None
    # hidden truth, not in the DB until classification
    true_effort: float = 0.0
    doomed: bool = False
    round_work: dict[str, float] = field(default_factory=dict)
    round_shares: dict[str, int] = field(default_factory=dict)
    classified: bool = False

    def row(self, pool_id: str) -> tuple:
        return (self.id, pool_id, self.height, self.network_difficulty, self.status, None,
                self.confirmation_progress, self.effort, self.nonce, self.miner, self.reward, None,
                self.hash, utc(self.created))


@dataclass
class Batch:
    """Rows and changes produced by steps, waiting to be written to PostgreSQL in one go."""

    shares: list[tuple] = field(default_factory=list)
    poolstats: list[tuple] = field(default_factory=list)
    minerstats: list[tuple] = field(default_factory=list)
    balance_changes: list[tuple] = field(default_factory=list)
    payments: list[tuple] = field(default_factory=list)
    new_blocks: dict[int, Block] = field(default_factory=dict)
    dirty_blocks: dict[int, Block] = field(default_factory=dict)
    dirty_balances: set[str] = field(default_factory=set)
    share_cutoff: datetime | None = None

    def touch_block(self, block: Block) -> None:
        if block.id not in self.new_blocks:
            self.dirty_blocks[block.id] = block

    def delete_shares_before(self, cutoff: datetime) -> None:
        if self.share_cutoff is None or cutoff > self.share_cutoff:
            self.share_cutoff = cutoff
        self.shares = [s for s in self.shares if s[9] >= cutoff]

    def empty(self) -> bool:
        return not (self.shares or self.poolstats or self.minerstats or self.balance_changes or self.payments
                    or self.new_blocks or self.dirty_blocks or self.dirty_balances or self.share_cutoff)


class Simulation:
    """All simulated state. Not thread-safe: the owner (``PoolSim``) holds a lock around it."""

    def __init__(self, seed: int, pool_id: str, start: float, history_days: float = 3.0,
                 stats_interval: int = 120, payout_interval: int = 600,
                 faults: FaultBoard | None = None, logs: MiningcoreLogs | None = None):
        self.seed = int(seed)
        self.pool_id = pool_id
        self.start = float(int(start))
        self.history_seconds = int(round(history_days * 86400 / STEP)) * STEP
        self.origin = self.start - self.history_seconds
        self.stats_interval = max(STEP, int(round(stats_interval / STEP)) * STEP)
        # seeded history keeps at least Miningcore's default cadence so seeding stays fast
        self.history_stats_interval = max(self.stats_interval, 120)
        self.payout_interval = max(STEP, int(round(payout_interval / STEP)) * STEP)
        self.faults = faults or FaultBoard()
        self.logs = logs or MiningcoreLogs(None, pool_id)
        self.k = 0  # next step to process
        rng = random.Random(f"poolsim-setup:{self.seed}")

        # network and chain
        blocks_before = self.history_seconds // BLOCK_TIME
        self.chain_base = START_HEIGHT - blocks_before  # height at the origin
        self.difficulty = int(BASE_DIFFICULTY * math.exp(rng.gauss(0, 0.01)))
        self.chain: list[tuple[int, int]] = []  # heights above chain_base: (timestamp ms, difficulty)
        self.pool_heights: dict[int, str] = {}  # height -> nonce of the pool's blocks
        self.pool_pk = "03" + self._hex("pool-pk", 0, 32)
        # node and Miningcore views
        self.node_height = self.chain_base
        self.max_peer_height = self.chain_base
        self.mc_height = self.chain_base
        self.mc_difficulty = self.difficulty
        self.mc_last_block_time: tuple[float, int] | None = None
        self.peers = rng.randint(24, 34)
        self.mc_peers = self.peers
        self.unconfirmed = rng.randint(3, 30)
        self.last_seen_message = self.origin
        self.last_mempool_update = self.origin
        self.peer_table = self._make_peers(rng)

        # miners
        self.miners = self._make_miners(rng)
        self.fee_address = self._address(rng)
        self.window: deque[tuple[float, int, int, float]] = deque()
        self.round_work: dict[str, float] = {}
        self.round_shares: dict[str, int] = {}
        self.round_effort = 0.0
        self.invalid_acc = 0.0
        self.away_fault = None  # the miners_leave activation the miners' away flags follow

        # pool bookkeeping
        self.blocks: list[Block] = []
        self.next_block_id = 1
        self.balances: dict[str, list] = {}  # address -> [amount, created ts, updated ts]
        self.wallet_nanoerg = 41_520_003_311
        self.total_paid = Decimal("0")
        self.payment_count = 0
        self.force_find = False
        self._scripted_orphan = False
        self.scripted: dict[int, bool] = {}
        if self.history_seconds >= 6 * 3600:
            steps = self.history_seconds // STEP
            for fraction, orphan in SCRIPTED_FINDS:
                jitter = rng.uniform(-0.03, 0.03)
                self.scripted[int(steps * (fraction + jitter))] = orphan

        # counters since "process start" (the sim's start time), like prometheus-net's
        self.valid_shares = 0
        self.invalid_shares = 0
        self.submit_time_ms = 0.0
        self.stratum_subscribes = sum(len(m.workers) for m in self.miners if m.online)
        self.metrics_hashrate = 0.0
        self.gc_counts = [0, 0, 0]

    # ------------------------------------------------------------------ setup helpers
    def _hex(self, kind: str, n: int, size: int = 32) -> str:
        return hashlib.blake2b(f"{self.seed}:{kind}:{n}".encode(), digest_size=size).hexdigest()

    @staticmethod
    def _address(rng: random.Random) -> str:
        return "9" + "".join(rng.choice(BASE58) for _ in range(50))

    def _make_miners(self, rng: random.Random) -> list[Miner]:
        count = rng.randint(10, 13)
        weights = [rng.paretovariate(1.3) for _ in range(count)]
        # about 80 % of the miners are online at any time
        true_total = BASE_POOL_HASHRATE / HASHRATE_BONUS / 0.8
        miners = []
        for i, weight in enumerate(weights):
            base = true_total * weight / sum(weights)
            n_workers = rng.choice((1, 1, 2, 2, 3))
            names = [""] if n_workers == 1 and rng.random() < 0.3 else [f"rig{j + 1}" for j in range(n_workers)]
            split = [rng.uniform(0.5, 1.5) for _ in names]
            workers = [
                Worker(name=name, base=base * s / sum(split), hashrate=base * s / sum(split),
                       ip=f"10.{i}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       useragent=rng.choice(MINER_SOFTWARE))
                for name, s in zip(names, split, strict=True)
            ]
            miners.append(Miner(self._address(rng), workers, online=rng.random() < 0.8))
        if not any(m.online for m in miners):
            miners[0].online = True
        for miner in miners:
            for w in miner.workers:
                w.next_share = self.origin + rng.expovariate(SHARES_PER_WORKER_PER_SECOND)
        return miners

    def _make_peers(self, rng: random.Random) -> list[dict]:
        peers = []
        for i in range(48):
            entry = {
                "address": f"/{rng.randint(5, 220)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                           f"{rng.randint(1, 254)}:9030",
                "name": rng.choice(("ergo-mainnet-6.0.4", "ergo-mainnet-6.0.3", "ergo-mainnet-5.0.25",
                                    f"ergo-node-{i}")),
                "connectionType": rng.choice(("Incoming", "Outgoing")),
                "handshake_ago": rng.uniform(600, 5 * 86400),
            }
            if rng.random() < 0.15:
                entry["restApiUrl"] = f"https://node{i}.example.org"
            peers.append(entry)
        return peers

    # ------------------------------------------------------------------ derived views
    @property
    def t(self) -> float:
        """Sim time up to which the state has been computed."""
        return self.origin + self.k * STEP

    @property
    def network_height(self) -> int:
        return self.chain_base + len(self.chain)

    def header_time_ms(self, height: int) -> int:
        idx = height - self.chain_base - 1
        if idx >= 0:
            return self.chain[idx][0]
        return int((self.origin - (self.chain_base - height) * BLOCK_TIME) * 1000) - 17_003

    def header_difficulty(self, height: int) -> int:
        idx = height - self.chain_base - 1
        if 0 <= idx < len(self.chain):
            return self.chain[idx][1]
        return self.chain[0][1] if self.chain else self.difficulty

    def node_difficulty(self) -> int:
        return self.header_difficulty(self.node_height)

    def connected_miners(self) -> list[Miner]:
        return [m for m in self.miners if m.connected]

    def pool_true_hashrate(self) -> float:
        return sum(w.hashrate for m in self.miners if m.connected for w in m.workers)

    def pool_reported_hashrate(self) -> float:
        return self.pool_true_hashrate() * HASHRATE_BONUS

    def block_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "confirmed": 0, "orphaned": 0}
        for b in self.blocks:
            counts[b.status] += 1
        return counts

    def is_live(self, ts: float) -> bool:
        return ts >= self.start

    # ------------------------------------------------------------------ advancing
    def advance_to(self, target: float, batch: Batch) -> int:
        """Process every whole step that ends at or before ``target``; returns how many."""
        done = 0
        while self.origin + (self.k + 1) * STEP <= target:
            self._step(batch)
            done += 1
        return done

    def _log(self, ts: float, level: str, logger: str, message: str) -> None:
        self.logs.log(ts, level, logger, message)

    def apply_miners_leave(self) -> None:
        """Make the miners' ``away`` flags follow the ``miners_leave`` fault (on, changed or cleared).

        Called at each live step and by ``PoolSim`` as soon as the fault changes, so disconnections
        show at once (the /metrics connections gauge is live in Miningcore). The leavers are the first
        ``ceil(ratio x connected)`` connected miners by address; with ratio 1 every miner, so that
        none connects while the fault lasts. Miners coming back (re)subscribe.
        """
        fault = self.faults.get("miners_leave") if self.is_live(self.t) else None
        if fault is self.away_fault:
            return
        self.away_fault = fault
        returning = [m for m in self.miners if m.away]
        for miner in self.miners:
            miner.away = False
        if fault is not None:
            ratio = fault.params["ratio"]
            connected = sorted(self.connected_miners(), key=lambda m: m.address)
            if ratio >= 1:
                leaving = self.miners
            else:
                leaving = connected[:max(1, math.ceil(ratio * len(connected) - 1e-9))] if connected else []
            for miner in leaving:
                miner.away = True
        self.stratum_subscribes += sum(len(m.workers) for m in returning if m.connected)

    def _step(self, batch: Batch) -> None:
        k = self.k
        t0 = self.origin + k * STEP
        t1 = t0 + STEP
        rng = random.Random(self.seed * 1_000_003 + k)
        live = self.is_live(t0)
        faults = self.faults if live else None
        active = set(faults.names()) if faults else set()
        node_down = "node_down" in active
        node_following = not (node_down or "node_stalled" in active or "zero_peers" in active)

        if live:
            self.apply_miners_leave()
        self._move_miners(rng, t0)

        # network block in this step?
        block_ts = t0 + rng.random() * STEP if rng.random() < STEP / BLOCK_TIME else None
        scripted = self.scripted.pop(k, None) if not live else None
        if scripted is not None:
            self.force_find = True
            self._scripted_orphan = scripted

        shares = []
        for mi, miner in enumerate(self.miners):
            if not miner.online:
                continue
            for wi, w in enumerate(miner.workers):
                rate = SHARES_PER_WORKER_PER_SECOND
                diff = w.hashrate / (rate * TWO32 * SHARE_MULTIPLIER)
                while w.next_share < t1:
                    shares.append((w.next_share, mi, wi, diff))
                    w.next_share += rng.expovariate(rate)
        # miners away (miners_leave) drew their shares like the others but submit none
        shares = sorted(s for s in shares if not self.miners[s[1]].away)

        block_done = block_ts is None
        for ts, mi, wi, diff in shares:
            if not block_done and ts > block_ts:
                self._network_block(rng, block_ts, batch, node_following, node_down, active)
                block_done = True
            self._record_share(batch, ts, mi, wi, diff, live)
        if not block_done:
            self._network_block(rng, block_ts, batch, node_following, node_down, active)

        if live:
            ratio = self.faults.param("invalid_share_spike", "ratio", 0.0017) or 0.0017
            self.invalid_acc += len(shares) * ratio / (1 - ratio)
            n_invalid = int(self.invalid_acc)
            self.invalid_acc -= n_invalid
            self.invalid_shares += n_invalid
            self.submit_time_ms += sum(0.3 + (i % 7) * 0.11 for i in range(len(shares) + n_invalid))
            self.gc_counts[0] += 1 if k % 3 == 0 else 0
            self.gc_counts[1] += 1 if k % 11 == 0 else 0
            self.gc_counts[2] += 1 if k % 53 == 0 else 0

        # node catches up after a stall / outage; Miningcore follows the node
        if node_following and self.node_height < self.network_height:
            self.node_height = min(self.network_height, self.node_height + 40)
        if "zero_peers" not in active:
            self.max_peer_height = self.network_height
            self.last_seen_message = t1 - (t1 % 30)
        if node_down:
            if live:
                self._log(t0 + 0.5, "error", self.pool_id,
                          "Error during UpdateJob: Connection refused (node:9053)")
        elif self.mc_height != self.node_height:
            self._mc_notice(t1 - 0.01, rng)
        if not node_down:
            self.mc_peers = 0 if "zero_peers" in active else self.peers

        # peers and mempool wander
        if rng.random() < 0.15:
            self.peers = min(40, max(18, self.peers + rng.choice((-1, 1))))
        self.unconfirmed = max(0, min(120, self.unconfirmed + rng.randint(-3, 3)))
        self.last_mempool_update = t1 - rng.random() * 3

        self.k += 1
        if (t1 - self.origin) % self.payout_interval == 0:
            self._payout_run(rng, round(t1 + 0.2 + rng.random() * 0.5, 6), batch, node_down, active)
        interval = self.stats_interval if live else self.history_stats_interval
        if (t1 - self.origin) % interval == 0:
            self._stats_cycle(rng, t1, batch)

    def _move_miners(self, rng: random.Random, t0: float) -> None:
        for miner in self.miners:
            if miner.online:
                if rng.random() < STEP / (16 * 3600) and sum(m.online for m in self.miners) > 3:
                    miner.online = False
            elif rng.random() < STEP / (4 * 3600):
                miner.online = True
                if self.is_live(t0) and not miner.away:
                    self.stratum_subscribes += len(miner.workers)
                for w in miner.workers:
                    w.next_share = t0 + rng.expovariate(SHARES_PER_WORKER_PER_SECOND)
            for w in miner.workers:
                w.hashrate *= math.exp(rng.gauss(0, 0.01))
                w.hashrate += (w.base - w.hashrate) * 0.02

    def _record_share(self, batch: Batch, ts: float, mi: int, wi: int, diff: float, live: bool) -> None:
        miner = self.miners[mi]
        w = miner.workers[wi]
        ts = round(ts, 6)
        net_diff = self.mc_difficulty / TWO32
        batch.shares.append((self.pool_id, self.mc_height + 1, diff, net_diff, miner.address, w.name or None,
                             w.useragent, w.ip, None, utc(ts)))
        self.window.append((ts, mi, wi, diff))
        work = diff * SHARE_MULTIPLIER / net_diff
        self.round_effort += work
        self.round_work[miner.address] = self.round_work.get(miner.address, 0.0) + work
        self.round_shares[miner.address] = self.round_shares.get(miner.address, 0) + 1
        if live:
            self.valid_shares += 1

    def _mc_notice(self, ts: float, rng: random.Random) -> None:
        self.mc_height = self.node_height
        self.mc_difficulty = self.node_difficulty()
        self.mc_last_block_time = (round(ts, 6), rng.randint(1, 9))
        self._log(ts, "info", self.pool_id, f"Detected new block {self.mc_height + 1}")

    def _network_block(self, rng: random.Random, ts: float, batch: Batch, node_following: bool,
                       node_down: bool, active: set[str]) -> None:
        height = self.network_height + 1
        if height % DIFFICULTY_EPOCH == 0:
            drift = math.exp(rng.gauss(0, 0.015))
            target = self.difficulty * drift + (BASE_DIFFICULTY - self.difficulty) * 0.1
            self.difficulty = (int(target) >> 20) << 20
        self.chain.append((int(ts * 1000), self.difficulty))
        if node_following and self.node_height == height - 1:
            self.node_height = height
            if not node_down:
                self._mc_notice(ts + 0.05 + rng.random() * 0.3, rng)
        # did the pool find it? It mines on Miningcore's template, which must be current, and with
        # the miners connected now (none at all: not even a forced find).
        hashrate = self.pool_true_hashrate()
        can_find = node_following and "block_drought" not in active and self.mc_height == height and hashrate > 0
        chance = hashrate / (self.difficulty / BLOCK_TIME)
        lucky = rng.random() < chance
        if can_find and (lucky or self.force_find):
            orphan = getattr(self, "_scripted_orphan", False) and self.force_find
            self._scripted_orphan = False
            self.force_find = False
            doomed = orphan or "orphan_next_block" in active or rng.random() < NATURAL_ORPHAN_RATE
            if "orphan_next_block" in active:
                self.faults.clear("orphan_next_block")
            self._pool_block(rng, height, ts, batch, doomed)

    def _pool_block(self, rng: random.Random, height: int, ts: float, batch: Batch, doomed: bool) -> None:
        online = self.connected_miners()
        weights = [sum(w.hashrate for w in m.workers) for m in online]
        finder = rng.choices(online, weights=weights)[0] if online else None
        nonce = f"{rng.getrandbits(64):016x}"
        created = round(ts + 0.05 + rng.random() * 0.4, 6)
        block = Block(id=self.next_block_id, height=height, network_difficulty=self.mc_difficulty / TWO32,
                      nonce=nonce, miner=finder.address if finder else None, created=created,
                      true_effort=self.round_effort, doomed=doomed, round_work=dict(self.round_work),
                      round_shares=dict(self.round_shares))
        self.next_block_id += 1
        self.blocks.append(block)
        self.pool_heights[height] = nonce
        batch.new_blocks[block.id] = block
        self.round_effort = 0.0
        self.round_work = {}
        self.round_shares = {}
        self._log(created, "info", self.pool_id, f"Submitting block {height} [{nonce}]")
        self._log(created + 0.02, "info", self.pool_id,
                  f"Daemon accepted block {height} [{nonce}] submitted by {block.miner}")

    # ------------------------------------------------------------------ payouts
    def _credit(self, batch: Batch, address: str, amount: Decimal, usage: str, ts: float) -> None:
        amount = amount.quantize(Q12, rounding=ROUND_DOWN)
        if amount == 0:
            return
        entry = self.balances.get(address)
        if entry is None:
            entry = self.balances[address] = [Decimal("0E-12"), ts, ts]
        entry[0] = (entry[0] + amount).quantize(Q12)
        entry[2] = ts
        batch.dirty_balances.add(address)
        batch.balance_changes.append((self.pool_id, address, amount, usage, None, utc(ts)))

    def _orphan(self, block: Block, ts: float, batch: Batch, reason: str = "nonce mismatch") -> None:
        block.status = "orphaned"
        block.reward = Decimal("0E-12")
        block.confirmation_progress = 0.0
        block.hash = None
        if block.effort is None:
            block.effort = block.true_effort
        block.classified = True
        batch.touch_block(block)
        self._log(ts, "info", self.pool_id, f"Block {block.height} classified as orphaned due to {reason}")

    def orphan_newest_pending(self, batch: Batch) -> Block | None:
        pending = [b for b in self.blocks if b.status == "pending"]
        if not pending:
            return None
        block = max(pending, key=lambda b: b.created)
        self._orphan(block, self.t, batch, "pk mismatch")
        return block

    def _payout_run(self, rng: random.Random, ts: float, batch: Batch, node_down: bool, active: set[str]) -> None:
        if "payout_processor_down" in active:
            return  # the payout loop is not running: nothing is classified, credited, paid or logged
        if node_down:
            self._log(ts, "error", "PayoutManager",
                      f"Error while processing payout for pool {self.pool_id}: Connection refused")
            return
        updated = 0
        for block in [b for b in self.blocks if b.status == "pending"]:
            confirmations = max(0, self.node_height - block.height)
            if not block.classified:
                if block.doomed:
                    self._orphan(block, ts, batch)
                    updated += 1
                    continue
                block.classified = True
                block.effort = block.true_effort
                block.hash = self._hex("id", block.height)
                block.reward = (BLOCK_REWARD + Decimal(rng.randint(0, 30_000_000)) / Decimal(10**9)).quantize(Q12)
            progress = min(1.0, confirmations / MIN_CONFIRMATIONS)
            if progress != block.confirmation_progress or block.id in batch.new_blocks:
                block.confirmation_progress = progress
                batch.touch_block(block)
                updated += 1
            if confirmations >= MIN_CONFIRMATIONS:
                block.status = "confirmed"
                block.confirmation_progress = 1.0
                batch.touch_block(block)
                self._log(ts, "info", self.pool_id,
                          f"Unlocked block {block.height} worth {block.reward.normalize():f} ERG")
                self._distribute(block, ts, batch)
        if not updated:
            self._log(ts, "info", "PayoutManager", f"No updated blocks for pool {self.pool_id}")
        self._pay(rng, ts + 0.3, batch, active)

    def _distribute(self, block: Block, ts: float, batch: Batch) -> None:
        reward = block.reward
        fee = (reward * POOL_FEE_PERCENT / 100).quantize(Q12, rounding=ROUND_DOWN)
        self._credit(batch, self.fee_address, fee, f"Reward for block {block.height}", ts)
        remaining = reward - fee
        total_work = sum(block.round_work.values())
        if total_work > 0:
            for address, work in sorted(block.round_work.items()):
                shares = block.round_shares.get(address, 0)
                self._credit(batch, address, remaining * Decimal(work / total_work),
                             f"Reward for {format_quantity(shares)} shares for block {block.height}", ts)
        elif block.miner:
            self._credit(batch, block.miner, remaining, f"Reward for block {block.height}", ts)
        self.wallet_nanoerg += int(reward * 10**9)
        batch.delete_shares_before(utc(block.created))

    def _pay(self, rng: random.Random, ts: float, batch: Batch, active: set[str]) -> None:
        due = sorted((a, e[0]) for a, e in self.balances.items() if e[0] >= MINIMUM_PAYMENT)
        if not due:
            self._log(ts, "info", "PayoutManager",
                      f"No balances over configured minimum payout for pool {self.pool_id}")
            return
        total = sum(amount for _, amount in due)
        if "payment_failure" in active:
            self._log(ts, "error", self.pool_id,
                      "Payment transaction failed: Wallet is locked or insufficient funds "
                      "(node answered 400 bad.request on /wallet/payment/send)")
            self._log(ts + 0.01, "error", "PayoutManager", "Payment processing failed")
            return
        total_nano = int(total * 10**9) + 1_000_000
        if total_nano > self.wallet_nanoerg:
            short = Decimal(total_nano - self.wallet_nanoerg) / Decimal(10**9)
            self._log(ts, "warn", self.pool_id, f"Wallet balance currently short of {short:f}. Will try again.")
            return
        tx = f"{rng.getrandbits(256):064x}"
        self._log(ts, "info", self.pool_id, f"Paying {total:f} ERG to {len(due)} addresses")
        for address, amount in due:
            batch.payments.append((self.pool_id, "ERG", address, amount, tx, utc(ts)))
            self._credit(batch, address, -amount, "Balance reset after payment", ts)
            self.total_paid += amount
            self.payment_count += 1
        self.wallet_nanoerg -= total_nano
        self._log(ts + 0.4, "info", self.pool_id, f"Payment transaction id: {tx}")

    # ------------------------------------------------------------------ stats
    def _stats_cycle(self, rng: random.Random, ts: float, batch: Batch) -> None:
        since = ts - HASHRATE_WINDOW
        while self.window and self.window[0][0] < since:
            self.window.popleft()
        per_worker: dict[tuple[int, int], list] = {}
        for _, mi, wi, diff in self.window:
            acc = per_worker.setdefault((mi, wi), [0.0, 0])
            acc[0] += diff
            acc[1] += 1
        factor = TWO32 * SHARE_MULTIPLIER / HASHRATE_WINDOW * HASHRATE_BONUS
        created = utc(round(ts + 0.1 + rng.random() * 0.8, 6))
        pool_diff = sum(v[0] for v in per_worker.values())
        pool_count = sum(v[1] for v in per_worker.values())
        miners_seen = {mi for mi, _ in per_worker}
        if not per_worker:
            self._log(ts, "info", "StatsRecorder", f"[{self.pool_id}] Reset performance stats for pool")
        lbt = utc(self.mc_last_block_time[0]) if self.mc_last_block_time else None
        batch.poolstats.append((self.pool_id, len(miners_seen), float(math.floor(pool_diff * factor)),
                                float(int(pool_count / HASHRATE_WINDOW)), self.mc_difficulty / BLOCK_TIME,
                                float(self.mc_difficulty), lbt, self.mc_height + 1, self.mc_peers, created))
        last_gauge = 0.0
        for mi in sorted(miners_seen, key=lambda i: self.miners[i].address):
            miner = self.miners[mi]
            total = 0.0
            for wi, w in enumerate(miner.workers):
                acc = per_worker.get((mi, wi))
                if acc:
                    hashrate = acc[0] * factor
                    total += hashrate
                    batch.minerstats.append((self.pool_id, miner.address, w.name, hashrate,
                                             round(acc[1] / HASHRATE_WINDOW, 3), created))
            last_gauge = total
        # workers that dropped out get one zero sample (and reset the buggy gauge to 0)
        for mi, miner in enumerate(self.miners):
            for wi, w in enumerate(miner.workers):
                if (mi, wi) in per_worker:
                    w.last_sample_nonzero = True
                elif w.last_sample_nonzero:
                    w.last_sample_nonzero = False
                    batch.minerstats.append((self.pool_id, miner.address, w.name, 0.0, 0.0, created))
                    last_gauge = 0.0
        self.metrics_hashrate = last_gauge

    # ------------------------------------------------------------------ resuming from a DB
    def resume(self, snapshot: dict) -> None:
        """Continue from a database that already holds history (written by an earlier run)."""
        old_origin = self.origin
        self.origin = self.start
        self.history_seconds = 0
        self.scripted = {}
        last = snapshot.get("last_poolstats")
        if last:
            elapsed = max(0.0, self.start - last["created"].timestamp())
            height = int(last["blockheight"]) - 1 + int(elapsed // BLOCK_TIME)
            self.difficulty = int(last["networkdifficulty"]) or self.difficulty
        else:
            height = START_HEIGHT
        self.chain_base = height
        self.node_height = self.max_peer_height = self.mc_height = height
        self.mc_difficulty = self.difficulty
        self.blocks = snapshot.get("blocks", [])
        for b in self.blocks:
            self.pool_heights[b.height] = b.nonce
        self.next_block_id = max([b.id for b in self.blocks], default=0) + 1
        self.balances = snapshot.get("balances", {})
        self.total_paid = snapshot.get("total_paid", Decimal("0"))
        self.round_effort = snapshot.get("round_effort", 0.0)
        for miner in self.miners:
            for w in miner.workers:
                w.next_share = self.start + (w.next_share - old_origin)
