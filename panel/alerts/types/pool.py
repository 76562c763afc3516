"""Pool rules: Miningcore's API down, hashrate drop against its own baseline, no miners, invalid
shares, no block for longer than the pool's hashrate and the network difficulty make likely, blocks
orphaned or pending too long, payment failures and stalled payouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from panel.alerts.types.base import (
    Graph,
    Observation,
    Param,
    RuleType,
    constant_judge,
    falling,
    labels_of,
    order_problem,
    register,
    rising,
    simple_judge,
)
from panel.hosts.formatting import human_count, human_hashrate, human_seconds

BLOCK_KINDS = ["block_found", "block_confirmed", "block_orphaned"]
EVENT_LOOKBACK = timedelta(days=30)


def _pool_graph(name: str, fmt: str):
    def graph(_rule, labels: dict[str, str]) -> Graph:
        return Graph((name,), f"pool={labels.get('pool', '')}", fmt)

    return graph


def _pool_history(name: str):
    def history(conn, _rule, start, end):
        from panel.alerts.replay import metric_minutes

        return metric_minutes(conn, name, start, end, ("pool",))

    return history


# -- pool down ------------------------------------------------------------------------------------


def _pool_down(data, rule) -> list[Observation]:
    out = []
    for point in data.latest("poolwarden_pool_up"):
        labels = labels_of(point, "pool")
        down = point.value < 1
        out.append(Observation(
            labels, point.value, down, down,
            summary=f"Pool {labels['pool']} on {point.host} is offline: Miningcore's API does not answer",
            description="The agent could not read the pool from Miningcore's API (poolwarden_pool_up = 0): "
                        "Miningcore is stopped, crashed or its API port is blocked. Miners cannot be served "
                        "and no stats are recorded."))
    return out


register(RuleType(
    name="pool_down", title="Pool offline (Miningcore API down)", component="pool", unit="updown",
    description="Fires when Miningcore's API does not answer for a pool (poolwarden_pool_up is 0).",
    metrics=("poolwarden_pool_up",), default_severity="critical", default_for=60,
    defaults=({"name": "poolOffline"},),
    observe=_pool_down, judge=constant_judge(lambda v: v < 1),
    graph=_pool_graph("poolwarden_pool_up", "count"), history=_pool_history("poolwarden_pool_up"),
))


# -- hashrate drop --------------------------------------------------------------------------------


def _hashrate_drop(data, rule) -> list[Observation]:
    p = rule.params
    window, baseline_span = p["window"], p["baseline"]
    name = "poolwarden_pool_hashrate_hps"
    current = data.window_avg(name, window)
    baseline = data.rollup_avg(name, data.now - timedelta(seconds=baseline_span + window),
                               data.now - timedelta(seconds=window))
    out = []
    for point in data.latest(name):
        base = baseline.get(point.series_id)
        # A baseline needs a quarter of its span in data: a new pool is not judged yet.
        if base is None or base[1] * 60 < baseline_span / 4 or base[0] <= 0 or base[0] < p["minBaselineHps"]:
            continue
        now_rate = current.get(point.series_id, point.value)
        drop = max(0.0, (1 - now_rate / base[0]) * 100)
        breach, held = rising(drop, p["dropPercent"], p["clearPercent"])
        labels = labels_of(point, "pool")
        out.append(Observation(
            labels, round(drop, 1), breach, held,
            summary=f"Hashrate of pool {labels['pool']} on {point.host} is {drop:.0f} % below its baseline "
                    f"({human_hashrate(now_rate)} vs {human_hashrate(base[0])})",
            description=f"The mean hashrate of the last {human_seconds(window)} is {drop:.0f} % below the mean of "
                        f"the {human_seconds(baseline_span)} before ({human_hashrate(base[0])}). Miners left or "
                        "lost their connection: check the stratum ports, the node and Miningcore's log."))
    return out


register(RuleType(
    name="pool_hashrate_drop", title="Pool hashrate drop against its own baseline", component="pool", unit="percent",
    description="Compares the pool's mean hashrate over a short window with its own mean over the baseline "
                "before it; fires when it dropped by dropPercent or more, clears when the drop is back under "
                "clearPercent. A pool with less than a quarter of its baseline in history is not judged.",
    params=(
        Param("dropPercent", "number", 50, "fire when the hashrate is this many percent below the baseline",
              minimum=1, maximum=100, unit="%"),
        Param("clearPercent", "number", 30, "clear when the drop is back under this many percent",
              minimum=0, maximum=100, unit="%"),
        Param("window", "duration", 600, "the recent stretch averaged", minimum=60, maximum=86400),
        Param("baseline", "duration", 86400, "the stretch before the window the baseline averages",
              minimum=3600, maximum=30 * 86400),
        Param("minBaselineHps", "number", 0, "leave pools whose baseline is under this hashrate alone",
              minimum=0, unit="H/s"),
    ),
    metrics=("poolwarden_pool_hashrate_hps",), default_for=300, every_seconds=30,
    defaults=({"name": "poolHashrateDrop"},),
    observe=_hashrate_drop, check=lambda p: order_problem(p, "clearPercent", "dropPercent", strict=True),
    judge=simple_judge("rising", "dropPercent", "clearPercent"),
    graph=_pool_graph("poolwarden_pool_hashrate_hps", "hashrate"),
    limits="The preview is not available: the baseline moves with every minute of history.",
))


# -- no miners ------------------------------------------------------------------------------------


def _no_miners(data, rule) -> list[Observation]:
    out = []
    for point in data.latest("poolwarden_pool_miners"):
        labels = labels_of(point, "pool")
        breach, held = falling(point.value, rule.params["minMiners"])
        out.append(Observation(
            labels, point.value, breach, held,
            summary=f"Pool {labels['pool']} on {point.host} has {human_count(point.value)} miners",
            description=f"Fewer than {rule.params['minMiners']} miners sent shares in Miningcore's hashrate window. "
                        "If miners should be connected, check the stratum ports and the firewall."))
    return out


register(RuleType(
    name="pool_no_miners", title="No miners on the pool", component="pool", unit="count",
    description="Fires when fewer than minMiners miners have shares in Miningcore's hashrate window.",
    params=(Param("minMiners", "integer", 1, "fire when the pool has fewer miners than this", minimum=1),),
    metrics=("poolwarden_pool_miners",), default_for=600, defaults=({"name": "poolNoMiners"},),
    observe=_no_miners, judge=simple_judge("falling", "minMiners"),
    graph=_pool_graph("poolwarden_pool_miners", "count"), history=_pool_history("poolwarden_pool_miners"),
))


# -- invalid shares -------------------------------------------------------------------------------


def _invalid_shares(data, rule) -> list[Observation]:
    p = rule.params
    valid = data.by_label("poolwarden_pool_valid_shares_per_second", "pool")
    invalid = data.by_label("poolwarden_pool_invalid_shares_per_second", "pool")
    ratio = data.by_label("poolwarden_pool_invalid_share_ratio", "pool")
    valid_avg = data.window_avg("poolwarden_pool_valid_shares_per_second", p["window"])
    invalid_avg = data.window_avg("poolwarden_pool_invalid_shares_per_second", p["window"])
    ratio_avg = data.window_avg("poolwarden_pool_invalid_share_ratio", p["window"])
    out = []
    for key in sorted(set(valid) & set(invalid) | set(ratio)):
        if key in valid and key in invalid:
            good = valid_avg.get(valid[key].series_id, valid[key].value)
            bad = invalid_avg.get(invalid[key].series_id, invalid[key].value)
            if good + bad < p["minSharesPerSecond"]:
                continue
            percent = bad / (good + bad) * 100
            point = invalid[key]
        else:
            point = ratio[key]
            percent = ratio_avg.get(point.series_id, point.value) * 100
        breach, held = rising(percent, p["maxPercent"], p["clearPercent"])
        labels = labels_of(point, "pool")
        out.append(Observation(
            labels, round(percent, 2), breach, held,
            summary=f"{percent:.1f} % of the shares of pool {labels['pool']} on {point.host} are invalid",
            description=f"Over the last {human_seconds(p['window'])}, {percent:.1f} % of submitted shares were "
                        "rejected (stale, low difficulty, duplicate). Common causes: a node that is slow to "
                        "deliver new jobs, miners with a wrong difficulty or a high latency."))
    return out


def _invalid_history(conn, _rule, start, end):
    from panel.alerts.replay import metric_minutes

    return metric_minutes(conn, "poolwarden_pool_invalid_share_ratio", start, end, ("pool",), scale=100)


register(RuleType(
    name="pool_invalid_shares", title="High invalid-share rate", component="pool", unit="percent",
    description="Fires when invalid shares reach maxPercent of all shares over the window (from Miningcore's "
                "share counters; needs miningcore.metricsUrl in the agent's configuration).",
    params=(
        Param("maxPercent", "number", 5, "fire at this share of invalid shares", minimum=0.01, maximum=100, unit="%"),
        Param("clearPercent", "number", 3, "clear under this share", minimum=0, maximum=100, unit="%"),
        Param("window", "duration", 600, "the stretch the rate is computed over", minimum=60, maximum=86400),
        Param("minSharesPerSecond", "number", 0.05, "leave pools with fewer shares than this alone (too few to "
              "judge)", minimum=0, unit="shares/s"),
    ),
    metrics=("poolwarden_pool_valid_shares_per_second", "poolwarden_pool_invalid_shares_per_second",
             "poolwarden_pool_invalid_share_ratio"),
    default_for=300, every_seconds=15, defaults=({"name": "poolInvalidShares"},),
    observe=_invalid_shares, check=lambda p: order_problem(p, "clearPercent", "maxPercent"),
    judge=simple_judge("rising", "maxPercent", "clearPercent"),
    graph=_pool_graph("poolwarden_pool_invalid_share_ratio", "ratio"), history=_invalid_history,
))


# -- no block (effort) ----------------------------------------------------------------------------


def _no_block(data, rule) -> list[Observation]:
    p = rule.params
    now_ts = data.now.timestamp()
    last_block = data.by_label("poolwarden_pool_last_block_timestamp_seconds", "pool")
    difficulty = data.by_label("poolwarden_network_difficulty", "pool")
    hashrate = data.by_label("poolwarden_pool_hashrate_hps", "pool")
    effort_ratio = data.by_label("poolwarden_pool_effort_ratio", "pool")
    out = []
    for key, point in sorted(last_block.items()):
        elapsed = max(0.0, now_ts - point.value)
        if key not in difficulty or key not in hashrate:
            continue
        round_start = max(datetime.fromtimestamp(point.value, UTC), data.now - timedelta(days=7))
        averaged = data.rollup_avg("poolwarden_pool_hashrate_hps", round_start, data.now).get(hashrate[key].series_id)
        rate = averaged[0] if averaged and averaged[1] >= 5 else hashrate[key].value
        if rate <= 0 or difficulty[key].value <= 0:
            continue
        expected = difficulty[key].value / rate
        effort = elapsed / expected * 100
        by_effort = effort >= p["effortPercent"] and elapsed >= p["minWait"]
        by_hours = p["hoursThreshold"] is not None and elapsed >= p["hoursThreshold"] * 3600
        breach = by_effort or by_hours
        labels = labels_of(point, "pool")
        miningcore = effort_ratio.get(key)
        reported = f" Miningcore reports {miningcore.value * 100:.0f} % round effort." if miningcore else ""
        out.append(Observation(
            labels, round(effort, 1), breach, breach,
            summary=f"No block on pool {labels['pool']} ({point.host}) for {human_seconds(elapsed)}: "
                    f"{effort:.0f} % of the expected time",
            description=f"At {human_hashrate(rate)} against a network difficulty of {difficulty[key].value:.3g}, "
                        f"the pool expects a block every {human_seconds(expected)}; the last one was "
                        f"{human_seconds(elapsed)} ago.{reported} Long rounds happen by chance; far beyond "
                        "300 % check that blocks are submitted (node sync, Miningcore's log)."))
    return out


register(RuleType(
    name="no_block", title="No block for longer than expected (effort)", component="pool", unit="percent",
    description="Judges the time since the pool's last block against the time its hashrate (averaged over the "
                "round) and the network difficulty make expected: fires when that effort reaches effortPercent "
                "and at least minWait passed, or when hoursThreshold (if set) hours passed whatever the effort.",
    params=(
        Param("effortPercent", "number", 300, "fire at this effort (time since the last block against the "
              "expected time)", minimum=100, maximum=100_000, unit="%"),
        Param("minWait", "duration", 3600, "never fire before this time since the last block", minimum=0),
        Param("hoursThreshold", "number", None, "also fire after this many hours without a block, whatever the "
              "effort (the seed's noBlocks.hoursThreshold); null: off", minimum=0.1, optional=True, unit="h"),
    ),
    metrics=("poolwarden_pool_last_block_timestamp_seconds", "poolwarden_network_difficulty",
             "poolwarden_pool_hashrate_hps", "poolwarden_pool_effort_ratio"),
    every_seconds=60, defaults=({"name": "noBlocksFound"},), observe=_no_block,
    graph=_pool_graph("poolwarden_pool_effort_ratio", "ratio"),
    limits="A pool that never found a block has no round start and is not judged. The preview is not available.",
))


# -- block events ---------------------------------------------------------------------------------


# The agent's first run reads the newest blocks and reports those already settled as confirmed or
# orphaned "now": a settled event of the host's first hour for a block found before its first batch
# is history, not news.
BACKFILL = timedelta(hours=1)


def _history(data, host: str, event: dict[str, Any], ts: datetime) -> bool:
    if host not in data.hosts:
        return False
    first = data.hosts[host].first_seen
    created = event.get("created")
    found = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else ts
    return found < first and ts < first + BACKFILL


def _orphaned(data, rule) -> list[Observation]:
    since = data.now - timedelta(seconds=rule.params["window"])
    out = []
    for host, _eid, _kind, ts, event in data.events(["block_orphaned"], since):
        if _history(data, host, event, ts):
            continue
        labels = {"host": host, "pool": str(event.get("pool", "")), "height": str(event.get("height", ""))}
        out.append(Observation(
            labels, float(event.get("height") or 0), True, True,
            summary=f"Block {labels['height']} of pool {labels['pool']} ({host}) was orphaned",
            description=f"Miningcore classified block {labels['height']} as orphaned at "
                        f"{ts.astimezone(UTC):%Y-%m-%d %H:%M} UTC: its reward is lost. One orphan happens; several "
                        "in a row point at a node that is slow to receive or relay blocks (peers, sync)."))
    return out


def _count_events(kind: str):
    def history(conn, rule, start, end) -> int:
        from panel.alerts.data import rows

        return rows(conn, "SELECT count(*) FROM events WHERE kind = %s AND ts >= %s AND ts < %s",
                    (kind, start, end))[0][0]

    return history


register(RuleType(
    name="block_orphaned", title="Block orphaned", component="pool", unit="count",
    description="Fires for each block_orphaned event (one alert per block), and resolves after the window. "
                "Blocks the agent's first run reports as already orphaned (found before its first batch) are "
                "history and do not fire.",
    params=(Param("window", "duration", 86400, "how long an orphaned block stays an alert",
                  minimum=60, maximum=30 * 86400),),
    defaults=({"name": "blockOrphaned"},), observe=_orphaned, history=_count_events("block_orphaned"),
    every_seconds=15,
))


def _pending_blocks(data, rule) -> list[Observation]:
    from panel.alerts.data import rows

    found = rows(data.conn,
                 "SELECT h.name, newest.ts, newest.data FROM ("
                 " SELECT DISTINCT ON (host_id, data->>'pool', data->>'height', data->>'nonce') host_id, kind, ts, data"
                 " FROM events WHERE kind = ANY(%(kinds)s) AND ts >= %(since)s AND ts <= %(now)s"
                 " ORDER BY host_id, data->>'pool', data->>'height', data->>'nonce', ts DESC,"
                 " kind <> 'block_found' DESC"
                 ") AS newest JOIN hosts h ON h.id = newest.host_id "
                 "WHERE newest.kind = 'block_found' AND COALESCE(newest.data->>'status', 'pending') = 'pending'",
                 {"kinds": BLOCK_KINDS, "since": data.now - EVENT_LOOKBACK, "now": data.now})
    limit = rule.params["maxAge"]
    out = []
    for host, ts, event in found:
        created = event.get("created")
        start = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else ts
        age = (data.now - start).total_seconds()
        if age < limit:
            continue
        labels = {"host": host, "pool": str(event.get("pool", "")), "height": str(event.get("height", ""))}
        out.append(Observation(
            labels, round(age / 3600, 1), True, True,
            summary=f"Block {labels['height']} of pool {labels['pool']} ({host}) is pending for "
                    f"{human_seconds(age)}",
            description=f"The block was found {human_seconds(age)} ago and is neither confirmed nor orphaned. "
                        "On Ergo mainnet Miningcore waits 720 confirmations (about 24 h); much longer means the "
                        "payout processor is not running or cannot reach the node or its wallet."))
    return out


register(RuleType(
    name="block_pending_too_long", title="Block pending too long", component="pool", unit="hours",
    description="Fires for each block still pending (no block_confirmed or block_orphaned event) maxAge after "
                "it was found.",
    params=(Param("maxAge", "duration", 36 * 3600, "fire when a block is pending longer than this",
                  minimum=60, maximum=30 * 86400),),
    every_seconds=60, defaults=({"name": "blockPendingTooLong"},), observe=_pending_blocks,
    graph=_pool_graph("poolwarden_pool_pending_blocks", "count"),
    limits="The preview is not available.",
))


# -- payments -------------------------------------------------------------------------------------


def _payment_failed(data, rule) -> list[Observation]:
    since = data.now - timedelta(seconds=rule.params["window"])
    per_pool: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for host, _eid, _kind, _ts, event in data.events(["payment_failed"], since):
        per_pool.setdefault((host, str(event.get("pool", ""))), []).append(event)
    out = []
    for (host, pool), failures in sorted(per_pool.items()):
        last = failures[-1]
        error = str(last.get("error") or last.get("message") or "no reason given")[:300]
        out.append(Observation(
            {"host": host, "pool": pool}, float(len(failures)), True, True,
            summary=f"{len(failures)} payment(s) of pool {pool} ({host}) failed",
            description=f"The last failure: {error}. Check the wallet's balance and that the node's wallet is "
                        "unlocked."))
    return out


register(RuleType(
    name="payment_failed", title="Payment failed", component="pool", unit="count",
    description="Fires while payment_failed events of a pool are younger than the window (one alert per pool).",
    params=(Param("window", "duration", 86400, "how long a failed payment stays an alert",
                  minimum=60, maximum=30 * 86400),),
    default_severity="critical", every_seconds=15, defaults=({"name": "paymentFailed"},),
    observe=_payment_failed, history=_count_events("payment_failed"),
    limits="The events come from Miningcore's log (the agent's miningcore_log collector, which needs "
           "miningcore.logDir): Miningcore's API does not show failed payouts. Stalled payouts without a logged "
           "failure are caught by payouts_stalled.",
))


# A payout run confirms a block and pays in one go, and the agent notices the confirmation up to a
# collection later: a payment this much older than the confirmation event still counts as after it.
PAYMENT_SLACK = timedelta(hours=1)


def _payouts_stalled(data, rule) -> list[Observation]:
    since = data.now - EVENT_LOOKBACK
    confirmed: dict[tuple[str, str], datetime] = {}
    paid: dict[tuple[str, str], datetime] = {}
    for host, _eid, kind, ts, event in data.events(["block_confirmed", "payment_sent"], since):
        key = (host, str(event.get("pool", "")))
        if kind == "payment_sent":
            paid[key] = ts
        elif not _history(data, host, event, ts):
            confirmed[key] = ts
    out = []
    for key, at in sorted(confirmed.items()):
        waiting = (data.now - at).total_seconds()
        last_paid = paid.get(key)
        if last_paid is not None and last_paid >= at - PAYMENT_SLACK:
            continue
        breach = waiting >= rule.params["maxWait"]
        out.append(Observation(
            {"host": key[0], "pool": key[1]}, round(waiting / 3600, 1), breach, breach,
            summary=f"No payment on pool {key[1]} ({key[0]}) for {human_seconds(waiting)} after a confirmed block",
            description="A block was confirmed and no payment was recorded since. Check that payment processing "
                        "is enabled, the wallet is unlocked and funded, and Miningcore's log for payout errors. "
                        "(Balances under the pool's minimum payment are not paid: that is expected.)"))
    return out


register(RuleType(
    name="payouts_stalled", title="Payouts stalled", component="pool", unit="hours",
    description="Fires when a pool's newest confirmed block is older than maxWait and no payment_sent event "
                "followed it (a payment up to an hour before the confirmation was noticed counts: Miningcore "
                "confirms and pays in the same run). Blocks the agent's first run reports as already confirmed "
                "are history and are not waited for.",
    params=(Param("maxWait", "duration", 12 * 3600, "fire when no payment followed a confirmed block for this long",
                  minimum=60, maximum=30 * 86400),),
    every_seconds=60, defaults=({"name": "payoutsStalled"},), observe=_payouts_stalled,
    limits="Judged from block and payment events; balances under the minimum payment are legitimately not paid. "
           "The preview is not available.",
))
