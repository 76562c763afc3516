"""restart / start / stop against a private dockerd with busybox containers standing in for the pool's
services, health judged by real probes: poolsim's Miningcore API and Ergo node (with its faults),
the session's PostgreSQL. The systemd path is exercised through the real ``systemctl``."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
import requests

from agent.actions import ActionContext, ActionFailed
from agent.actions.services import restart_service, run_restart, run_start, run_stop, start_service
from agent.config import load_config
from devtools.services import free_port
from tests.agent.conftest import write_config

pytestmark = pytest.mark.slow

# A service stand-in that stops at once on SIGTERM (PID 1 in a container has no default handler).
SERVICE_CMD = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
# Runs the first time, exits with 3 on every later start: a service that does not come back.
DIES_ON_RESTART_CMD = ["sh", "-c", "[ -e /started ] && exit 3; touch /started; "
                                   "trap 'exit 0' TERM; while true; do sleep 0.2; done"]


@contextlib.contextmanager
def private_engine(session_dir: Path, name: str):
    from devtools.dockerd import PrivateDockerd, build_busybox_image

    with PrivateDockerd(name, base=session_dir) as dockerd:
        client = dockerd.client()
        image = build_busybox_image(client)
        try:
            yield dockerd, client, image
        finally:
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.close()


@contextlib.contextmanager
def module_poolsim(pg, name: str):
    """poolsim on its own database for a whole module; faults cleared by ``clear_faults``."""
    from poolsim.testing import run_poolsim

    dsn = pg.create_database(name)
    try:
        with run_poolsim(dsn, history_days=0.02, stats_interval=60) as sim:
            yield sim
    finally:
        pg.drop_database(name)


def clear_faults(sim: dict) -> None:
    requests.delete(sim["control"] + "/faults", timeout=5).raise_for_status()


def fault(sim: dict, name: str, **params) -> None:
    requests.post(sim["control"] + f"/faults/{name}", json=params, timeout=5).raise_for_status()


def make_config(tmp_path: Path, *, api_url: str, node_url: str, docker_url: str | None = None,
                services: dict | None = None, dsn: str | None = None, pool_ids: tuple[str, ...] = (),
                stratum_ports: tuple[int, ...] = (), config_file: str | None = None,
                docker_containers: dict | None = None, docker_enabled: bool = True):
    miningcore = {"apiUrl": api_url, "poolIds": list(pool_ids), "timeoutSeconds": 2,
                  "stratumPorts": list(stratum_ports)}
    if dsn:
        miningcore["database"] = {"dsn": dsn}
    if config_file:
        miningcore["configFile"] = config_file
    pool = {"host": "pool-test", "miningcore": miningcore, "ergoNode": {"url": node_url, "timeoutSeconds": 2},
            "docker": {"socket": docker_url or "unix:///nonexistent/docker.sock", "enabled": docker_enabled,
                       "containers": docker_containers or {}},
            "services": services or {}}
    monitoring = {"agent": {"redisUrl": "redis://127.0.0.1:1/0", "spoolDir": str(tmp_path / "spool")},
                  "maintenance": {"workDir": str(tmp_path / "work")}}
    return load_config(write_config(tmp_path / "etc", pool, monitoring), env={})


def context(config) -> ActionContext:
    return ActionContext(host="pool-test", config=config)


@pytest.fixture(scope="module")
def engine(session_dir):
    with private_engine(session_dir, "dockerd-services") as parts:
        yield parts


@pytest.fixture(scope="module")
def sim_module(pg):
    with module_poolsim(pg, f"svc_sim_{os.getpid()}") as sim:
        yield sim


@pytest.fixture
def sim(sim_module):
    clear_faults(sim_module)
    yield sim_module
    clear_faults(sim_module)


@pytest.fixture
def containers(engine):
    """Create busybox containers by name; all removed after the test."""
    _, client, image = engine
    made = []

    def run(name: str, command=None):
        made.append(name)
        return client.containers.run(image, command or SERVICE_CMD, detach=True, name=name, network_mode="none")

    yield run
    for name in made:
        with contextlib.suppress(Exception):
            client.containers.get(name).remove(force=True)


def started_at(client, name: str) -> str:
    return client.api.inspect_container(name)["State"]["StartedAt"]


def test_restart_waits_for_the_pool_api_and_reports_each_probe(tmp_path, engine, sim, containers):
    dockerd, client, _ = engine
    containers("mc-solo")
    before = started_at(client, "mc-solo")
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         pool_ids=("ergo1",), services={"miningcore": {"container": "mc-solo"}})
    ctx = context(config)
    result = run_restart(ctx, {"service": "miningcore"})
    assert result["summary"].startswith("miningcore (container mc-solo) restarted and healthy after ")
    assert result["health"]["ok"] and result["health"]["attempts"] >= 1
    assert "pool ergo1" in result["health"]["detail"]
    assert started_at(client, "mc-solo") != before
    assert client.containers.get("mc-solo").status == "running"
    assert any("health probe 1 of miningcore: healthy" in line for line in ctx.lines)
    assert result["control"]["changed"] is True


def test_pool_api_that_never_answers_is_service_down(tmp_path, engine, sim, containers):
    dockerd, client, _ = engine
    containers("mc-down")
    fault(sim, "pool_api_down")
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         services={"miningcore": {"container": "mc-down"}})
    ctx = context(config)
    started = time.monotonic()
    with pytest.raises(ActionFailed) as info:
        restart_service(ctx, "miningcore", deadline_seconds=3)
    assert time.monotonic() - started < 15
    message = info.value.message
    assert message.startswith("miningcore did not come back healthy within 3 s: Miningcore API at ")
    assert "connection refused" in message
    details = info.value.details
    assert details["service_down"] is True and details["service"] == "miningcore"
    assert details["health"]["attempts"] >= 2
    probes = [line for line in ctx.lines if "health probe" in line]
    assert len(probes) == details["health"]["attempts"]
    assert client.containers.get("mc-down").status == "running"  # the container itself did restart


def test_container_that_dies_on_restart_is_service_down(tmp_path, engine, sim, containers):
    dockerd, client, _ = engine
    containers("mc-dies", DIES_ON_RESTART_CMD)
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         services={"miningcore": {"container": "mc-dies"}})
    with pytest.raises(ActionFailed) as info:
        restart_service(context(config), "miningcore", deadline_seconds=2)
    assert "container mc-dies is exited (exit code 3)" in info.value.message
    assert info.value.details["service_down"] is True


def test_stop_then_start(tmp_path, engine, sim, containers):
    dockerd, client, _ = engine
    containers("ergo-node")
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         services={"ergo_node": {"container": "ergo-node"}})
    ctx = context(config)
    stopped = run_stop(ctx, {"service": "ergo_node"})
    assert stopped["summary"].startswith("ergo_node (container ergo-node) stopped after ")
    assert "is exited (exit code 0)" in stopped["state"]
    assert client.containers.get("ergo-node").status == "exited"
    again = run_stop(ctx, {"service": "ergo_node"})  # already stopped: said, and still verified
    assert any("is not running (exited)" in line for line in ctx.lines) and "stopped" in again["summary"]

    started = run_start(ctx, {"service": "ergo_node"})
    assert started["summary"].startswith("ergo_node (container ergo-node) started and healthy")
    assert "Ergo node answers at height" in started["health"]["detail"]
    assert client.containers.get("ergo-node").status == "running"
    running = run_start(ctx, {"service": "ergo_node"})
    assert "was already running and healthy" in running["summary"]


def test_node_down_after_start_is_service_down(tmp_path, engine, sim, containers):
    dockerd, client, _ = engine
    containers("ergo-node-2").stop(timeout=5)
    fault(sim, "node_down")
    config = make_config(tmp_path, api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                         services={"ergo_node": {"container": "ergo-node-2"}})
    with pytest.raises(ActionFailed) as info:
        start_service(context(config), "ergo_node", deadline_seconds=2)
    assert info.value.message.startswith("ergo_node did not come back healthy within 2 s: Ergo node at ")
    assert info.value.details["service_down"] is True


def test_postgresql_health_is_a_real_connection(tmp_path, engine, sim, containers, pg):
    dockerd, _, _ = engine
    containers("mc-postgres")
    services = {"postgresql": {"container": "mc-postgres"}}
    good = make_config(tmp_path / "good", api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                       services=services, dsn=pg.dsn("postgres"))
    result = run_restart(context(good), {"service": "postgresql"})
    assert "accepts connections" in result["health"]["detail"]
    port = free_port()
    bad = make_config(tmp_path / "bad", api_url=sim["api"], node_url=sim["node"], docker_url=dockerd.url,
                      services=services, dsn=f"postgresql://miningcore:s3cret@127.0.0.1:{port}/miningcore")
    with pytest.raises(ActionFailed) as info:
        restart_service(context(bad), "postgresql", deadline_seconds=2)
    assert f"PostgreSQL at 127.0.0.1:{port}/miningcore does not accept connections" in info.value.message
    assert "s3cret" not in info.value.message


def test_nginx_is_healthy_when_its_container_runs(tmp_path, engine, containers):
    dockerd, _, _ = engine
    containers("pool-nginx")
    config = make_config(tmp_path, api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         docker_url=dockerd.url, services={"nginx": {"container": "pool-nginx"}})
    result = run_restart(context(config), {"service": "nginx"})
    assert result["health"]["detail"] == "container pool-nginx running"


def test_refusals_name_what_is_missing(tmp_path, engine):
    dockerd, _, _ = engine
    config = make_config(tmp_path / "a", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         docker_url=dockerd.url, services={"miningcore": {"container": "absent-container"}})
    with pytest.raises(ActionFailed) as info:
        run_restart(context(config), {"service": "nginx"})
    assert "add services.nginx to pool.json" in info.value.message
    assert info.value.details == {"missing_config": "services.nginx"}
    with pytest.raises(ActionFailed, match="container 'absent-container' does not exist"):
        run_restart(context(config), {"service": "miningcore"})

    unreachable = make_config(tmp_path / "b", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                              docker_url=f"unix://{tmp_path}/no-such.sock", services={"nginx": {"container": "x"}})
    with pytest.raises(ActionFailed, match=r"cannot stop nginx: Docker Engine at unix://.* is not reachable"):
        run_stop(context(unreachable), {"service": "nginx"})

    disabled = make_config(tmp_path / "c", api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                           docker_url=dockerd.url, docker_enabled=False, services={"nginx": {"container": "x"}})
    with pytest.raises(ActionFailed, match="docker.enabled false"):
        run_start(context(disabled), {"service": "nginx"})


def test_systemd_units_go_through_systemctl(tmp_path, monkeypatch):
    # No systemd runs as PID 1 here, and the unit does not exist on any host: systemctl fails for real.
    unit = "poolwarden-test-absent.service"
    config = make_config(tmp_path, api_url="http://127.0.0.1:1", node_url="http://127.0.0.1:1",
                         services={"nginx": {"systemdUnit": unit}})
    for verb, run in (("restart", run_restart), ("start", run_start), ("stop", run_stop)):
        ctx = context(config)
        with pytest.raises(ActionFailed) as info:
            run(ctx, {"service": "nginx"})
        assert info.value.message.startswith(f"systemctl {verb} {unit} failed: ")
        assert len(info.value.message) > len(f"systemctl {verb} {unit} failed: ") + 5  # systemctl's own reason
        assert info.value.details["exit_status"] != 0 and info.value.details["kind"] == "systemd"
        assert info.value.details["service_down"] is (verb != "stop")
        assert ctx.lines[0].endswith(f"systemctl {verb} {unit}")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ActionFailed, match="systemctl not found on this host"):
        run_restart(context(config), {"service": "nginx"})


# --- the systemd path for real: the agent's code run inside a container that boots systemd -------

IN_SYSTEMD = r'''
import json, sys, pathlib
sys.path.insert(0, "/opt/poolwarden")
from agent.actions import ActionContext, ActionFailed
from agent.actions import services
from agent.config import load_config

pathlib.Path("/etc/systemd/system/pw-broken.service").write_text(
    "[Service]\nType=oneshot\nExecStart=/bin/false\n")
pathlib.Path("/etc/systemd/system/pw-dies.service").write_text(
    "[Service]\nExecStart=/bin/sh -c 'sleep 0.5; exit 1'\n")
services.systemctl("daemon-reload")

def ctx(unit):
    etc = pathlib.Path("/tmp/pw-" + unit)
    etc.mkdir(exist_ok=True)
    (etc / "pool.json").write_text(json.dumps({
        "host": "pool-sd", "miningcore": {"apiUrl": "http://127.0.0.1:1"}, "ergoNode": {"url": "http://127.0.0.1:1"},
        "services": {"nginx": {"systemdUnit": unit}}}))
    (etc / "monitoring.json").write_text(json.dumps({"agent": {"redisUrl": "redis://127.0.0.1:1/0",
                                                               "spoolDir": "/tmp/pw-spool"}}))
    return ActionContext(host="pool-sd", config=load_config(etc, env={}))

def attempt(name, call):
    try:
        out = {"name": name, "ok": True, "result": call()}
    except ActionFailed as exc:
        out = {"name": name, "ok": False, "message": exc.message, "details": exc.details}
    print(json.dumps(out, default=str), flush=True)

attempt("start", lambda: services.run_start(ctx("nginx.service"), {"service": "nginx"}))
attempt("restart", lambda: services.run_restart(ctx("nginx.service"), {"service": "nginx"}))
attempt("stop", lambda: services.run_stop(ctx("nginx.service"), {"service": "nginx"}))
attempt("broken", lambda: services.run_start(ctx("pw-broken.service"), {"service": "nginx"}))
attempt("dies", lambda: services.start_service(ctx("pw-dies.service"), "nginx", deadline_seconds=4))
'''


@pytest.fixture(scope="module")
def systemd_host(session_dir):
    """A container booting Debian's systemd (the deployment tests' image) with this checkout mounted
    read-only at /opt/poolwarden; the agent's code runs there with the image's python3."""
    import subprocess

    from tests.deploy.conftest import BUILD_SCRIPT, image_tarball

    tarball = image_tarball()
    if not tarball.exists():  # built once (about a minute) and shared with the deployment tests
        tarball.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(BUILD_SCRIPT), str(tarball)], check=True, capture_output=True, text=True)
    with private_engine(session_dir, "dockerd-systemd") as (dockerd, client, _):
        subprocess.run(["docker", "import", "--change", 'CMD ["/lib/systemd/systemd"]', "--change",
                        "ENV container=docker", str(tarball), "poolwarden/agent-systemd:test"],
                       env={**os.environ, "DOCKER_HOST": dockerd.url}, check=True, capture_output=True, timeout=300)
        root = Path(__file__).resolve().parents[2]
        container = client.containers.run(
            "poolwarden/agent-systemd:test", detach=True, name="pool-sd", network_mode="none",
            tmpfs={"/run": "", "/run/lock": ""}, security_opt=["seccomp=unconfined"], stop_signal="SIGRTMIN+3",
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"},
                     str(root): {"bind": "/opt/poolwarden", "mode": "ro"}})
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline and state not in ("running", "degraded"):
            state = container.exec_run(["systemctl", "is-system-running"]).output.decode().strip()
            time.sleep(0.3)
        assert state in ("running", "degraded"), f"systemd did not boot: {state!r}"
        yield container


def test_systemd_units_restart_start_stop_for_real(systemd_host):
    import json

    run = systemd_host.exec_run(["python3", "-c", IN_SYSTEMD], environment={"PYTHONDONTWRITEBYTECODE": "1"})
    assert run.exit_code == 0, run.output.decode()
    results = {r["name"]: r for r in map(json.loads, run.output.decode().splitlines())}
    assert results["start"]["ok"], results["start"]
    assert results["start"]["result"]["summary"].startswith("nginx (unit nginx.service) started and healthy after")
    assert results["start"]["result"]["health"]["detail"] == "unit nginx.service active"
    assert results["restart"]["ok"] and results["restart"]["result"]["control"]["state"] == "unit nginx.service active"
    assert results["stop"]["ok"] and results["stop"]["result"]["state"] == "unit nginx.service is inactive"
    broken = results["broken"]
    assert not broken["ok"] and broken["message"].startswith("systemctl start pw-broken.service failed: Job for "
                                                             "pw-broken.service failed")
    assert broken["details"]["service_down"] is True
    dies = results["dies"]
    assert not dies["ok"]
    assert dies["message"] == "nginx did not come back healthy within 4 s: unit pw-dies.service is failed"
    assert dies["details"]["service_down"] is True
    assert systemd_host.exec_run(["systemctl", "is-active", "nginx.service"]).output.decode().strip() == "inactive"
