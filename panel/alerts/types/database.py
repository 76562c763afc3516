"""Miningcore's PostgreSQL: down, connections near max_connections, long-running queries and transactions."""

from __future__ import annotations

from panel.alerts.types.base import (
    Graph,
    Observation,
    Param,
    RuleType,
    constant_judge,
    labels_of,
    order_problem,
    register,
    rising,
    simple_judge,
)
from panel.hosts.formatting import human_seconds


def _history(name: str):
    def history(conn, _rule, start, end):
        from panel.alerts.replay import metric_minutes

        return metric_minutes(conn, name, start, end)

    return history


def _database_down(data, rule) -> list[Observation]:
    out = []
    for host, point in sorted(data.by_host("poolwarden_postgres_up").items()):
        down = point.value < 1
        out.append(Observation(
            labels_of(point), point.value, down, down,
            summary=f"Miningcore's PostgreSQL on {host} does not answer",
            description="The agent's health queries failed (poolwarden_postgres_up = 0). Miningcore cannot record "
                        "shares, blocks or payments. Check the database server (container or service), its disk "
                        "and its log."))
    return out


register(RuleType(
    name="database_down", title="Database down", component="database", unit="updown",
    description="Fires when Miningcore's PostgreSQL does not answer the agent (poolwarden_postgres_up is 0).",
    metrics=("poolwarden_postgres_up",), default_severity="critical", default_for=60,
    defaults=({"name": "databaseDown"},), observe=_database_down, judge=constant_judge(lambda v: v < 1),
    graph=lambda _r, _l: Graph(("poolwarden_postgres_up",), "", "count"), history=_history("poolwarden_postgres_up"),
))


def _connections(data, rule) -> list[Observation]:
    p = rule.params
    maximum = data.by_host("poolwarden_postgres_max_connections")
    out = []
    for host, point in sorted(data.by_host("poolwarden_postgres_connections").items()):
        if host not in maximum or maximum[host].value <= 0:
            continue
        percent = point.value / maximum[host].value * 100
        breach, held = rising(percent, p["maxPercent"], p["clearPercent"])
        out.append(Observation(
            labels_of(point), round(percent, 1), breach, held,
            summary=f"PostgreSQL on {host} uses {int(point.value)} of {int(maximum[host].value)} connections",
            description="When max_connections is reached, Miningcore's new connections are refused and shares are "
                        "lost. Look for idle connections piling up (a connection leak) or raise max_connections."))
    return out


def _connections_history(conn, _rule, start, end):
    from panel.alerts.replay import ratio_minutes

    return ratio_minutes(conn, "poolwarden_postgres_connections", "poolwarden_postgres_max_connections", start, end,
                         scale=100)


register(RuleType(
    name="database_connections", title="Database connections near max", component="database", unit="percent",
    description="Fires when the server's client connections reach maxPercent of max_connections.",
    params=(Param("maxPercent", "number", 80, "fire at this share of max_connections", minimum=1, maximum=100,
                  unit="%"),
            Param("clearPercent", "number", 70, "clear under this share", minimum=0, maximum=100, unit="%")),
    metrics=("poolwarden_postgres_connections", "poolwarden_postgres_max_connections"), default_for=300,
    defaults=({"name": "databaseConnections"},), observe=_connections,
    check=lambda p: order_problem(p, "clearPercent", "maxPercent"),
    judge=simple_judge("rising", "maxPercent", "clearPercent"),
    graph=lambda _r, _l: Graph(("poolwarden_postgres_connections", "poolwarden_postgres_max_connections"), "",
                               "count"),
    history=_connections_history,
))

MEASURES = {"query": "poolwarden_postgres_longest_query_seconds",
            "transaction": "poolwarden_postgres_longest_transaction_seconds"}


def _long_running(data, rule) -> list[Observation]:
    p = rule.params
    what = p["measure"]
    out = []
    for host, point in sorted(data.by_host(MEASURES[what]).items()):
        breach, held = rising(point.value, p["maxDuration"], p["clearDuration"])
        out.append(Observation(
            labels_of(point), round(point.value), breach, held,
            summary=f"A {what} on {host}'s PostgreSQL runs for {human_seconds(point.value)}",
            description=("A long query holds locks and slows Miningcore's share inserts. " if what == "query" else
                         "An old open transaction keeps vacuum from removing dead rows: tables and indexes bloat. ")
                        + "Find it with pg_stat_activity and end it with pg_terminate_backend if it is stuck."))
    return out


def _long_history(conn, rule, start, end):
    from panel.alerts.replay import metric_minutes

    return metric_minutes(conn, MEASURES[rule.params["measure"]], start, end)


register(RuleType(
    name="database_long_query", title="Long-running query or transaction", component="database", unit="seconds",
    description="Fires when the longest running active query (measure: query) or the oldest open transaction "
                "(measure: transaction) reaches maxDuration.",
    params=(Param("measure", "choice", "query", "what is timed: the longest query or the oldest transaction",
                  choices=("query", "transaction")),
            Param("maxDuration", "duration", 300, "fire at this age", minimum=1),
            Param("clearDuration", "duration", 60, "clear under this age", minimum=0)),
    latest_for=lambda p: {MEASURES[p["measure"]]},
    default_for=60,
    defaults=({"name": "databaseLongQuery"},
              {"name": "databaseLongTransaction", "measure": "transaction", "maxDuration": "1h",
               "clearDuration": "10m"}),
    observe=_long_running, check=lambda p: order_problem(p, "clearDuration", "maxDuration"),
    judge=simple_judge("rising", "maxDuration", "clearDuration"),
    graph=lambda rule, _l: Graph((MEASURES[rule.params["measure"]],), "", "seconds"), history=_long_history,
))
