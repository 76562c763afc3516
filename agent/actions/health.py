"""Health probes for the pool's services, and the ``health_check`` action.

The probes answer one question each, read-only, and never raise: a ``Probe`` says ok or not and,
in one line, what was seen. The restart/start actions and the Miningcore config update reuse them
through ``probe_service`` and ``wait_healthy``:

* ``miningcore``: the container (or unit) runs and the API answers ``/api/pools`` with 200 and the
  expected pools (the configured ``poolIds``; after a config update, the pools of the new file).
  oliverw's Miningcore answers 500 there right after a block (oliverw/miningcore#1530): then each
  expected pool's ``/api/pools/{id}`` must answer 200 instead.
* ``ergo_node``: the node's ``/info`` answers with a height (it may still be catching up).
* ``postgresql``: a connection to Miningcore's DSN succeeds and answers ``SELECT 1``.
* ``nginx``: the container runs / the unit is active.

``health_check`` runs every probe it can from the configuration and reports each as a check; a
failed check is reported, not raised.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from agent.actions import ActionContext, ActionFailed
from agent.config import Config, ServiceConfig, redact_url

PROBE_INTERVAL_SECONDS = 2.0
CONFIRM_SECONDS = 3.0  # a healthy answer counts once a second one this much later agrees
# How long a service has to become healthy after a (re)start: Miningcore's own compose file gives
# it a 60 s start period; an Ergo node may need minutes to load its state after a restart.
HEALTH_DEADLINE_SECONDS = {"miningcore": 180, "ergo_node": 600, "postgresql": 120, "nginx": 60}
NODE_MAX_LAG_BLOCKS = 2  # health_check: more than this behind the best header/peer is a problem
RESTART_LOOP_WINDOW_SECONDS = 900
RESTART_LOOP_STARTS = 3  # this many starts within the window is a restart loop
SYSTEMCTL_TIMEOUT_SECONDS = 300
TCP_TIMEOUT_SECONDS = 3.0


@dataclass
class Probe:
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


# --- Docker and systemd --------------------------------------------------------------------------


def docker_api(config: Config, extra_timeout: float = 0):
    """The low-level Docker client for ``docker.socket``; refuses when Docker is switched off."""
    if not config.pool.docker.enabled:
        raise ActionFailed("pool.json has docker.enabled false, but a service is configured as a Docker container: "
                           "enable Docker or configure the service's systemdUnit instead")
    import docker

    try:  # "auto" asks the Engine for its API version here already
        return docker.APIClient(base_url=config.pool.docker.socket, timeout=30 + extra_timeout, version="auto")
    except Exception as exc:  # docker.errors.DockerException wrapping the connection error
        raise ActionFailed(docker_error(exc, config)) from None


def docker_error(exc: Exception, config: Config, container: str | None = None) -> str:
    """A Docker SDK or connection error as one line for the operator."""
    import docker.errors

    from agent.collectors.containers import describe_docker_error

    if isinstance(exc, docker.errors.NotFound) and container:
        return f"container {container!r} does not exist on the Docker Engine at {config.pool.docker.socket}"
    if isinstance(exc, docker.errors.APIError):
        reason = exc.explanation or str(exc)
        return f"Docker Engine refused: {reason}"
    return describe_docker_error(exc, config.pool.docker.socket)


def systemctl(*args: str, timeout: float = SYSTEMCTL_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run ``systemctl --no-ask-password ARGS`` (an argument list, never a shell string)."""
    binary = shutil.which("systemctl")
    if binary is None:
        raise ActionFailed("systemctl not found on this host: is it a systemd host? Configure the service as a "
                           "Docker container instead", {"missing": "systemctl"})
    try:
        return subprocess.run([binary, "--no-ask-password", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"systemctl {' '.join(args)} did not finish within {timeout:g} s") from None


def systemctl_message(result: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((result.stderr or result.stdout or "").split())
    return text[:300] or f"exit status {result.returncode}"


def container_state(api: Any, config: Config, container: str) -> Probe:
    """Running (and not unhealthy by its own healthcheck)?"""
    try:
        info = api.inspect_container(container)
    except Exception as exc:  # docker.errors.*, requests errors
        return Probe(False, docker_error(exc, config, container))
    state = info.get("State") or {}
    health = (state.get("Health") or {}).get("Status", "")
    data = {"status": state.get("Status"), "health": health or None, "restart_count": info.get("RestartCount", 0),
            "started_at": state.get("StartedAt"), "id": info.get("Id", "")[:12]}
    if state.get("Restarting"):
        return Probe(False, f"container {container} is restarting (exit code {state.get('ExitCode')}, "
                            f"restart count {data['restart_count']})", data)
    if not state.get("Running"):
        oom = ", OOM-killed" if state.get("OOMKilled") else ""
        return Probe(False, f"container {container} is {state.get('Status', 'not running')} "
                            f"(exit code {state.get('ExitCode')}{oom})", data)
    if health == "unhealthy":
        log = (state.get("Health") or {}).get("Log") or []
        last = " ".join(str(log[-1].get("Output", "")).split())[:200] if log else ""
        return Probe(False, f"container {container} runs but its healthcheck says unhealthy"
                            + (f": {last}" if last else ""), data)
    note = f", healthcheck {health}" if health else ""
    return Probe(True, f"container {container} running{note}", data)


def unit_state(unit: str) -> Probe:
    try:
        result = systemctl("is-active", unit, timeout=30)
    except ActionFailed as exc:
        return Probe(False, exc.message)
    state = (result.stdout or "").strip()
    if result.returncode == 0 and state == "active":
        return Probe(True, f"unit {unit} active", {"state": state})
    if state:
        return Probe(False, f"unit {unit} is {state}", {"state": state})
    return Probe(False, f"systemctl is-active {unit} failed: {systemctl_message(result)}")


def service_state(config: Config, service: ServiceConfig, api: Any = None) -> Probe:
    if service.kind == "systemd":
        return unit_state(service.target)
    own = api is None
    try:
        api = api or docker_api(config)
    except ActionFailed as exc:
        return Probe(False, exc.message)
    try:
        return container_state(api, config, service.target)
    finally:
        if own:
            api.close()


# --- HTTP and database probes --------------------------------------------------------------------


def _request_error(exc: Exception, timeout: float) -> str:
    from agent.collectors.base import describe_request_error

    return describe_request_error(exc, timeout)


def _short(text: str) -> str:
    return " ".join((text or "").split())[:200] or "(empty body)"


def probe_miningcore_api(config: Config, expect_pools: tuple[str, ...] | None = None,
                         timeout: float | None = None) -> Probe:
    """``/api/pools`` answers 200 with every expected pool (default: the configured ``poolIds``)."""
    import requests

    mc = config.pool.miningcore
    expect = tuple(mc.pool_ids if expect_pools is None else expect_pools)
    timeout = mc.timeout_seconds if timeout is None else timeout
    url = f"{mc.api_url}/api/pools"
    try:
        with requests.Session() as session:
            response = session.get(url, timeout=timeout)
            if response.status_code == 500 and expect:
                return _pools_one_by_one(session, mc.api_url, expect, timeout, response)
    except requests.RequestException as exc:
        return Probe(False, f"Miningcore API at {url}: {_request_error(exc, timeout)}")
    if response.status_code != 200:
        return Probe(False, f"Miningcore API at {url} answered HTTP {response.status_code}: {_short(response.text)}")
    try:
        pools = response.json()["pools"]
        served = [str(p["id"]) for p in pools]
    except (ValueError, KeyError, TypeError):
        return Probe(False, f"Miningcore API at {url} answered 200 with an unexpected body: {_short(response.text)}")
    missing = [p for p in expect if p not in served]
    if missing:
        return Probe(False, f"Miningcore API answers but does not serve pool {', '.join(missing)} "
                            f"(it serves: {', '.join(served) or 'none'})", {"pools": served})
    if not served:
        return Probe(False, "Miningcore API answers but serves no pool (no pool started)", {"pools": served})
    return Probe(True, f"Miningcore API answers with pool {', '.join(served)}", {"pools": served})


def _pools_one_by_one(session: Any, api_url: str, expect: tuple[str, ...], timeout: float, first: Any) -> Probe:
    """oliverw's /api/pools answers 500 right after a block: each pool's own endpoint still works."""
    for pool in expect:
        response = session.get(f"{api_url}/api/pools/{pool}", timeout=timeout)
        if response.status_code != 200:
            return Probe(False, f"Miningcore API answered HTTP 500 on /api/pools ({_short(first.text)}) and "
                                f"HTTP {response.status_code} on /api/pools/{pool}: {_short(response.text)}")
    return Probe(True, f"Miningcore API answers pool {', '.join(expect)} (HTTP 500 on /api/pools, Miningcore's "
                       "known bug right after a block)", {"pools": list(expect)})


def probe_ergo_node(config: Config, timeout: float | None = None) -> Probe:
    """``/info`` answers with a height; ``data`` holds heights, lag and peers."""
    import requests

    from agent.collectors.miningcore import as_number

    node = config.pool.ergo_node
    timeout = node.timeout_seconds if timeout is None else timeout
    url = f"{node.url}/info"
    headers = {"api_key": node.api_key} if node.api_key else {}
    try:
        response = requests.get(url, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        return Probe(False, f"Ergo node at {url}: {_request_error(exc, timeout)}")
    if response.status_code != 200:
        return Probe(False, f"Ergo node at {url} answered HTTP {response.status_code}: {_short(response.text)}")
    try:
        info = response.json()
        if not isinstance(info, dict):
            raise ValueError("not an object")
    except ValueError:
        return Probe(False, f"Ergo node at {url} answered with an unreadable body: {_short(response.text)}")
    full, headers_height, peer = (as_number(info.get(k)) for k in ("fullHeight", "headersHeight", "maxPeerHeight"))
    peers = as_number(info.get("peersCount"))
    tops = [h for h in (headers_height, peer) if h is not None]
    lag = int(max(tops) - full) if full is not None and tops else None
    data = {"full_height": full, "headers_height": headers_height, "max_peer_height": peer, "sync_lag": lag,
            "peers": peers}
    if full is None and headers_height is None:
        return Probe(False, "Ergo node answers but has no height yet (still loading its state)", data)
    if full is None:
        return Probe(True, f"Ergo node answers, syncing: headers at {int(headers_height)}, no full block yet", data)
    behind = "synced" if not lag else f"{lag} blocks behind"
    return Probe(True, f"Ergo node answers at height {int(full)} ({behind}, {int(peers or 0)} peers)", data)


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, never its password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # a malformed DSN: say so without echoing it
        return redact_url(dsn)
    return f"{parts.get('host') or 'local socket'}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'}"


def probe_database(dsn: str, timeout: float = 5.0) -> Probe:
    """A new connection to the DSN answers ``SELECT 1``."""
    import psycopg

    where = describe_dsn(dsn)
    started = time.perf_counter()
    try:
        with psycopg.connect(dsn, connect_timeout=max(int(timeout), 1), autocommit=True,
                             application_name="poolwarden-health") as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:  # psycopg.Error and its OperationalError on a refused connection
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        return Probe(False, f"PostgreSQL at {where} does not accept connections: {text}")
    took = time.perf_counter() - started
    return Probe(True, f"PostgreSQL at {where} accepts connections ({took * 1000:.0f} ms)", {"seconds": took})


def probe_tcp(host: str, port: int, timeout: float = TCP_TIMEOUT_SECONDS) -> Probe:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Probe(True, f"{host}:{port} accepts TCP connections")
    except TimeoutError:
        return Probe(False, f"{host}:{port} did not accept a TCP connection within {timeout:g} s")
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        return Probe(False, f"{host}:{port}: {reason}")


# --- one service, and waiting for it -------------------------------------------------------------


def probe_service(config: Config, name: str, expect_pools: tuple[str, ...] | None = None,
                  timeout: float | None = None) -> Probe:
    """The service-specific health probe used after a (re)start."""
    service = config.pool.services.get(name)
    if service is not None:
        state = service_state(config, service)
        if not state.ok:
            return state
    if name == "miningcore":
        return probe_miningcore_api(config, expect_pools, timeout)
    if name == "ergo_node":
        return probe_ergo_node(config, timeout)
    if name == "postgresql":
        dsn = config.pool.miningcore.database_dsn
        if dsn:
            return probe_database(dsn, timeout or 5.0)
    if service is None:
        return Probe(False, f"{name} is not configured in pool.json services")
    return state


def wait_healthy(ctx: ActionContext, name: str, deadline_seconds: float, *,
                 expect_pools: tuple[str, ...] | None = None, interval: float = PROBE_INTERVAL_SECONDS,
                 confirm_seconds: float = CONFIRM_SECONDS, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe until healthy, each attempt reported; ``ActionFailed`` (service_down) at the deadline.

    A first healthy answer is confirmed by a second one ``confirm_seconds`` later: a service that
    crashes a moment after it started (a unit that is "active" for half a second, a container that
    dies once it has read a bad file) is not taken for healthy. The confirmation may end a few
    seconds after the deadline; it never starts after it.
    """
    started = time.monotonic()
    deadline = started + deadline_seconds
    attempt = 0
    healthy_since: float | None = None
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        probe = probe_service(ctx.config, name, expect_pools, timeout=None if remaining > 10 else max(remaining, 1))
        now = time.monotonic()
        took = round(now - started, 3)
        if probe.ok and healthy_since is not None and now - healthy_since >= confirm_seconds:
            ctx.say(f"health probe {attempt} of {name}: still healthy: {probe.detail}")
            return {"ok": True, "attempts": attempt, "seconds": took, "detail": probe.detail}
        if probe.ok:
            healthy_since = now
            ctx.say(f"health probe {attempt} of {name}: healthy: {probe.detail} (confirming in {confirm_seconds:g} s)")
            time.sleep(confirm_seconds)
            continue
        healthy_since = None
        ctx.say(f"health probe {attempt} of {name}: not healthy yet: {probe.detail}")
        remaining = deadline - now
        if remaining <= 0:
            raise ActionFailed(
                f"{name} did not come back healthy within {deadline_seconds:g} s: {probe.detail}",
                {**(details or {}), "service_down": True, "service": name,
                 "health": {"ok": False, "attempts": attempt, "seconds": took, "detail": probe.detail}})
        time.sleep(min(interval, remaining))


# --- the health_check action ---------------------------------------------------------------------


def _restart_loop(api: Any, container: str, restart_count: int) -> str | None:
    """A problem text when the container started too often lately (Docker's event log)."""
    now = time.time()
    events = api.events(since=int(now - RESTART_LOOP_WINDOW_SECONDS), until=int(now) + 1, decode=True,
                        filters={"container": container, "event": ["start"]})
    starts = sum(1 for _ in events)
    if starts >= RESTART_LOOP_STARTS:
        return (f"started {starts} times in the last {RESTART_LOOP_WINDOW_SECONDS // 60} min (restart loop?), "
                f"restart count {restart_count}")
    return None


def _uptime(started_at: str | None) -> str:
    from agent.collectors.miningcore import parse_timestamp

    ts = parse_timestamp(started_at)
    if ts is None or ts <= 0:
        return ""
    seconds = max(datetime.now(UTC).timestamp() - ts, 0)
    return f", up {seconds / 3600:.1f} h" if seconds >= 3600 else f", up {seconds:.0f} s"


class _Checks:
    def __init__(self, ctx: ActionContext):
        self.ctx = ctx
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, probe: Probe) -> None:
        self.items.append({"check": name, "ok": probe.ok, "detail": probe.detail,
                           "problem": None if probe.ok else probe.detail, **({"data": probe.data} if probe.data
                                                                               else {})})
        self.ctx.say(f"{'ok     ' if probe.ok else 'PROBLEM'} {name}: {probe.detail}")


def _container_checks(ctx: ActionContext, checks: _Checks, containers: list[tuple[str, str]]) -> None:
    config = ctx.config
    try:
        api = docker_api(config)
    except ActionFailed as exc:
        for label, container in containers:
            checks.add(f"container {label} ({container})", Probe(False, exc.message))
        return
    try:
        for label, container in containers:
            probe = container_state(api, config, container)
            if probe.data:
                probe.detail += _uptime(probe.data.get("started_at")) if probe.ok else ""
                try:
                    loop = _restart_loop(api, container, int(probe.data.get("restart_count") or 0))
                except Exception as exc:  # the event log could not be read: say so, keep the state
                    loop = None
                    probe.detail += f" (restart history unreadable: {docker_error(exc, config)})"
                if loop:
                    probe = Probe(False, f"{probe.detail}; {loop}", probe.data)
            checks.add(f"container {label} ({container})", probe)
    finally:
        api.close()


def run_health_check(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Every check the configuration allows; failures are reported in the result, not raised."""
    config = ctx.config
    checks = _Checks(ctx)
    services = config.pool.services
    containers = [(name, s.target) for name, s in services.items() if s.kind == "docker"]
    watched = {target for _, target in containers}
    if config.pool.docker.enabled:  # the containers the collector watches, when Docker is on at all
        containers += [(label, name) for label, name in config.pool.docker.containers.items() if name not in watched]
    if containers:
        _container_checks(ctx, checks, containers)
    for name, service in services.items():
        if service.kind == "systemd":
            checks.add(f"unit {name} ({service.target})", unit_state(service.target))

    mc = config.pool.miningcore
    host = urlsplit(mc.api_url).hostname or "127.0.0.1"
    for port in mc.stratum_ports:
        checks.add(f"stratum port {port}", probe_tcp(host, port))
    checks.add("Miningcore API", probe_miningcore_api(config))

    node = probe_ergo_node(config)
    lag, peers = node.data.get("sync_lag"), node.data.get("peers")
    if node.ok and lag is not None and lag > NODE_MAX_LAG_BLOCKS:
        node = Probe(False, f"{node.detail}: more than {NODE_MAX_LAG_BLOCKS} blocks behind, the node is not synced",
                     node.data)
    elif node.ok and peers is not None and peers == 0:
        node = Probe(False, f"{node.detail}: no peers, the node cannot follow the chain", node.data)
    checks.add("Ergo node", node)

    skipped = []
    if mc.database_dsn:
        checks.add("Miningcore database", probe_database(mc.database_dsn, mc.timeout_seconds))
    else:
        skipped.append("Miningcore database: miningcore.database.dsn is not set in pool.json")
    if not mc.stratum_ports:
        skipped.append("stratum ports: miningcore.stratumPorts is not set in pool.json")
    for reason in skipped:
        ctx.say(f"skipped {reason}")

    failed = [c["check"] for c in checks.items if not c["ok"]]
    total = len(checks.items)
    summary = (f"all {total} checks passed" if not failed
               else f"{len(failed)} of {total} checks failed: {', '.join(failed)}")
    return {"summary": summary, "ok": not failed, "checks": checks.items, "failed": failed, "skipped": skipped}

