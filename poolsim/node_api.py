"""The Ergo node's REST API (the parts a pool and its monitor use), from the simulated node view.

Shapes follow ../shared/reference/ergo-node.md and fixtures/ergo: compact JSON, the node's error
shape ``{"error": code, "reason": ..., "detail": ...}``, ``api_key`` header on ``/wallet/*``.
"""

from __future__ import annotations

import time

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from poolsim.engine import POOL_ADDRESS, SECP256K1_ORDER, nbits
from poolsim.jsonfmt import node_dumps

MAX_HEADERS = 16384
JSON = "application/json"
GENESIS = "b0244dfc267baca974a4caee06120321562784303a8a688976ae56170e4d175b"
W_POINT = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
SCORE_BASE = 1892733410221985337219
VOTING_EPOCH = 1024
PROTECTED_PREFIXES = ("/wallet",)


def error(status: int, reason: str, detail: str | None) -> Response:
    return Response(node_dumps({"error": status, "reason": reason, "detail": detail}), status=status,
                    content_type=JSON)


def ok(obj) -> Response:
    return Response(node_dumps(obj), status=200, content_type=JSON)


class NodeApi:
    """WSGI app for the Ergo node port."""

    def __init__(self, poolsim):
        self.ps = poolsim
        self.url_map = Map([
            Rule("/info", endpoint="info"),
            Rule("/peers/connected", endpoint="peers_connected"),
            Rule("/peers/status", endpoint="peers_status"),
            Rule("/blocks/lastHeaders/<count>", endpoint="last_headers"),
            Rule("/blocks/at/<height>", endpoint="blocks_at"),
            Rule("/mining/candidate", endpoint="candidate"),
            Rule("/mining/rewardAddress", endpoint="reward_address"),
            Rule("/mining/rewardPublicKey", endpoint="reward_pk"),
            Rule("/wallet/status", endpoint="wallet_status"),
            Rule("/wallet/balances", endpoint="wallet_balances"),
            Rule("/wallet/addresses", endpoint="wallet_addresses"),
        ], strict_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        delay = self.ps.faults.param("slow_answers", "seconds")
        if delay:
            time.sleep(delay)
        try:
            endpoint, args = self.url_map.bind_to_environ(request.environ).match()
        except NotFound:
            return error(404, "not-found", "The requested resource could not be found.")
        except MethodNotAllowed:
            return error(405, "method-not-allowed", "HTTP method not allowed, supported methods: GET")
        if request.path.startswith(PROTECTED_PREFIXES) and self.api_key(request) != self.ps.node_api_key:
            return error(403, "forbidden", "The supplied authentication is not authorized to access this resource")
        with self.ps.lock:
            return getattr(self, endpoint)(request, **args)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def api_key(request: Request) -> str | None:
        return request.environ.get("poolsim.api_key") or request.headers.get("api_key")

    @property
    def s(self):
        return self.ps.sim

    def header_id(self, height: int) -> str:
        return self.s._hex("id", height)

    def peers_count(self) -> int:
        return 0 if self.ps.faults.is_active("zero_peers") else self.s.peers

    def header(self, height: int) -> dict:
        s = self.s
        difficulty = s.header_difficulty(height)
        nonce = s.pool_heights.get(height)
        pk = s.pool_pk if nonce else "02" + s._hex("pk", height % 977, 32)
        return {
            "id": self.header_id(height),
            "transactionsRoot": s._hex("txroot", height),
            "adProofsRoot": s._hex("adroot", height),
            "stateRoot": s._hex("stateroot", height, 33),
            "parentId": self.header_id(height - 1),
            "timestamp": s.header_time_ms(height),
            "extensionHash": s._hex("exthash", height),
            "powSolutions": {"pk": pk, "w": W_POINT, "n": nonce or s._hex("nonce", height, 8), "d": 0},
            "nBits": nbits(difficulty),
            "height": height,
            "difficulty": str(difficulty),
            "version": 3,
            "votes": "000000",
            "size": 221,
            "extensionId": s._hex("extid", height),
            "transactionsId": s._hex("txid", height),
            "adProofsId": s._hex("adid", height),
            "unparsedBytes": "",
        }

    # ---------------------------------------------------------------- endpoints
    def info(self, request: Request) -> Response:
        s = self.s
        height = s.node_height
        difficulty = s.node_difficulty()
        now_ms = int(self.ps.clock.now() * 1000)
        return ok({
            "name": "ergo-mainnet-6.0.4",
            "appVersion": "6.0.4",
            "network": "mainnet",
            "headersHeight": height,
            "fullHeight": height,
            "maxPeerHeight": s.max_peer_height,
            "bestHeaderId": self.header_id(height),
            "bestFullHeaderId": self.header_id(height),
            "previousFullHeaderId": self.header_id(height - 1),
            "difficulty": difficulty,
            "headersScore": SCORE_BASE + (height - 1612345) * difficulty,
            "fullBlocksScore": SCORE_BASE + (height - 1612345) * difficulty,
            "unconfirmedCount": s.unconfirmed,
            "stateRoot": s._hex("stateroot", height, 33),
            "stateType": "utxo",
            "stateVersion": self.header_id(height),
            "isMining": True,
            "isExplorer": False,
            "peersCount": self.peers_count(),
            "launchTime": int(s.start * 1000) - 7_878,
            "lastSeenMessageTime": int(s.last_seen_message * 1000) + 114,
            "lastMemPoolUpdateTime": int(s.last_mempool_update * 1000),
            "genesisBlockId": GENESIS,
            "parameters": {
                "height": height - height % VOTING_EPOCH,
                "blockVersion": 3,
                "storageFeeFactor": 1250000,
                "minValuePerByte": 360,
                "maxBlockSize": 1271009,
                "maxBlockCost": 8001091,
                "tokenAccessCost": 100,
                "inputCost": 2407,
                "dataInputCost": 100,
                "outputCost": 197,
                "subblocksPerBlock": None,
            },
            "eip27Supported": True,
            "eip37Supported": True,
            "currentTime": now_ms,
        })

    def peers_connected(self, request: Request) -> Response:
        s = self.s
        now_ms = int(s.t * 1000)
        peers = []
        for i, peer in enumerate(s.peer_table[: self.peers_count()]):
            entry = {
                "address": peer["address"],
                "lastMessage": now_ms - (i * 7919) % 9000,
                "lastHandshake": int((s.start - peer["handshake_ago"]) * 1000),
                "name": peer["name"],
                "connectionType": peer["connectionType"],
            }
            if "restApiUrl" in peer:
                entry["restApiUrl"] = peer["restApiUrl"]
            peers.append(entry)
        return ok(peers)

    def peers_status(self, request: Request) -> Response:
        return ok({"lastIncomingMessage": int(self.s.last_seen_message * 1000) + 114,
                   "currentSystemTime": int(self.ps.clock.now() * 1000)})

    def last_headers(self, request: Request, count: str) -> Response:
        try:
            n = int(count)
        except ValueError:
            return error(400, "bad.request", f"Invalid count: {count}")
        if n > MAX_HEADERS:
            return error(400, "bad.request", f"No more than {MAX_HEADERS} headers can be requested")
        if n <= 0:
            return ok([])
        top = self.s.node_height
        return ok([self.header(h) for h in range(max(1, top - n + 1), top + 1)])

    def blocks_at(self, request: Request, height: str) -> Response:
        try:
            h = int(height)
        except ValueError:
            return error(400, "bad.request", f"Invalid height: {height}")
        return ok([self.header_id(h)] if 0 < h <= self.s.node_height else [])

    def candidate(self, request: Request) -> Response:
        s = self.s
        difficulty = s.node_difficulty()
        height = s.node_height + 1
        return ok({"msg": s._hex("msg", height), "b": SECP256K1_ORDER // difficulty, "h": height,
                   "pk": s.pool_pk})

    def reward_address(self, request: Request) -> Response:
        return ok({"rewardAddress": "88dhgzEuTXaRvR2VKsnQYqqGe5Tdp4y6YbTk8v4cLMX1ahv1fiBMoe7bS6JSRj3ob1GxYk1QN4BUMjAd"})

    def reward_pk(self, request: Request) -> Response:
        return ok({"rewardPubkey": self.s.pool_pk})

    def wallet_status(self, request: Request) -> Response:
        return ok({"isInitialized": True, "isUnlocked": False, "changeAddress": "",
                   "walletHeight": self.s.node_height, "error": ""})

    def wallet_balances(self, request: Request) -> Response:
        return ok({"height": self.s.node_height, "balance": self.s.wallet_nanoerg, "assets": {}})

    def wallet_addresses(self, request: Request) -> Response:
        return ok([POOL_ADDRESS])
