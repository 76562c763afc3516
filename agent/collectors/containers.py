"""Docker containers through the Engine API (the docker SDK's low-level ``APIClient``).

``containers`` (every cycle): per container — running, state and health, CPU %, memory, network
and block I/O rates, Docker's restart count, restarts and OOM kills the agent saw, uptime. One
cycle costs one ``GET /containers/json``, one ``/events`` read of the time since the previous
cycle and one ``inspect`` per running container (issued concurrently, ~1 ms each).

The resource figures are read the way cAdvisor reads them: from the containers' cgroup files
(v1 ``memory``/``cpuacct``/``blkio`` or the v2 unified tree, under ``docker/<id>`` or
``system.slice/docker-<id>.scope``) and ``/proc/<pid>/net/dev`` of the container's first process.
That costs a few file reads per container. The Engine's ``stats`` endpoint is the fallback (an
agent that cannot see the host's cgroups, e.g. itself in a container): even with
``one-shot=true`` the daemon answers on its collector's next 1 s tick, so 20 containers take
about a second there, against milliseconds from cgroups (``stream=false`` without one-shot takes
2 s per container). Either way CPU % and the rates come from this collector's own deltas
between cycles; the first cycle after a (re)start has none.

Exited containers are inspected only when their state changed since the last cycle (an exit may
have been an OOM kill); their answer is kept. ``oom_killed`` is 1 when the inspect answer says
``OOMKilled`` *or* the daemon logged an ``oom`` event for the container since its last start:
Docker 20.10 handles the OOM and exit notifications from containerd in either order, and when
the exit comes second it overwrites ``State.OOMKilled`` with false (seen on CI); the event is
logged either way.

OOM kills and restarts are counted from the daemon's event log (``oom`` and ``start`` events,
read for exactly the interval since the last cycle), so several restarts between two cycles all
count, manual ``docker restart`` included; each restart is also sent as a ``container_restarted``
event with a stable id.

``docker_disk`` (background, slow cadence): ``GET /system/df`` — images, each container's
writable layer, volumes and build cache. The daemon walks volumes to size them, which can take a
while on big volumes; it never delays a cycle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.collectors.base import Collector, CollectorFailed
from agent.collectors.host import RateTracker
from agent.collectors.miningcore import parse_timestamp
from agent.contract import Event, Sample

log = logging.getLogger("agent.collectors.containers")

ACTIVE_STATES = ("running", "restarting", "paused")
CGROUP_ROOT = "/sys/fs/cgroup"
UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a number near 2^63


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


class CgroupStats:
    """A running container's counters from its cgroup files: ``(cpu_ns, mem_usage, mem_limit,
    io_read, io_write)``; None when its cgroup cannot be found (then the API is asked)."""

    PARENTS = ("docker/{id}", "system.slice/docker-{id}.scope")

    def __init__(self, root: str = CGROUP_ROOT):
        self.root = root
        self.v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))
        self.paths: dict[str, str] = {}

    def _find(self, cid: str, controller: str) -> str | None:
        for parent in self.PARENTS:
            base = os.path.join(self.root, parent.format(id=cid)) if self.v2 else \
                os.path.join(self.root, controller, parent.format(id=cid))
            if os.path.isdir(base):
                return os.path.join(self.root, parent.format(id=cid)) if self.v2 else \
                    os.path.join(self.root, "{c}", parent.format(id=cid))
        return None

    def read(self, cid: str) -> tuple[float, float, float | None, float, float] | None:
        base = self.paths.get(cid) or self._find(cid, "memory")
        if base is None:
            return None
        self.paths[cid] = base
        try:
            return self._read_v2(base) if self.v2 else self._read_v1(base)
        except (OSError, ValueError):
            self.paths.pop(cid, None)
            return None

    @staticmethod
    def _read_v1(base: str) -> tuple[float, float, float | None, float, float]:
        mem = base.format(c="memory")
        usage = int(_read(f"{mem}/memory.usage_in_bytes"))
        stat = _kv(_read(f"{mem}/memory.stat"))
        inactive = stat.get("total_inactive_file", stat.get("cache", 0))
        limit = int(_read(f"{mem}/memory.limit_in_bytes"))
        cpu = int(_read(f"{base.format(c='cpuacct')}/cpuacct.usage"))
        read = write = 0
        with contextlib.suppress(OSError):
            for line in _read(f"{base.format(c='blkio')}/blkio.throttle.io_service_bytes").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    read += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    write += int(parts[2])
        return (float(cpu), float(usage - inactive if inactive < usage else usage),
                float(limit) if limit < UNLIMITED else None, float(read), float(write))

    @staticmethod
    def _read_v2(base: str) -> tuple[float, float, float | None, float, float]:
        usage = int(_read(f"{base}/memory.current"))
        inactive = _kv(_read(f"{base}/memory.stat")).get("inactive_file", 0)
        raw_limit = _read(f"{base}/memory.max").strip()
        cpu_usec = _kv(_read(f"{base}/cpu.stat")).get("usage_usec", 0)
        read = write = 0
        with contextlib.suppress(OSError):
            for line in _read(f"{base}/io.stat").splitlines():
                for field in line.split()[1:]:
                    key, _, value = field.partition("=")
                    if key == "rbytes":
                        read += int(value)
                    elif key == "wbytes":
                        write += int(value)
        return (float(cpu_usec * 1000), float(usage - inactive if inactive < usage else usage),
                None if raw_limit == "max" else float(raw_limit), float(read), float(write))

    def forget_except(self, ids: set[str]) -> None:
        for cid in set(self.paths) - ids:
            del self.paths[cid]


def proc_net_bytes(pid: int, proc: str = "/proc") -> tuple[float, float] | None:
    """(received, sent) bytes of every interface but ``lo`` in the network namespace of ``pid``."""
    try:
        lines = _read(f"{proc}/{pid}/net/dev").splitlines()[2:]
    except OSError:
        return None
    rx = tx = 0
    interfaces = 0
    for line in lines:
        name, _, data = line.partition(":")
        fields = data.split()
        if name.strip() == "lo" or len(fields) < 9:
            continue
        interfaces += 1
        rx += int(fields[0])
        tx += int(fields[8])
    return (float(rx), float(tx)) if interfaces else None  # network "none": nothing to report


def docker_api(base_url: str, timeout: float, pool_size: int = 16):
    import docker

    return docker.APIClient(base_url=base_url, timeout=timeout, max_pool_size=pool_size, version="auto")


def describe_docker_error(exc: Exception, base_url: str) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "No such file" in text or "Connection refused" in text or "FileNotFoundError" in text:
        return f"Docker Engine at {base_url} is not reachable ({text}): is dockerd running, is docker.socket right?"
    if "Permission denied" in text:
        return f"Docker Engine at {base_url}: permission denied: add the agent's user to the docker group"
    return f"Docker Engine at {base_url}: {text}"


def health_word(status: str) -> str:
    """"Up 5 minutes (healthy)" -> "healthy"; "" without a healthcheck."""
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in status:
            return word
    return ""


def container_name(summary: dict[str, Any]) -> str:
    names = summary.get("Names") or []
    return names[0].lstrip("/") if names else str(summary.get("Id", ""))[:12]


def memory_usage(mem: dict[str, Any]) -> float | None:
    """Usage minus page cache, as ``docker stats`` shows it (cgroup v1 and v2)."""
    usage = mem.get("usage")
    if usage is None:
        return None
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in stats and stats[key] < usage:
            return float(usage - stats[key])
    return float(usage - stats.get("cache", 0))


def io_bytes(stats: dict[str, Any]) -> tuple[float, float]:
    read = write = 0.0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += entry.get("value", 0)
        elif op == "write":
            write += entry.get("value", 0)
    return read, write


def net_bytes(stats: dict[str, Any]) -> tuple[float, float] | None:
    networks = stats.get("networks")
    if not networks:
        return None
    return (float(sum(n.get("rx_bytes", 0) for n in networks.values())),
            float(sum(n.get("tx_bytes", 0) for n in networks.values())))


class ContainerCollector(Collector):
    name = "containers"
    METRICS = (
        "poolwarden_container_running", "poolwarden_container_status_info", "poolwarden_container_healthy",
        "poolwarden_container_cpu_percent", "poolwarden_container_memory_usage_bytes",
        "poolwarden_container_memory_limit_bytes", "poolwarden_container_network_receive_bytes_per_second",
        "poolwarden_container_network_transmit_bytes_per_second", "poolwarden_container_blkio_read_bytes_per_second",
        "poolwarden_container_blkio_write_bytes_per_second", "poolwarden_container_restart_count",
        "poolwarden_container_restarts_observed_total", "poolwarden_container_oom_killed",
        "poolwarden_container_oom_kills_observed_total", "poolwarden_container_uptime_seconds",
    )

    def __init__(self, base_url: str, watched: dict[str, str] | None = None, timeout: float = 5.0,
                 workers: int = 8, api_factory: Callable[[], Any] | None = None,
                 cgroups: CgroupStats | None = None, host_memory: float | None = None):
        self.base_url = base_url
        self.cgroups = cgroups if cgroups is not None else CgroupStats()
        self.host_memory = host_memory
        self.watched = dict(watched or {})  # role -> container name: reported (down) even when missing
        self.timeout = timeout
        self._factory = api_factory or (lambda: docker_api(base_url, timeout, pool_size=max(workers * 2, 10)))
        self._api: Any = None
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker-stats")
        self.tracker = RateTracker()
        self.inspected: dict[str, tuple[str, Any, str]] = {}  # id -> (state, inspect answer, health word)
        self.known_ids: set[str] = set()
        self.restarts: dict[str, int] = {}
        self.ooms: dict[str, int] = {}
        self.oom_since_start: set[str] = set()  # container ids with an ``oom`` event since their last start
        self.events_since: float | None = None
        self.seen_events: set[tuple] = set()

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = self._factory()
        return self._api

    def collect(self) -> list[Sample | Event]:
        until = time.time()
        try:
            listing = self.api.containers(all=True)
            events = self._events(until)
        except Exception as exc:  # docker.errors.*, requests errors, socket missing
            self._reset_client()
            raise CollectorFailed(describe_docker_error(exc, self.base_url),
                                  [Sample("poolwarden_container_running", 0.0, {"container": n})
                                   for n in self.watched.values()]) from None
        by_id = {c["Id"]: c for c in listing}
        names = {cid: container_name(c) for cid, c in by_id.items()}

        # Inspect only what may have changed: a container not seen in this state before, one
        # that (re)started or died in the interval, or whose health changed. Unchanged ones reuse
        # their last answer (uptime is computed from its StartedAt).
        touched = {e.get("id") for e in events}
        to_inspect = [cid for cid, c in by_id.items()
                      if cid in touched or self.inspected.get(cid, ("", None, ""))[0] != c.get("State")
                      or self.inspected[cid][2] != health_word(c.get("Status", ""))]
        running = [cid for cid, c in by_id.items() if c.get("State") == "running"]
        inspect_futures = {cid: self.pool.submit(self.api.inspect_container, cid) for cid in to_inspect}
        from_cgroups = {cid: (time.monotonic(), c) for cid in running if (c := self.cgroups.read(cid)) is not None}
        stats_futures = {cid: self.pool.submit(self._stats, cid) for cid in running if cid not in from_cgroups}

        out: list[Sample | Event] = []
        failures = []
        out += self._count_events(events, names)
        now = time.time()
        for cid, summary in by_id.items():
            name = names[cid]
            labels = {"container": name}
            state = summary.get("State", "")
            info: dict[str, Any] | None = None
            if cid in inspect_futures:
                try:
                    info = inspect_futures[cid].result(timeout=self.timeout)
                    self.inspected[cid] = (state, info, health_word(summary.get("Status", "")))
                except Exception as exc:
                    failures.append(f"inspect {name}: {exc}")
            else:
                info = self.inspected.get(cid, ("", None, ""))[1]
            st = (info or {}).get("State") or {}
            health = (st.get("Health") or {}).get("Status", "none")
            out += [Sample("poolwarden_container_running", 1.0 if state == "running" else 0.0, labels),
                    Sample("poolwarden_container_status_info", 1.0,
                           {"container": name, "state": state, "health": health,
                            "image": str(summary.get("Image", ""))}),
                    Sample("poolwarden_container_restarts_observed_total", float(self.restarts.get(name, 0)), labels),
                    Sample("poolwarden_container_oom_kills_observed_total", float(self.ooms.get(name, 0)), labels)]
            if health != "none":
                out.append(Sample("poolwarden_container_healthy", 1.0 if health == "healthy" else 0.0, labels))
            if info is not None:
                out += [Sample("poolwarden_container_restart_count", float(info.get("RestartCount", 0)), labels),
                        Sample("poolwarden_container_oom_killed",
                               1.0 if st.get("OOMKilled") or cid in self.oom_since_start else 0.0, labels)]
                started = parse_timestamp(st.get("StartedAt"))
                if state == "running" and started is not None and started > 0:
                    out.append(Sample("poolwarden_container_uptime_seconds", round(max(now - started, 0.0), 3), labels))
            if cid in from_cgroups:
                at, (cpu_ns, mem, limit, read, write) = from_cgroups[cid]
                pid = st.get("Pid") or 0
                host_net = ((info or {}).get("HostConfig") or {}).get("NetworkMode") == "host"
                net = proc_net_bytes(pid) if pid and not host_net else None
                out += self._rate_samples(cid, labels, at, mem, limit or self.host_memory, cpu_ns, net, read, write)
            elif cid in stats_futures:
                try:
                    out += self._stat_samples(cid, labels, stats_futures[cid].result(timeout=self.timeout))
                except Exception as exc:
                    failures.append(f"stats {name}: {exc}")
        present = set(names.values())
        out += [Sample("poolwarden_container_running", 0.0, {"container": n})
                for n in self.watched.values() if n not in present]
        self.tracker.forget_except(set(running))
        self.cgroups.forget_except(set(running))
        self.inspected = {cid: v for cid, v in self.inspected.items() if cid in by_id}
        self.known_ids = set(by_id)
        if failures:
            raise CollectorFailed("; ".join(failures[:5]), out)
        return out

    def _stats(self, cid: str) -> tuple[float, dict[str, Any]]:
        stats = self.api.stats(cid, stream=False, one_shot=True)
        return time.monotonic(), stats

    def _stat_samples(self, cid: str, labels: dict[str, str], timed: tuple[float, dict[str, Any]]) -> list[Sample]:
        at, stats = timed
        mem = stats.get("memory_stats") or {}
        cpu_ns = float(((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0))
        read, write = io_bytes(stats)
        return self._rate_samples(cid, labels, at, memory_usage(mem), float(mem["limit"]) if mem.get("limit") else None,
                                  cpu_ns, net_bytes(stats), read, write)

    def _rate_samples(self, cid: str, labels: dict[str, str], at: float, mem: float | None, limit: float | None,
                      cpu_ns: float, net: tuple[float, float] | None, read: float, write: float) -> list[Sample]:
        out = []
        if mem is not None:
            out.append(Sample("poolwarden_container_memory_usage_bytes", mem, labels))
        if limit:
            out.append(Sample("poolwarden_container_memory_limit_bytes", float(limit), labels))
        rates = self.tracker.rates(cid, (cpu_ns, *(net or (0.0, 0.0)), read, write), now=at)
        if rates is not None:
            out += [Sample("poolwarden_container_cpu_percent", round(rates[0] / 1e9 * 100, 3), labels),
                    Sample("poolwarden_container_blkio_read_bytes_per_second", round(rates[3], 3), labels),
                    Sample("poolwarden_container_blkio_write_bytes_per_second", round(rates[4], 3), labels)]
            if net is not None:
                out += [Sample("poolwarden_container_network_receive_bytes_per_second", round(rates[1], 3), labels),
                        Sample("poolwarden_container_network_transmit_bytes_per_second", round(rates[2], 3), labels)]
        return out

    def _events(self, until: float) -> list[dict[str, Any]]:
        since = self.events_since
        self.events_since = until
        if since is None:
            return []
        self._window_start_ns = int(since * 1e9)
        # a second of overlap (the daemon's since/until are inclusive and clocks tick): dedupe by key
        stream = self.api.events(since=f"{since - 1:.9f}", until=f"{until:.9f}", decode=True,
                                 filters={"type": "container", "event": ["start", "die", "oom"]})
        try:
            return list(stream)
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def _count_events(self, events: list[dict[str, Any]], names: dict[str, str]) -> list[Event]:
        out: list[Event] = []
        keys = set()
        started_now: set[str] = set()
        for e in sorted(events, key=lambda e: e.get("timeNano", 0)):
            cid = e.get("id") or (e.get("Actor") or {}).get("ID", "")
            action = e.get("Action") or e.get("status")
            key = (e.get("timeNano"), cid, action)
            keys.add(key)
            if key in self.seen_events or e.get("timeNano", 0) < getattr(self, "_window_start_ns", 0):
                continue
            name = names.get(cid) or ((e.get("Actor") or {}).get("Attributes") or {}).get("name") or cid[:12]
            if action == "oom":
                self.ooms[name] = self.ooms.get(name, 0) + 1
                self.oom_since_start.add(cid)
            elif action == "start":
                self.oom_since_start.discard(cid)
                if cid in self.known_ids or cid in started_now:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    ts = e.get("timeNano", 0) / 1e9 or time.time()
                    out.append(Event(f"container_restarted:{cid[:12]}:{e.get('timeNano', 0)}", "container_restarted",
                                     ts, {"container": name, "id": cid[:12]}))
                started_now.add(cid)
        self.seen_events = keys
        return out

    def _reset_client(self) -> None:
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
        self._api = None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._reset_client()


class DockerDiskCollector(Collector):
    name = "docker_disk"
    METRICS = ("poolwarden_docker_images_size_bytes", "poolwarden_docker_images", "poolwarden_container_rw_size_bytes",
               "poolwarden_docker_volume_size_bytes", "poolwarden_docker_build_cache_bytes")

    def __init__(self, base_url: str, timeout: float = 120.0, api_factory: Callable[[], Any] | None = None):
        self.base_url = base_url
        self._factory = api_factory or (lambda: docker_api(base_url, timeout, pool_size=2))

    def collect(self) -> list[Sample]:
        api = self._factory()
        try:
            df = api.df()
        except Exception as exc:
            raise CollectorFailed(describe_docker_error(exc, self.base_url)) from None
        finally:
            with contextlib.suppress(Exception):
                api.close()
        images = df.get("Images") or []
        out = [Sample("poolwarden_docker_images", float(len(images))),
               Sample("poolwarden_docker_images_size_bytes", float(df.get("LayersSize") or
                                                                    sum(i.get("Size", 0) for i in images)))]
        for c in df.get("Containers") or []:
            out.append(Sample("poolwarden_container_rw_size_bytes", float(c.get("SizeRw") or 0),
                              {"container": container_name(c)}))
        for v in df.get("Volumes") or []:
            size = (v.get("UsageData") or {}).get("Size", -1)
            if size is not None and size >= 0:
                out.append(Sample("poolwarden_docker_volume_size_bytes", float(size), {"volume": v.get("Name", "")}))
        out.append(Sample("poolwarden_docker_build_cache_bytes",
                          float(sum(b.get("Size", 0) for b in df.get("BuildCache") or []))))
        return out
