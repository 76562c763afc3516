"""Miningcore's REST API and ``/metrics``, computed from the database the way Miningcore does.

Routes, paging, error bodies and JSON shapes follow ../shared/reference/miningcore.md §1-§3:
zero-based ``page``, ``pageSize`` 15, ``pageCount = floor(total / pageSize)``, plain-text error
bodies with ``Content-Type: application/json``, nulls omitted, decimals with 12 places.
"""

from __future__ import annotations

import time
from decimal import Decimal

from psycopg.rows import dict_row
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from poolsim.engine import BLOCK_TIME, POOL_ADDRESS, utc
from poolsim.jsonfmt import LiveTime, format_float, miningcore_dumps

JSON = "application/json; charset=utf-8"
EXPLORER = "https://explorer.ergoplatform.com/en"
MINER_STATS_MAX_AGE = 20 * 60
BLOCK_STATUS = {"pending": "pending", "orphaned": "orphaned", "confirmed": "confirmed",
                "1": "pending", "2": "orphaned", "3": "confirmed"}
SAMPLE_RANGE = {"day": "Day", "month": "Month", "hour": "Hour", "1": "Day", "2": "Month", "3": "Hour"}
SAMPLE_INTERVAL = {"hour": "Hour", "day": "Day", "1": "Hour", "2": "Day"}

COIN = {"type": "ERG", "name": "Ergo", "symbol": "ERG", "website": "", "market": "", "family": "ergo",
        "algorithm": "Autolykos", "twitter": "", "discord": "", "telegram": "", "canonicalName": "Ergo"}
PORTS = {
    "3056": {"listenAddress": "0.0.0.0", "name": "GPU - low diff", "difficulty": 1.0,
             "varDiff": {"minDiff": 0.5, "maxDiff": 1000.0, "targetTime": 15.0, "retargetTime": 90.0,
                         "variancePercent": 30.0},
             "tls": False, "tlsAuto": False},
    "3057": {"listenAddress": "0.0.0.0", "name": "Farms - high diff", "difficulty": 8.0,
             "varDiff": {"minDiff": 4.0, "maxDelta": 500.0, "targetTime": 15.0, "retargetTime": 90.0,
                         "variancePercent": 30.0},
             "tls": False, "tlsAuto": False},
}

ROUTES = [
    ("/api/pools", "pools"),
    ("/api/pools/<pool_id>", "pool"),
    ("/api/pools/<pool_id>/blocks", "blocks"),
    ("/api/v2/pools/<pool_id>/blocks", "blocks_v2"),
    ("/api/pools/<pool_id>/payments", "payments"),
    ("/api/v2/pools/<pool_id>/payments", "payments_v2"),
    ("/api/pools/<pool_id>/performance", "performance"),
    ("/api/pools/<pool_id>/miners", "miners"),
    ("/api/pools/<pool_id>/miners/<address>", "miner"),
    ("/api/pools/<pool_id>/miners/<address>/payments", "miner_payments"),
    ("/api/v2/pools/<pool_id>/miners/<address>/payments", "miner_payments_v2"),
    ("/api/pools/<pool_id>/miners/<address>/balancechanges", "miner_balance_changes"),
    ("/api/v2/pools/<pool_id>/miners/<address>/balancechanges", "miner_balance_changes_v2"),
    ("/api/blocks", "all_blocks"),
    ("/api/admin/stats/gc", "admin_gc"),
    ("/api/admin/pools/<pool_id>/miners/<address>/getbalance", "admin_balance"),
    ("/api/health-check", "health_check"),
    ("/api/help", "help"),
    ("/metrics", "metrics"),
]


class ApiError(Exception):
    """Miningcore's ApiException: plain message body, JSON content type."""

    def __init__(self, message: str, status: int = 200):
        super().__init__(message)
        self.message = message
        self.status = status


class BadQuery(Exception):
    def __init__(self, name: str, value: str):
        super().__init__(name)
        self.name = name
        self.value = value


def text(body: str, status: int = 200, content_type: str = JSON) -> Response:
    return Response(body, status=status, content_type=content_type)


def as_json(obj, status: int = 200) -> Response:
    return Response(miningcore_dumps(obj), status=status, content_type=JSON)


def _uint(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadQuery(name, raw) from exc
    if value < 0:
        raise BadQuery(name, raw)
    return value


def _enum(request: Request, name: str, table: dict, default: str) -> str:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return table[raw.strip().lower()]
    except KeyError as exc:
        raise BadQuery(name, raw) from exc


def _page_count(total: int, page_size: int) -> int:
    return total // page_size if page_size else 0


class MiningcoreApi:
    """WSGI app for the Miningcore API port."""

    def __init__(self, poolsim):
        self.ps = poolsim
        self.url_map = Map([Rule(path, endpoint=endpoint, methods=["GET"]) for path, endpoint in ROUTES],
                           strict_slashes=False)

    # ---------------------------------------------------------------- plumbing
    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.dispatch(request)
        self.ps.logs.api(self.ps.sim.t, f"Request finished HTTP/1.1 {request.method} {request.full_path.rstrip('?')}"
                                        f" - {response.status_code}")
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        faults = self.ps.faults
        delay = faults.param("slow_answers", "seconds")
        if delay:
            time.sleep(delay)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return Response(b"", status=404)
        except MethodNotAllowed:
            return Response(b"", status=405)
        if faults.is_active("pool_api_500") and endpoint not in ("health_check", "metrics"):
            return text("An unhandled exception occurred while processing the request.\n"
                        "Npgsql.NpgsqlException (0x80004005): Exception while reading from stream", 500,
                        "text/plain; charset=utf-8")
        if "pool_id" in args and args["pool_id"] != self.ps.pool_id and endpoint != "admin_balance":
            return text(f"Unknown pool {args['pool_id']}", 404)
        try:
            return getattr(self, endpoint)(request, **args)
        except ApiError as exc:
            return text(exc.message, exc.status)
        except BadQuery as exc:
            return as_json({"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                            "title": "One or more validation errors occurred.", "status": 400,
                            "errors": {exc.name: [f"The value '{exc.value}' is not valid."]}}, 400)

    # ---------------------------------------------------------------- pool info
    def network_stats(self) -> dict:
        s = self.ps.sim
        with self.ps.lock:
            lbt = s.mc_last_block_time
            return {
                "networkType": "mainnet",
                "networkHashrate": s.mc_difficulty / BLOCK_TIME,
                "networkDifficulty": float(s.mc_difficulty),
                "lastNetworkBlockTime": LiveTime(utc(lbt[0]), lbt[1]) if lbt else None,
                "blockHeight": s.mc_height + 1,
                "connectedPeers": s.mc_peers,
                "rewardType": "POW",
            }

    def pool_info(self, conn, top_miners_range: int) -> dict:
        pool_id = self.ps.pool_id
        now = self.ps.now_dt()
        cur = conn.cursor(row_factory=dict_row)
        stats = cur.execute(
            "SELECT connectedminers, poolhashrate, sharespersecond FROM poolstats WHERE poolid = %s "
            "ORDER BY created DESC LIMIT 1", (pool_id,)).fetchone()
        total_paid = conn.execute("SELECT SUM(amount) FROM payments WHERE poolid = %s", (pool_id,)).fetchone()[0]
        total_blocks = conn.execute("SELECT COUNT(*) FROM blocks WHERE poolid = %s", (pool_id,)).fetchone()[0]
        last_block = conn.execute("SELECT created FROM blocks WHERE poolid = %s ORDER BY created DESC LIMIT 1",
                                  (pool_id,)).fetchone()
        effort = 0.0
        if last_block:
            value = conn.execute(
                "SELECT SUM(difficulty * 256 / networkdifficulty) FROM shares WHERE poolid = %s "
                "AND created > %s AND created < %s", (pool_id, last_block[0], now)).fetchone()[0]
            effort = float(value or 0.0)
        top = self.top_miners(conn, top_miners_range, 0, 15)
        return {
            "id": pool_id,
            "coin": COIN,
            "ports": PORTS,
            "paymentProcessing": {"enabled": True, "minimumPayment": Decimal("0.5"), "payoutScheme": "PPLNS",
                                  "payoutSchemeConfig": [[[]]], "extra": {"minimumConfirmations": 720}},
            "clientConnectionTimeout": 600,
            "jobRebroadcastTimeout": 10,
            "blockRefreshInterval": 500,
            "poolFeePercent": 1.0,
            "address": POOL_ADDRESS,
            "addressInfoLink": f"{EXPLORER}/addresses/{POOL_ADDRESS}",
            "poolStats": {"connectedMiners": stats["connectedminers"], "poolHashrate": int(stats["poolhashrate"]),
                          "sharesPerSecond": int(stats["sharespersecond"])} if stats else None,
            "networkStats": self.network_stats(),
            "topMiners": top,
            "totalPaid": total_paid if total_paid is not None else Decimal("0"),
            "totalBlocks": total_blocks,
            "lastPoolBlockTime": last_block[0] if last_block else None,
            "poolEffort": effort,
        }

    def top_miners(self, conn, hours: int, page: int, page_size: int) -> list[dict]:
        since = utc(self.ps.sim.t - hours * 3600)
        rows = conn.execute(
            """
            WITH tmp AS (
                SELECT ms.miner, ms.hashrate, ms.sharespersecond,
                       ROW_NUMBER() OVER (PARTITION BY ms.miner ORDER BY ms.hashrate DESC) AS rk
                FROM (SELECT miner, SUM(hashrate) AS hashrate, SUM(sharespersecond) AS sharespersecond
                      FROM minerstats WHERE poolid = %s AND created >= %s
                      GROUP BY miner, created) ms)
            SELECT t.miner, t.hashrate, t.sharespersecond FROM tmp t WHERE t.rk = 1
            ORDER BY t.hashrate DESC, t.miner OFFSET %s LIMIT %s
            """, (self.ps.pool_id, since, page * page_size, page_size)).fetchall()
        return [{"miner": m, "hashrate": h, "sharesPerSecond": sps} for m, h, sps in rows]

    def pools(self, request: Request) -> Response:
        hours = _uint(request, "topMinersRange", 24)
        with self.ps.store.read() as conn:
            return as_json({"pools": [self.pool_info(conn, hours)]})

    def pool(self, request: Request, pool_id: str) -> Response:
        hours = _uint(request, "topMinersRange", 24)
        with self.ps.store.read() as conn:
            return as_json({"pool": self.pool_info(conn, hours)})

    # ---------------------------------------------------------------- blocks and payments
    @staticmethod
    def block_json(row: dict) -> dict:
        return {
            "poolId": row["poolid"],
            "blockHeight": row["blockheight"],
            "networkDifficulty": row["networkdifficulty"],
            "status": row["status"],
            "type": row["type"],
            "confirmationProgress": row["confirmationprogress"],
            "effort": row["effort"],
            "transactionConfirmationData": row["transactionconfirmationdata"],
            "reward": row["reward"],
            "infoLink": f"{EXPLORER}/blocks/{row['hash']}" if row["hash"] else None,
            "hash": row["hash"],
            "miner": row["miner"],
            "source": row["source"],
            "created": row["created"],
        }

    def _blocks(self, request: Request, pool_id: str | None) -> tuple[list[dict], int, int]:
        page = _uint(request, "page", 0)
        page_size = _uint(request, "pageSize", 15)
        states = request.args.getlist("state")
        statuses = ([BLOCK_STATUS[s.strip().lower()] if s.strip().lower() in BLOCK_STATUS else _bad("state", s)
                     for s in states] if states else ["pending", "orphaned", "confirmed"])
        where, params = "status = ANY(%s)", [statuses]
        if pool_id:
            where = "poolid = %s AND " + where
            params.insert(0, pool_id)
        with self.ps.store.read() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                f"SELECT * FROM blocks WHERE {where} ORDER BY created DESC OFFSET %s LIMIT %s",
                [*params, page * page_size, page_size]).fetchall()
            total = conn.execute("SELECT COUNT(*) FROM blocks WHERE poolid = %s",
                                 (pool_id or self.ps.pool_id,)).fetchone()[0]
        return [self.block_json(r) for r in rows], total, page_size

    def blocks(self, request: Request, pool_id: str) -> Response:
        return as_json(self._blocks(request, pool_id)[0])

    def blocks_v2(self, request: Request, pool_id: str) -> Response:
        result, total, page_size = self._blocks(request, pool_id)
        return as_json({"pageCount": _page_count(total, page_size), "result": result, "success": True})

    def all_blocks(self, request: Request) -> Response:
        return as_json(self._blocks(request, None)[0])

    @staticmethod
    def payment_json(row: dict) -> dict:
        return {
            "coin": row["coin"],
            "address": row["address"],
            "addressInfoLink": f"{EXPLORER}/addresses/{row['address']}",
            "amount": row["amount"],
            "transactionConfirmationData": row["transactionconfirmationdata"],
            "transactionInfoLink": f"{EXPLORER}/transactions/{row['transactionconfirmationdata']}",
            "created": row["created"],
        }

    def _payments(self, request: Request, address: str | None = None) -> tuple[list[dict], int, int]:
        page = _uint(request, "page", 0)
        page_size = _uint(request, "pageSize", 15)
        where, params = "poolid = %s", [self.ps.pool_id]
        if address is not None:
            where += " AND address = %s"
            params.append(address)
        with self.ps.store.read() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                f"SELECT * FROM payments WHERE {where} ORDER BY created DESC, id OFFSET %s LIMIT %s",
                [*params, page * page_size, page_size]).fetchall()
            total = conn.execute(f"SELECT COUNT(*) FROM payments WHERE {where}", params).fetchone()[0]
        return [self.payment_json(r) for r in rows], total, page_size

    def payments(self, request: Request, pool_id: str) -> Response:
        return as_json(self._payments(request)[0])

    def payments_v2(self, request: Request, pool_id: str) -> Response:
        result, total, page_size = self._payments(request)
        return as_json({"pageCount": _page_count(total, page_size), "result": result, "success": True})

    def miner_payments(self, request: Request, pool_id: str, address: str) -> Response:
        return as_json(self._payments(request, address)[0])

    def miner_payments_v2(self, request: Request, pool_id: str, address: str) -> Response:
        result, total, page_size = self._payments(request, address)
        return as_json({"pageCount": _page_count(total, page_size), "result": result, "success": True})

    def _balance_changes(self, request: Request, address: str) -> tuple[list[dict], int, int]:
        page = _uint(request, "page", 0)
        page_size = _uint(request, "pageSize", 15)
        params = [self.ps.pool_id, address]
        with self.ps.store.read() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM balance_changes WHERE poolid = %s AND address = %s "
                "ORDER BY created DESC, id DESC OFFSET %s LIMIT %s",
                [*params, page * page_size, page_size]).fetchall()
            total = conn.execute("SELECT COUNT(*) FROM balance_changes WHERE poolid = %s AND address = %s",
                                 params).fetchone()[0]
        result = [{"poolId": r["poolid"], "address": r["address"], "amount": r["amount"], "usage": r["usage"],
                   "created": r["created"]} for r in rows]
        return result, total, page_size

    def miner_balance_changes(self, request: Request, pool_id: str, address: str) -> Response:
        return as_json(self._balance_changes(request, address)[0])

    def miner_balance_changes_v2(self, request: Request, pool_id: str, address: str) -> Response:
        result, total, page_size = self._balance_changes(request, address)
        return as_json({"pageCount": _page_count(total, page_size), "result": result, "success": True})

    # ---------------------------------------------------------------- miners and performance
    def miners(self, request: Request, pool_id: str) -> Response:
        page = _uint(request, "page", 0)
        page_size = _uint(request, "pageSize", 15)
        hours = _uint(request, "topMinersRange", 24)
        with self.ps.store.read() as conn:
            return as_json(self.top_miners(conn, hours, page, page_size))

    def performance(self, request: Request, pool_id: str) -> Response:
        sample_range = _enum(request, "r", SAMPLE_RANGE, "Day")
        interval = _enum(request, "i", SAMPLE_INTERVAL, "Hour")
        end = self.ps.sim.t
        if sample_range == "Day":
            start = end - 86400
        elif sample_range == "Month":
            start = end - 30 * 86400
        else:
            raise ApiError("invalid interval")
        trunc = "hour" if interval == "Hour" else "day"
        with self.ps.store.read() as conn:
            rows = conn.execute(
                "SELECT date_trunc(%(t)s, created) AS created, AVG(poolhashrate), "
                "CAST(AVG(connectedminers) AS BIGINT), AVG(networkhashrate), AVG(networkdifficulty) "
                "FROM poolstats WHERE poolid = %(p)s AND created >= %(s)s AND created <= %(e)s "
                "GROUP BY date_trunc(%(t)s, created) ORDER BY 1",
                {"t": trunc, "p": pool_id, "s": utc(start), "e": utc(end)}).fetchall()
        stats = [{"poolHashrate": float(hr), "connectedMiners": int(cm), "validSharesPerSecond": 0,
                  "networkHashrate": float(nh), "networkDifficulty": float(nd), "created": created}
                 for created, hr, cm, nh, nd in rows]
        return as_json({"stats": stats})

    def miner(self, request: Request, pool_id: str, address: str) -> Response:
        mode = _enum(request, "perfMode", SAMPLE_RANGE, "Day")
        now = self.ps.sim.t
        with self.ps.store.read() as conn:
            pending_shares = conn.execute("SELECT SUM(difficulty) FROM shares WHERE poolid = %s AND miner = %s",
                                          (pool_id, address)).fetchone()[0]
            balance = conn.execute("SELECT amount FROM balances WHERE poolid = %s AND address = %s",
                                   (pool_id, address)).fetchone()
            total_paid = conn.execute("SELECT SUM(amount) FROM payments WHERE poolid = %s AND address = %s",
                                      (pool_id, address)).fetchone()[0]
            today = utc(now - now % 86400)
            today_paid = conn.execute(
                "SELECT SUM(amount) FROM payments WHERE poolid = %s AND address = %s AND created >= %s",
                (pool_id, address, today)).fetchone()[0]
            last_payment = conn.execute(
                "SELECT created, transactionconfirmationdata FROM payments WHERE poolid = %s AND address = %s "
                "ORDER BY created DESC LIMIT 1", (pool_id, address)).fetchone()
            last_update = conn.execute(
                "SELECT created FROM minerstats WHERE poolid = %s AND miner = %s ORDER BY created DESC LIMIT 1",
                (pool_id, address)).fetchone()
            performance = None
            if last_update and now - last_update[0].timestamp() <= MINER_STATS_MAX_AGE:
                workers = conn.execute(
                    "SELECT worker, hashrate, sharespersecond FROM minerstats WHERE poolid = %s AND miner = %s "
                    "AND created = %s ORDER BY worker", (pool_id, address, last_update[0])).fetchall()
                performance = {"created": last_update[0],
                               "workers": {w or "": {"hashrate": h, "sharesPerSecond": s} for w, h, s in workers}}
            samples = self._miner_samples(conn, address, mode, now)
        return as_json({
            "pendingShares": float(pending_shares or 0.0),
            "pendingBalance": balance[0] if balance else Decimal("0"),
            "totalPaid": total_paid if total_paid is not None else Decimal("0"),
            "todayPaid": today_paid if today_paid is not None else Decimal("0"),
            "lastPayment": last_payment[0] if last_payment else None,
            "lastPaymentLink": f"{EXPLORER}/transactions/{last_payment[1]}" if last_payment else None,
            "performance": performance,
            "performanceSamples": samples,
        })

    def _miner_samples(self, conn, address: str, mode: str, now: float) -> list[dict]:
        if mode == "Hour":
            bucket = ("date_trunc('hour', created) + make_interval(mins => "
                      "(date_part('minute', created)::int / 3) * 3)")
            start = now - 3600
        elif mode == "Month":
            bucket, start = "date_trunc('day', created)", now - 30 * 86400
        else:
            bucket, start = "date_trunc('hour', created)", now - 86400
        rows = conn.execute(
            f"""
            SELECT {bucket.replace('created', 'x.created')} AS bucket, x.worker, AVG(x.hs), AVG(x.sps)
            FROM (SELECT created, worker, SUM(hashrate) AS hs, SUM(sharespersecond) AS sps
                  FROM minerstats WHERE poolid = %s AND miner = %s AND created >= %s AND created <= %s
                  GROUP BY created, worker) x
            GROUP BY 1, 2 ORDER BY 1, 2
            """, (self.ps.pool_id, address, utc(start), utc(now))).fetchall()
        containers: dict = {}
        for created, worker, hashrate, sps in rows:
            container = containers.setdefault(created, {"created": created, "workers": {}})
            container["workers"][worker or ""] = {"hashrate": hashrate, "sharesPerSecond": sps}
        return list(containers.values())

    # ---------------------------------------------------------------- admin, health, metrics
    def admin_gc(self, request: Request) -> Response:
        gen0, gen1, gen2 = self.ps.sim.gc_counts
        megabytes = 150 + (self.ps.sim.k * 7) % 90
        return as_json({"gcGen0": gen0, "gcGen1": gen1, "gcGen2": gen2, "memAllocated": f"{megabytes} MB",
                        "maxFullGcDuration": 0.0})

    def admin_balance(self, request: Request, pool_id: str, address: str) -> Response:
        with self.ps.store.read() as conn:
            row = conn.execute("SELECT amount FROM balances WHERE poolid = %s AND address = %s",
                               (pool_id, address)).fetchone()
        return as_json(row[0] if row else 0)

    def health_check(self, request: Request) -> Response:
        return text("👍", content_type="text/plain; charset=utf-8")

    def help(self, request: Request) -> Response:
        lines = [f"GET -> {path.lstrip('/').replace('<', '{').replace('>', '}')}" for path, _ in ROUTES]
        return text("\n".join(lines), content_type="text/plain; charset=utf-8")

    def metrics(self, request: Request) -> Response:
        s = self.ps.sim
        pool = self.ps.pool_id
        with self.ps.lock:
            online_workers = sum(len(m.workers) for m in s.connected_miners())
            valid, invalid = s.valid_shares, s.invalid_shares
            live_seconds = max(0.0, s.t - s.start)
            lines = [
                ("miningcore_pool_connections", "Number of connections per pool", "gauge",
                 [(f'{{pool="{pool}"}}', online_workers + 2)]),
                ("miningcore_pool_hashrate", "Hashrate per pool", "gauge",
                 [(f'{{pool="{pool}"}}', s.metrics_hashrate)]),
                ("miningcore_shares_total", "Received shares per pool", "counter",
                 [(f'{{pool="{pool}"}}', valid + invalid)]),
                ("miningcore_valid_shares_total", "Valid received shares per pool", "counter",
                 [(f'{{pool="{pool}"}}', valid)]),
                ("miningcore_invalid_shares_total", "Invalid received shares per pool", "counter",
                 [(f'{{pool="{pool}"}}', invalid)]),
                ("miningcore_stratum_request_execution_time", "Stratum request execution time ms", "summary", [
                    (f'_sum{{pool="{pool}",method="mining.submit"}}', round(s.submit_time_ms, 2)),
                    (f'_count{{pool="{pool}",method="mining.submit"}}', valid + invalid),
                    (f'_sum{{pool="{pool}",method="mining.subscribe"}}', round(s.stratum_subscribes * 1.1, 2)),
                    (f'_count{{pool="{pool}",method="mining.subscribe"}}', s.stratum_subscribes),
                    (f'_sum{{pool="{pool}",method="mining.authorize"}}', round(s.stratum_subscribes * 59.6, 2)),
                    (f'_count{{pool="{pool}",method="mining.authorize"}}', s.stratum_subscribes),
                ]),
                ("miningcore_rpcrequest_execution_time", "RPC request execution time ms", "summary", []),
                ("miningcore_btstream_latency", "Latency of streaming block-templates in ms", "summary", []),
                ("miningcore_api_request_execution_time", "API request execution time ms", "summary", []),
                ("miningcore_hash_computation_time", "Hash computation time ms", "summary", []),
                ("dotnet_collection_count_total", "GC collection count", "counter",
                 [(f'{{generation="{g}"}}', c) for g, c in enumerate(s.gc_counts)]),
                ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge",
                 [("", round(s.start + 0.41, 2))]),
                ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
                 [("", round(12.5 + live_seconds * 0.07, 2))]),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", [("", 8512397312)]),
                ("process_working_set_bytes", "Process working set", "gauge",
                 [("", 412889088 + (s.k % 97) * 4096)]),
                ("process_private_memory_bytes", "Process private memory size", "gauge",
                 [("", 455421952 + (s.k % 89) * 4096)]),
                ("process_open_handles", "Number of open handles", "gauge", [("", 180 + online_workers * 2)]),
                ("process_num_threads", "Total number of threads", "gauge", [("", 43)]),
                ("dotnet_total_memory_bytes", "Total known allocated memory", "gauge",
                 [("", 150_000_000 + (s.k * 7919) % 90_000_000)]),
            ]
        out = []
        for name, help_text, kind, samples in lines:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for suffix, value in samples:
                rendered = format_float(float(value)) if isinstance(value, float) else str(value)
                out.append(f"{name}{suffix} {rendered}")
        return text("\n".join(out) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")


def _bad(name: str, value: str):
    raise BadQuery(name, value)
