"""The agent itself: a host that stopped reporting (dead-man's switch), a collector that fails, and
the maintenance jobs the panel ran on a host (a failed job, a service that did not come back)."""

from __future__ import annotations

from datetime import timedelta

from panel.alerts.data import rows
from panel.alerts.types.base import Graph, Observation, Param, RuleType, constant_judge, labels_of, register
from panel.hosts.formatting import human_seconds


def _silent(data, rule) -> list[Observation]:
    limit = rule.params["missedIntervals"] * rule.params["intervalSeconds"]
    out = []
    for name, host in sorted(data.hosts.items()):
        silent = host.silent_seconds
        breach = silent >= limit
        out.append(Observation(
            {"host": name}, round(silent), breach, breach,
            summary=f"No data from {name} for {human_seconds(silent)}",
            description=f"The panel received no batch from the agent on {name} for {human_seconds(silent)} "
                        f"({rule.params['missedIntervals']} collection intervals). The agent is stopped, the host is "
                        "down, or it cannot reach Redis. Its other alerts keep their state until it reports again."))
    return out


def _silent_history(conn, rule, start, end) -> int:
    """Gaps between heartbeats longer than the rule's limit in the raw samples."""
    limit = rule.params["missedIntervals"] * rule.params["intervalSeconds"]
    return rows(conn,
                "SELECT count(*) FROM (SELECT ts - lag(ts) OVER (PARTITION BY series_id ORDER BY ts) AS gap "
                "FROM samples WHERE series_id IN (SELECT id FROM series WHERE name = "
                "'poolwarden_agent_heartbeat_timestamp_seconds') AND ts >= %s AND ts < %s) AS gaps "
                "WHERE gap >= %s", (start, end, timedelta(seconds=limit)))[0][0]


register(RuleType(
    name="agent_silent", title="Agent silent (dead-man's switch)", component="agent", unit="seconds",
    description="Fires when the panel received nothing from a host's agent for missedIntervals collection "
                "intervals (judged on the panel's clock, from the hosts table). While a host is silent its other "
                "alerts neither start nor resolve.",
    params=(Param("missedIntervals", "integer", 4, "fire after this many intervals without a batch", minimum=2),
            Param("intervalSeconds", "number", 15, "the agents' collection interval (intervals.collectSeconds)",
                  minimum=1, maximum=3600, unit="s")),
    default_severity="critical", defaults=({"name": "agentSilent"},), observe=_silent, judges_silent_hosts=True,
    graph=lambda _r, _l: Graph(("poolwarden_agent_cycle_seconds",), "", "seconds"), history=_silent_history,
))


def _collector(data, rule) -> list[Observation]:
    out = []
    for point in data.latest("poolwarden_collector_up"):
        labels = labels_of(point, "collector")
        down = point.value < 1
        out.append(Observation(
            labels, point.value, down, down,
            summary=f"Collector {labels['collector']} on {point.host} is failing",
            description="The agent's collector did not get its data in its last run (poolwarden_collector_up = 0): "
                        "the figures it reports are missing. The agent's log on the host says why."))
    return out


def _collector_history(conn, _rule, start, end):
    from panel.alerts.replay import metric_minutes

    return metric_minutes(conn, "poolwarden_collector_up", start, end, ("collector",))


register(RuleType(
    name="collector_failing", title="Collector failing", component="collector", unit="updown",
    description="Fires when one of the agent's collectors reports poolwarden_collector_up 0.",
    metrics=("poolwarden_collector_up",), default_for=120, defaults=({"name": "collectorFailing"},),
    observe=_collector, judge=constant_judge(lambda v: v < 1),
    graph=lambda _r, labels: Graph(("poolwarden_collector_up",), f"collector={labels.get('collector', '')}", "count"),
    history=_collector_history,
))


def _maintenance(data, rule) -> list[Observation]:
    if not data.has_table("maintenance_jobs"):
        return []
    since = data.now - timedelta(seconds=rule.params["window"])
    found = rows(data.conn,
                 "SELECT host, action, id, status, finished_at, error, summary,"
                 " result->'details'->>'service_down', result->'details'->>'service', failures FROM ("
                 " SELECT DISTINCT ON (host, action) *, count(*) FILTER (WHERE status = 'failed')"
                 " OVER (PARTITION BY host, action) AS failures FROM maintenance_jobs"
                 " WHERE finished_at >= %s AND finished_at <= %s AND status IN ('succeeded', 'failed')"
                 " ORDER BY host, action, finished_at DESC) AS newest WHERE status = 'failed'",
                 (since, data.now))
    out = []
    for host, action, job_id, _status, finished, error, summary, service_down, service, failures in found:
        down = service_down == "true"
        labels = {"host": host, "action": action}
        if service:
            labels["service"] = str(service)
        reason = (error or summary or "no reason recorded")[:300]
        out.append(Observation(
            labels, float(failures), True, True, severity="critical" if down else None,
            summary=(f"{service or 'A service'} on {host} did not come back after {action}" if down
                     else f"Maintenance job {action} on {host} failed"),
            description=f"Job {job_id} finished at {finished:%Y-%m-%d %H:%M} UTC: {reason}. "
                        + ("The service is down now: start it from the host's maintenance page or on the host. "
                           if down else "")
                        + "The alert resolves when the same action succeeds on the host, or after the window."))
    return out


def _maintenance_history(conn, _rule, start, end) -> int | None:
    if not rows(conn, "SELECT to_regclass('maintenance_jobs') IS NOT NULL")[0][0]:
        return None
    return rows(conn, "SELECT count(*) FROM maintenance_jobs WHERE status = 'failed' AND finished_at >= %s "
                      "AND finished_at < %s", (start, end))[0][0]


register(RuleType(
    name="maintenance_failed", title="Maintenance job failed / service did not come back", component="maintenance",
    unit="count",
    description="Fires when the newest finished run of a maintenance action on a host failed within the window "
                "(one alert per host and action); critical when the job reports that the service did not come "
                "back (result.details.service_down).",
    params=(Param("window", "duration", 86400, "how long a failed job stays an alert unless the action succeeds "
                  "again", minimum=300, maximum=30 * 86400),),
    every_seconds=15, defaults=({"name": "maintenanceFailed"},), observe=_maintenance,
    history=_maintenance_history, judges_silent_hosts=True,
))
