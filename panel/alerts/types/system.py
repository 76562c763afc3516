"""Host resources (CPU, memory, load per core) and Docker containers (restarts, unhealthy, stopped)."""

from __future__ import annotations

from panel.alerts.types.base import (
    Graph,
    Observation,
    Param,
    RuleType,
    labels_of,
    order_problem,
    register,
    rising,
    simple_judge,
)
from panel.hosts.formatting import human_bytes, human_seconds


def _history(name: str):
    def history(conn, _rule, start, end):
        from panel.alerts.replay import metric_minutes

        return metric_minutes(conn, name, start, end)

    return history


def _cpu(data, rule) -> list[Observation]:
    p = rule.params
    out = []
    for host, point in sorted(data.by_host("poolwarden_cpu_usage_percent").items()):
        breach, held = rising(point.value, p["maxPercent"], p["clearPercent"])
        out.append(Observation(
            labels_of(point), round(point.value, 1), breach, held,
            summary=f"CPU on {host} is {point.value:.0f} % busy",
            description="All cores together are busy beyond the threshold. See the host page's per-container CPU "
                        "for who uses it (Miningcore under a share flood, the node verifying, a vacuum)."))
    return out


register(RuleType(
    name="cpu_high", title="High CPU usage", component="system", unit="percent",
    description="Fires when the host's CPU (all cores) is busy maxPercent or more.",
    params=(Param("maxPercent", "number", 90, "fire at this usage", minimum=1, maximum=100, unit="%"),
            Param("clearPercent", "number", 80, "clear under this usage", minimum=0, maximum=100, unit="%")),
    metrics=("poolwarden_cpu_usage_percent",), default_for=300, defaults=({"name": "highCpuUsage"},),
    observe=_cpu, check=lambda p: order_problem(p, "clearPercent", "maxPercent"),
    judge=simple_judge("rising", "maxPercent", "clearPercent"),
    graph=lambda _r, _l: Graph(("poolwarden_cpu_usage_percent",), "", "percent"),
    history=_history("poolwarden_cpu_usage_percent"),
))


def _memory(data, rule) -> list[Observation]:
    p = rule.params
    percents = {host: (point, point.value) for host, point in data.by_host("poolwarden_memory_used_percent").items()}
    total = data.by_host("poolwarden_memory_total_bytes")
    for host, point in data.by_host("poolwarden_memory_used_bytes").items():
        if host not in percents and host in total and total[host].value > 0:
            percents[host] = (point, point.value / total[host].value * 100)
    out = []
    for host, (point, percent) in sorted(percents.items()):
        breach, held = rising(percent, p["maxPercent"], p["clearPercent"])
        size = f" of {human_bytes(total[host].value)}" if host in total else ""
        out.append(Observation(
            labels_of(point), round(percent, 1), breach, held,
            summary=f"Memory on {host} is {percent:.0f} % used{size}",
            description="Little memory is left for new work: the kernel will swap and then kill a process (often "
                        "the node or PostgreSQL). See the containers' memory on the host page."))
    return out


register(RuleType(
    name="memory_high", title="High memory usage", component="system", unit="percent",
    description="Fires when memory in use ((total - available) / total) reaches maxPercent.",
    params=(Param("maxPercent", "number", 90, "fire at this usage", minimum=1, maximum=100, unit="%"),
            Param("clearPercent", "number", 85, "clear under this usage", minimum=0, maximum=100, unit="%")),
    metrics=("poolwarden_memory_used_percent", "poolwarden_memory_used_bytes", "poolwarden_memory_total_bytes"),
    default_for=300, defaults=({"name": "highMemoryUsage"},), observe=_memory,
    check=lambda p: order_problem(p, "clearPercent", "maxPercent"),
    judge=simple_judge("rising", "maxPercent", "clearPercent"),
    graph=lambda _r, _l: Graph(("poolwarden_memory_used_percent",), "", "percent"),
    history=_history("poolwarden_memory_used_percent"),
))

LOADS = {"load1": "poolwarden_load1", "load5": "poolwarden_load5", "load15": "poolwarden_load15"}


def _load(data, rule) -> list[Observation]:
    p = rule.params
    cores = data.by_host("poolwarden_cpu_count")
    out = []
    for host, point in sorted(data.by_host(LOADS[p["measure"]]).items()):
        if host not in cores or cores[host].value <= 0:
            continue
        per_core = point.value / cores[host].value
        breach, held = rising(per_core, p["maxPerCore"], p["clearPerCore"])
        out.append(Observation(
            labels_of(point), round(per_core, 2), breach, held,
            summary=f"Load on {host} is {point.value:.1f} ({per_core:.1f} per core)",
            description=f"The {p['measure']} load average is {per_core:.1f} per core: processes wait for CPU or "
                        "disk. High I/O wait with a low CPU usage points at a slow or saturated disk."))
    return out


def _load_history(conn, rule, start, end):
    from panel.alerts.replay import ratio_minutes

    return ratio_minutes(conn, LOADS[rule.params["measure"]], "poolwarden_cpu_count", start, end)


register(RuleType(
    name="load_high", title="High load per core", component="system", unit="decimal",
    description="Fires when the load average (measure) divided by the number of CPUs reaches maxPerCore.",
    params=(Param("maxPerCore", "number", 2, "fire at this load per core", minimum=0.1, maximum=100),
            Param("clearPerCore", "number", 1.5, "clear under this load per core", minimum=0, maximum=100),
            Param("measure", "choice", "load5", "which load average", choices=tuple(LOADS))),
    latest_for=lambda p: {LOADS[p["measure"]], "poolwarden_cpu_count"},
    default_for=600, defaults=({"name": "highLoad"},), observe=_load,
    check=lambda p: order_problem(p, "clearPerCore", "maxPerCore"),
    judge=simple_judge("rising", "maxPerCore", "clearPerCore"),
    graph=lambda rule, _l: Graph((LOADS[rule.params["measure"]],), "", "decimal"), history=_load_history,
))


# -- containers -----------------------------------------------------------------------------------

RESTART_COUNTERS = ("poolwarden_container_restart_count", "poolwarden_container_restarts_observed_total")


def _restarts(data, rule) -> list[Observation]:
    p = rule.params
    counts: dict[tuple[str, str], tuple[object, float]] = {}
    for metric in RESTART_COUNTERS:
        rises = data.increase(metric, p["window"])
        for point in data.latest(metric):
            key = (point.host, point.labels.get("container", ""))
            seen = rises.get(point.series_id, 0.0)
            if key not in counts or seen > counts[key][1]:
                counts[key] = (point, seen)
    out = []
    for (host, container), (point, restarts) in sorted(counts.items()):
        breach, held = rising(restarts, p["maxRestarts"])
        out.append(Observation(
            labels_of(point, "container"), restarts, breach, held,
            summary=f"Container {container} on {host} restarted {int(restarts)} times in "
                    f"{human_seconds(p['window'])}",
            description="A container that keeps restarting crashes at start (bad configuration, missing volume, "
                        "out of memory). See `docker logs` of the container and its OOM-kill flag."))
    return out


register(RuleType(
    name="container_restarts", title="Container restarting", component="container", unit="count",
    description="Fires when a container restarted maxRestarts times or more within the window (Docker's restart "
                "count or the restarts the agent saw, whichever is higher); clears when fewer remain in the window.",
    params=(Param("maxRestarts", "integer", 3, "fire at this many restarts in the window", minimum=1),
            Param("window", "duration", 900, "the sliding window counted", minimum=60, maximum=86400)),
    metrics=RESTART_COUNTERS, every_seconds=15, defaults=({"name": "containerRestarts"},), observe=_restarts,
    graph=lambda _r, labels: Graph(RESTART_COUNTERS, f"container={labels.get('container', '')}", "count"),
    limits="The preview is not available.",
))


def _unhealthy(data, rule) -> list[Observation]:
    running = data.by_label("poolwarden_container_running", "container")
    healthy = data.by_label("poolwarden_container_healthy", "container")
    out = []
    for key in sorted(set(running) | set(healthy)):
        stopped = key in running and running[key].value < 1
        sick = key in healthy and healthy[key].value < 1
        if stopped and not rule.params["includeStopped"]:
            continue
        point = running.get(key) or healthy[key]
        bad = stopped or sick
        what = "is not running" if stopped else "is unhealthy" if sick else "is healthy"
        out.append(Observation(
            labels_of(point, "container"), 0.0 if bad else 1.0, bad, bad,
            summary=f"Container {key[1]} on {key[0]} {what}",
            description=("The container is stopped or exited: what it serves is down. " if stopped else
                         "Docker's healthcheck of the container fails. ")
                        + "See `docker ps -a` and `docker logs` on the host."))
    return out


register(RuleType(
    name="container_unhealthy", title="Container unhealthy or stopped", component="container", unit="updown",
    description="Fires when a watched container's healthcheck fails, or (includeStopped) it is not running.",
    params=(Param("includeStopped", "bool", True, "also fire for containers that are not running"),),
    metrics=("poolwarden_container_running", "poolwarden_container_healthy"), default_for=60,
    defaults=({"name": "containerUnhealthy"},), observe=_unhealthy,
    graph=lambda _r, labels: Graph(("poolwarden_container_running", "poolwarden_container_healthy"),
                                   f"container={labels.get('container', '')}", "count"),
    limits="The preview is not available.",
))
