"""Fixtures for the end-to-end tests: poolsim, a migrated panel database, agent and engine runners."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import redis as redislib
import requests

from agent.contract import Batch, stream_key
from devtools.processes import ManagedProcess, console_script
from devtools.services import ROOT

HOST = "pool-it"
ADMIN = "admin"
ADMIN_PASSWORD = "integration-owner-passphrase"


def panel_command(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = subprocess.run([console_script("poolwarden-panel"), *args], input=stdin, capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=120)
    assert result.returncode == 0, f"poolwarden-panel {args[0]} failed: {result.stderr}"
    return result.stdout


def totp_code(secret: str, dsn: str, username: str = ADMIN) -> str:
    """A code the panel will take: each TOTP step signs in once, so wait for a fresh one if needed."""
    import psycopg

    from tests.panel.auth_helpers import fresh_code

    with psycopg.connect(dsn) as conn:
        last = conn.execute("SELECT totp_last_step FROM users WHERE username = %s", (username,)).fetchone()[0]
    return fresh_code(secret, last)


def sign_in_http(base: str, stack) -> requests.Session:
    """A requests session signed in to the panel at ``base`` through its real forms."""
    from tests.panel.auth_helpers import csrf_token

    admin = stack["admin"]
    http = requests.Session()
    page = http.get(f"{base}/login", timeout=10).text
    step = http.post(f"{base}/login", data={"csrf_token": csrf_token(page), "username": admin["username"],
                                            "password": admin["password"]}, timeout=10)
    assert step.url.endswith("/login/code"), step.text[:500]
    done = http.post(f"{base}/login/code", data={"csrf_token": csrf_token(step.text),
                                                 "code": totp_code(admin["secret"], stack["pw_dsn"])}, timeout=10)
    assert done.status_code == 200 and "/login" not in done.url, done.text[:500]
    return http


def sign_in_client(client, stack) -> None:
    """The same for a Flask test client."""
    from tests.panel.auth_helpers import csrf_token

    admin = stack["admin"]
    page = client.get("/login").get_data(as_text=True)
    step = client.post("/login", data={"csrf_token": csrf_token(page), "username": admin["username"],
                                       "password": admin["password"]}, follow_redirects=True)
    done = client.post("/login/code", data={"csrf_token": csrf_token(step.get_data(as_text=True)),
                                            "code": totp_code(admin["secret"], stack["pw_dsn"])})
    assert done.status_code == 302 and "/login" not in done.headers["Location"], done.get_data(as_text=True)[:500]


def panel_client(stack):
    """A Flask test client of the stack's panel, signed in as its admin."""
    from panel import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": stack["pw_dsn"], "REDIS_URL": stack["redis_url"],
                      "SECRET_KEY": "integration-test-secret",
                      "SECRETS_KEY": stack["panel_env"]["POOLWARDEN_SECRETS_KEY"]})
    client = app.test_client()
    sign_in_client(client, stack)
    return client


@pytest.fixture
def poolsim_args() -> tuple[str, ...]:
    """More ``poolsim run`` options for the stack (a test module overrides this fixture)."""
    return ()


@pytest.fixture
def stack(pg, redis_url, session_dir, tmp_path, request, poolsim_args):
    """poolsim + migrated panel DB + env for agent and engine. Yields a dict of handles."""
    tag = f"it{os.getpid()}_{time.monotonic_ns() % 10**6}"
    pg.create_database(f"mc_{tag}")
    mc_dsn = pg.dsn(f"mc_{tag}")
    pw_dsn = pg.create_database(f"pw_{tag}")
    logs = tmp_path / "mc-logs"
    backups = tmp_path / "backups"
    node_data = tmp_path / "ergo"
    for d in (logs, backups, node_data / "history", node_data / "state"):
        d.mkdir(parents=True)
    (node_data / "history" / "chunk").write_bytes(b"x" * 200_000)

    procs: list[ManagedProcess] = []

    def stop_all() -> None:
        for p in reversed(procs):
            p.stop()

    request.addfinalizer(stop_all)  # runs even when the set-up below fails half-way
    sim = ManagedProcess("poolsim", [
        console_script("poolsim"), "run", "--seed", "7", "--db-dsn", mc_dsn, "--api-port", "0",
        "--node-port", "0", "--control-port", "0", "--log-dir", str(logs), "--history-days", "1",
        "--stats-interval", "10", *poolsim_args], tmp_path / "poolsim.log").start(capture_stdout=True)
    procs.append(sim)
    urls = sim.read_ready_line(timeout=120)

    from panel.secretbox import encode_key, new_key

    panel_env = {"POOLWARDEN_DATABASE_URL": pw_dsn, "POOLWARDEN_REDIS_URL": redis_url,
                 "POOLWARDEN_SECRET_KEY": "integration-test-secret", "POOLWARDEN_INSECURE_COOKIES": "1",
                 "POOLWARDEN_SECRETS_KEY": encode_key(new_key())}
    panel_command(panel_env, "migrate")
    totp_file = tmp_path / "admin-totp"
    panel_command(panel_env, "create-admin", "--username", ADMIN, "--password-stdin", "--totp-secret-out",
                  str(totp_file), stdin=ADMIN_PASSWORD + "\n")
    admin = {"username": ADMIN, "password": ADMIN_PASSWORD, "secret": totp_file.read_text().strip()}

    agent_env = {
        "POOLWARDEN_HOST": HOST, "POOLWARDEN_REDIS_URL": redis_url,
        "POOLWARDEN_SPOOL_DIR": str(tmp_path / "spool"), "POOLWARDEN_STATE_DIR": str(tmp_path / "state"),
        "DOCKER_ENABLED": "false",
        "MININGCORE_API_URL": urls["api"], "MININGCORE_METRICS_URL": urls["api"] + "/metrics",
        "MININGCORE_DB_DSN": mc_dsn, "MININGCORE_LOG_DIR": str(logs),
        "ERGO_NODE_URL": urls["node"], "ERGO_NODE_API_KEY": "hello", "ERGO_NODE_DATA_DIR": str(node_data),
        "POOLWARDEN_BACKUP_DIR": str(backups),
        "POOLWARDEN_JOB_KEY_FILE": str(tmp_path / "job.key"), "POOLWARDEN_WORK_DIR": str(tmp_path / "work"),
        "POOLWARDEN_SAFE_MODE_FILE": str(tmp_path / "state" / "safe-mode"),
        "MININGCORE_CONTAINER": "", "MININGCORE_DB_CONTAINER": "",  # no Docker here: services not managed
    }
    panel_command(panel_env, "maintenance", "enrol", HOST, "--out", agent_env["POOLWARDEN_JOB_KEY_FILE"])

    def run_agent(*extra: str, wrapper: tuple[str, ...] = ()) -> ManagedProcess:
        """The agent's collector loop; ``wrapper`` is a command it runs under (``unshare ...``)."""
        p = ManagedProcess("agent", [*wrapper, console_script("poolwarden-agent"), "collect", "--config-dir",
                                     str(ROOT / "config"), *extra], tmp_path / "agent.log",
                           env=agent_env).start()
        procs.append(p)
        return p

    def run_engine(*extra: str) -> ManagedProcess:
        p = ManagedProcess("engine", [console_script("poolwarden-panel"), "engine", *extra],
                           tmp_path / "engine.log", env=panel_env).start()
        procs.append(p)
        return p

    def run_worker(*extra: str) -> ManagedProcess:
        """The agent's maintenance worker on maint:<HOST>."""
        p = ManagedProcess("agent-worker", [console_script("poolwarden-agent"), "work", "--config-dir",
                                            str(ROOT / "config"), *extra], tmp_path / "agent-worker.log",
                           env=agent_env).start()
        procs.append(p)
        return p

    def run_notify_worker(*extra: str) -> ManagedProcess:
        """The panel's delivery worker on the notify queue."""
        p = ManagedProcess("notify-worker", [console_script("poolwarden-panel"), "notify-worker", *extra],
                           tmp_path / "notify-worker.log", env=panel_env).start()
        procs.append(p)
        return p

    yield {"urls": urls, "pw_dsn": pw_dsn, "admin": admin, "mc_dsn": mc_dsn, "redis_url": redis_url,
           "panel_env": panel_env, "run_agent": run_agent, "run_engine": run_engine, "run_worker": run_worker,
           "run_notify_worker": run_notify_worker, "agent_env": agent_env, "tmp": tmp_path}


def control(stack, method: str, path: str, **body) -> dict:
    r = requests.request(method, stack["urls"]["control"] + path, json=body or None, timeout=10)
    r.raise_for_status()
    return r.json()


def stream_batches(redis_url: str) -> list[Batch]:
    client = redislib.Redis.from_url(redis_url)
    try:
        return [Batch.from_fields(fields) for _id, fields in client.xrange(stream_key(HOST))]
    finally:
        client.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
