"""Ergo node rules: the node's API down, out of sync, without peers, its height stalled."""

from __future__ import annotations

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
from panel.hosts.formatting import human_count, human_seconds


def _node_graph(*names: str, fmt: str = "count"):
    def graph(_rule, _labels) -> Graph:
        return Graph(names, "", fmt)

    return graph


def _node_history(name: str):
    def history(conn, _rule, start, end):
        from panel.alerts.replay import metric_minutes

        return metric_minutes(conn, name, start, end)

    return history


def _node_down(data, rule) -> list[Observation]:
    out = []
    for host, point in sorted(data.by_host("poolwarden_node_up").items()):
        down = point.value < 1
        out.append(Observation(
            labels_of(point), point.value, down, down,
            summary=f"Ergo node on {host} does not answer",
            description="The node's /info endpoint did not answer the agent (poolwarden_node_up = 0): the node is "
                        "stopped, restarting or overloaded. Miningcore cannot get new jobs; the pool stalls."))
    return out


register(RuleType(
    name="node_down", title="Ergo node down", component="node", unit="updown",
    description="Fires when the Ergo node's API does not answer the agent (poolwarden_node_up is 0).",
    metrics=("poolwarden_node_up",), default_severity="critical", default_for=60,
    defaults=({"name": "nodeDown"},), observe=_node_down, judge=constant_judge(lambda v: v < 1),
    graph=_node_graph("poolwarden_node_up"), history=_node_history("poolwarden_node_up"),
))


def _sync_lag(data, rule) -> list[Observation]:
    p = rule.params
    lags = data.by_host("poolwarden_node_sync_lag_blocks")
    full = data.by_host("poolwarden_node_full_height")
    headers = data.by_host("poolwarden_node_headers_height")
    peers = data.by_host("poolwarden_node_max_peer_height")
    out = []
    for host in sorted(set(lags) | set(full)):
        if host in lags:
            point, lag = lags[host], lags[host].value
        else:
            reference = [x.value for x in (headers.get(host), peers.get(host)) if x is not None]
            if not reference:
                continue
            point, lag = full[host], max(reference) - full[host].value
        breach, held = rising(lag, p["maxBlocks"], p["clearBlocks"])
        out.append(Observation(
            labels_of(point), lag, breach, held,
            summary=f"Ergo node on {host} is {human_count(lag)} blocks behind",
            description="The node's best full block lags the best header or its peers' height. Miningcore builds "
                        "jobs on a stale chain: shares are wasted and blocks may be orphaned. Check the node's log, "
                        "its disk and its peers."))
    return out


register(RuleType(
    name="node_sync_lag", title="Ergo node out of sync", component="node", unit="blocks",
    description="Fires when the node's full height lags the best header or the peers' height by maxBlocks or "
                "more; clears at clearBlocks or less.",
    params=(Param("maxBlocks", "integer", 5, "fire at this lag", minimum=1, unit="blocks"),
            Param("clearBlocks", "integer", 2, "clear at this lag or less", minimum=0, unit="blocks")),
    metrics=("poolwarden_node_sync_lag_blocks", "poolwarden_node_full_height", "poolwarden_node_headers_height",
             "poolwarden_node_max_peer_height"),
    default_for=300, defaults=({"name": "nodeOutOfSync"},), observe=_sync_lag,
    check=lambda p: order_problem(p, "clearBlocks", "maxBlocks", strict=True),
    judge=simple_judge("rising", "maxBlocks", "clearBlocks"),
    graph=_node_graph("poolwarden_node_sync_lag_blocks"), history=_node_history("poolwarden_node_sync_lag_blocks"),
))


def _no_peers(data, rule) -> list[Observation]:
    out = []
    for host, point in sorted(data.by_host("poolwarden_node_peers").items()):
        breach, held = falling(point.value, rule.params["minPeers"])
        out.append(Observation(
            labels_of(point), point.value, breach, held,
            summary=f"Ergo node on {host} has {human_count(point.value)} peers",
            description="The node is (nearly) disconnected from the network: it cannot learn new blocks or relay "
                        "the pool's. Check its network, firewall (port 9030) and the node's log."))
    return out


register(RuleType(
    name="node_no_peers", title="Ergo node disconnected (no peers)", component="node", unit="count",
    description="Fires when the node has fewer than minPeers connected peers.",
    params=(Param("minPeers", "integer", 1, "fire when the node has fewer peers than this", minimum=1),),
    metrics=("poolwarden_node_peers",), default_for=120, defaults=({"name": "nodeDisconnected"},),
    observe=_no_peers, judge=simple_judge("falling", "minPeers"),
    graph=_node_graph("poolwarden_node_peers"), history=_node_history("poolwarden_node_peers"),
))


def _height_stalled(data, rule) -> list[Observation]:
    limit = rule.params["stalledFor"]
    name = "poolwarden_node_full_height"
    changed = data.unchanged_since(name, limit + 300)
    out = []
    for host, point in sorted(data.by_host(name).items()):
        if point.series_id not in changed:
            continue  # not enough history to tell
        last_change = changed[point.series_id]
        stalled = limit + 300 if last_change is None else (data.now - last_change).total_seconds()
        breach = stalled >= limit
        out.append(Observation(
            labels_of(point), round(stalled), breach, breach,
            summary=f"Ergo node on {host} is stuck at height {int(point.value):,} for {human_seconds(stalled)}",
            description="Ergo produces a block about every 2 minutes; the node's full height has not moved. The node "
                        "may be stuck on a bad block, out of peers, or its disk full. Miningcore keeps serving an "
                        "old job."))
    return out


register(RuleType(
    name="node_height_stalled", title="Ergo node height stalled", component="node", unit="seconds",
    description="Fires when the node's full height has not changed for stalledFor (from the raw samples).",
    params=(Param("stalledFor", "duration", 900, "fire when the height did not move for this long",
                  minimum=120, maximum=86400),),
    metrics=("poolwarden_node_full_height",), every_seconds=15, defaults=({"name": "nodeHeightStalled"},),
    observe=_height_stalled, graph=_node_graph("poolwarden_node_full_height"),
    limits="The preview is not available.",
))
