"""`make demo`: the whole of poolwarden running on the simulated pool.

Starts, under .run/demo/: a private PostgreSQL (databases `miningcore` for the simulated pool and
`poolwarden` for the panel) and a private Redis on free loopback ports, then poolsim, the panel's
migrations, the engine, the panel, the agent's collector and its maintenance worker. When it runs
as root with dockerd installed, a private Docker engine runs stand-in containers under the names of
the reference deployment's Miningcore and PostgreSQL containers, so the container views and the
restart/start/stop buttons have something real to act on (the pool itself stays poolsim).
Prints the panel's URL and waits; Ctrl-C (or SIGTERM) stops everything it started, in reverse
order, leaving no process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from devtools.inbox import Inbox
from devtools.processes import ManagedProcess, console_script
from devtools.services import ROOT, RUN_DIR, PrivatePostgres, PrivateRedis, free_port, wait_for_port

PANEL_PORT = 8050  # not one of the deployment's ports (4000, 5444, 8888, 9053, ...)
DEMO_ADMIN = "admin"


def run_panel_command(demo_dir: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run one `poolwarden-panel` command to completion; its output goes to .run/demo/panel-setup.log."""
    import subprocess

    with open(demo_dir / "panel-setup.log", "ab") as log:
        result = subprocess.run([console_script("poolwarden-panel"), *args], input=(stdin or "").encode(),
                                stdout=log, stderr=log, env={**os.environ, **env}, timeout=120)
    if result.returncode != 0:
        tail = (demo_dir / "panel-setup.log").read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError(f"poolwarden-panel {args[0]} failed:\n" + "\n".join(tail))


class Stop(Exception):
    pass


def _raise_stop(signum, frame):  # noqa: ARG001
    raise Stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


STAND_INS = {"miningcore": "ergo-miningcore-solo", "postgresql": "ergo-miningcore-postgres-solo"}


def start_stand_in_containers(demo_dir: Path, step) -> object | None:
    """A private dockerd with busybox stand-ins named like the deployment's containers, or None."""
    import shutil

    from devtools.dockerd import PrivateDockerd, build_busybox_image

    if os.geteuid() != 0 or not shutil.which("dockerd"):
        step("no private Docker engine (needs root and dockerd): container views and service buttons stay empty")
        return None
    try:
        dockerd = PrivateDockerd("dockerd", base=demo_dir).start()
    except Exception as exc:  # noqa: BLE001 - the demo goes on without containers
        step(f"the private Docker engine did not start ({exc}): going on without containers")
        return None
    client = dockerd.client()
    image = build_busybox_image(client)
    for name in STAND_INS.values():
        client.containers.run(image, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"], detach=True,
                              name=name, network_mode="none", restart_policy={"Name": "unless-stopped"})
    step(f"private Docker engine with stand-in containers {', '.join(STAND_INS.values())}")
    return dockerd


def write_miningcore_config(path: Path, mc_dsn: str, api_url: str, node_url: str) -> None:
    """A Miningcore config.json for the simulated pool: what clean-up reads (payout scheme and PPLNS
    factor) and what the "Update Miningcore's config.json" button edits in the demo."""
    from urllib.parse import urlsplit

    db, api, node = urlsplit(mc_dsn), urlsplit(api_url), urlsplit(node_url)
    config = {
        "logging": {"level": "info", "enableConsoleLog": True, "logBaseDirectory": str(path.parent / "logs"),
                    "logFile": "miningcore.log", "apiLogFile": "api.log", "perPoolLogFile": True},
        "banning": {"manager": "Integrated", "banOnJunkReceive": True, "banOnInvalidShares": False},
        "notifications": {"enabled": False},
        "persistence": {"postgres": {"host": db.hostname, "port": db.port, "user": db.username or "miningcore",
                                     "password": db.password or "", "database": db.path.lstrip("/")}},
        "paymentProcessing": {"enabled": True, "interval": 600},
        "api": {"enabled": True, "listenAddress": "127.0.0.1", "port": api.port, "rateLimiting": {"disabled": True}},
        "pools": [{
            "id": "ergo1", "enabled": True, "coin": "ergo",
            "address": "9fE5o7913CKKe6wvNgM11vULjTuKiopPcvCaj7t2zcJWXM2gcLu",
            "rewardRecipients": [{"address": "9fE5o7913CKKe6wvNgM11vULjTuKiopPcvCaj7t2zcJWXM2gcLu",
                                  "percentage": 1.0}],
            "blockRefreshInterval": 500, "jobRebroadcastTimeout": 30, "clientConnectionTimeout": 600,
            "ports": {"4074": {"listenAddress": "0.0.0.0", "difficulty": 0.01}},
            "daemons": [{"host": node.hostname, "port": node.port, "apiKey": "hello"}],
            "paymentProcessing": {"enabled": True, "minimumPayment": 0.5, "payoutScheme": "PPLNS",
                                  "payoutSchemeConfig": {"factor": 2.0}},
        }],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def make_fake_node_data(path: Path) -> None:
    """An Ergo data directory shaped like the real one, with a few MB in it, for the disk view."""
    for sub, size in (("history", 6_000_000), ("state", 2_000_000), ("wallet/keystore", 4096), ("peers", 8192)):
        d = path / sub
        d.mkdir(parents=True, exist_ok=True)
        f = d / "000001.ldb"
        if not f.exists():
            f.write_bytes(os.urandom(size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help=f"panel port (default {PANEL_PORT}, or a free one)")
    parser.add_argument("--seed", type=int, default=42, help="poolsim seed")
    parser.add_argument("--speed", type=float, default=1.0, help="poolsim time speed-up")
    parser.add_argument("--interval", type=int, default=5, help="agent collection interval, seconds")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: run until Ctrl-C)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    demo_dir = RUN_DIR / "demo"
    pid_file = demo_dir / "demo.pid"
    if pid_file.exists():
        try:
            other = int(pid_file.read_text().strip())
            os.kill(other, 0)
        except (ValueError, ProcessLookupError):
            pass  # a stale file from a demo that was killed
        else:
            print(f"demo: another demo is already running (pid {other}) in {demo_dir}; stop it first "
                  f"(Ctrl-C there, or kill {other})", file=sys.stderr)
            return 1
    demo_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    started: list = []
    procs: list[ManagedProcess] = []

    def step(msg: str) -> None:
        print(f"demo: {msg}", flush=True)

    return_code = 0
    try:
        step("starting private PostgreSQL and Redis under .run/demo")
        pg = PrivatePostgres("postgres", base=demo_dir).start()
        started.append(pg)
        redis = PrivateRedis("redis", base=demo_dir).start()
        started.append(redis)
        pg.create_database("miningcore", owner="miningcore")
        mc_dsn = pg.dsn("miningcore", user="miningcore")
        import psycopg

        with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute("ALTER ROLE miningcore CREATEDB")  # test restores make a scratch database
        pw_dsn = pg.create_database("poolwarden")

        logs = demo_dir / "miningcore-logs"
        backups = demo_dir / "backups"
        node_data = demo_dir / "ergo" / ".ergo"
        for d in (logs, backups):
            d.mkdir(parents=True, exist_ok=True)
        make_fake_node_data(node_data)

        dockerd = start_stand_in_containers(demo_dir, step)
        if dockerd is not None:
            started.append(dockerd)

        step(f"starting poolsim (simulated Miningcore + Ergo node, seed {args.seed})")
        sim = ManagedProcess("poolsim", [
            console_script("poolsim"), "run", "--seed", str(args.seed), "--db-dsn", mc_dsn,
            "--api-port", "0", "--node-port", "0", "--control-port", "0", "--log-dir", str(logs),
            "--history-days", "3", "--speed", str(args.speed), "--stats-interval", "10",
        ], demo_dir / "poolsim.log").start(capture_stdout=True)
        procs.append(sim)
        urls = sim.read_ready_line(timeout=120)
        mc_config = demo_dir / "miningcore" / "config.json"
        write_miningcore_config(mc_config, mc_dsn, urls["api"], urls["node"])

        inbox = Inbox(demo_dir / "inbox").start()
        started.append(inbox)
        integrations = demo_dir / "integrations.json"
        integrations.write_text(json.dumps(inbox.integrations_config(), indent=2))

        secrets_key = demo_dir / "secrets.key"
        panel_env = {
            "POOLWARDEN_ALERTS_CONFIG": str(ROOT / "config" / "alerts.json"),
            "POOLWARDEN_MAINTENANCE_CONFIG": str(ROOT / "config" / "maintenance.json"),
            "POOLWARDEN_INTEGRATIONS_CONFIG": str(integrations),
            "POOLWARDEN_DATABASE_URL": pw_dsn,
            "POOLWARDEN_REDIS_URL": redis.url,
            "POOLWARDEN_SECRET_KEY": secrets.token_hex(32),
            "POOLWARDEN_SECRETS_KEY_FILE": str(secrets_key),
            # The demo serves plain HTTP on loopback: a Secure cookie would never come back.
            "POOLWARDEN_INSECURE_COOKIES": "1",
        }
        if not secrets_key.exists():
            run_panel_command(demo_dir, panel_env, "secrets", "generate-key", "--out", str(secrets_key))
        step("applying the panel's database migrations")
        run_panel_command(demo_dir, panel_env, "migrate")
        admin_password = secrets.token_urlsafe(12)
        totp_file = demo_dir / "admin-totp-secret"
        run_panel_command(demo_dir, panel_env, "create-admin", "--username", DEMO_ADMIN, "--password-stdin",
                          "--totp-secret-out", str(totp_file), "--replace", stdin=admin_password + "\n")
        totp_secret = totp_file.read_text().strip()
        job_key = demo_dir / "agent-job.key"
        if not job_key.exists():
            job_key.write_text(secrets.token_hex(32) + "\n")
            job_key.chmod(0o600)
        run_panel_command(demo_dir, panel_env, "maintenance", "enrol", "pool-1", "--key-file", str(job_key),
                          "--replace")

        port = args.port or (PANEL_PORT if _port_free(PANEL_PORT) else free_port())
        panel_env["POOLWARDEN_EXTERNAL_URL"] = f"http://127.0.0.1:{port}"  # links in the notifications
        procs.append(ManagedProcess("notify-worker", [console_script("poolwarden-panel"), "notify-worker"],
                                    demo_dir / "notify-worker.log", env=panel_env).start())
        procs.append(ManagedProcess("engine", [console_script("poolwarden-panel"), "engine"],
                                    demo_dir / "engine.log", env=panel_env).start())
        panel = ManagedProcess("panel", [console_script("poolwarden-panel"), "serve", "--host", "127.0.0.1",
                                         "--port", str(port)], demo_dir / "panel.log", env=panel_env).start()
        procs.append(panel)

        agent_env = {
            "POOLWARDEN_HOST": "pool-1",
            "POOLWARDEN_REDIS_URL": redis.url,
            "POOLWARDEN_SPOOL_DIR": str(demo_dir / "agent-spool"),
            "POOLWARDEN_STATE_DIR": str(demo_dir / "agent-state"),
            "DOCKER_ENABLED": "false",  # the demo's pool runs in poolsim, not in containers
            "MININGCORE_API_URL": urls["api"],
            "MININGCORE_METRICS_URL": urls["api"] + "/metrics",
            "MININGCORE_DB_DSN": mc_dsn,
            "MININGCORE_LOG_DIR": str(logs),
            "ERGO_NODE_URL": urls["node"],
            "ERGO_NODE_API_KEY": "hello",
            "ERGO_NODE_DATA_DIR": str(node_data),
            "POOLWARDEN_BACKUP_DIR": str(backups),
            "MININGCORE_CONFIG_FILE": str(mc_config),
            "POOLWARDEN_JOB_KEY_FILE": str(job_key),
            "POOLWARDEN_SAFE_MODE_FILE": str(demo_dir / "agent-state" / "safe-mode"),
            "POOLWARDEN_WORK_DIR": str(demo_dir / "agent-work"),
            "POOLWARDEN_PANEL_DATABASE_DSN": pw_dsn,
        }
        if dockerd is not None:
            agent_env.update({"DOCKER_ENABLED": "true", "DOCKER_HOST": dockerd.url})
        else:
            agent_env.update({"MININGCORE_CONTAINER": "", "MININGCORE_DB_CONTAINER": ""})
        procs.append(ManagedProcess("agent", [
            console_script("poolwarden-agent"), "collect", "--config-dir", str(ROOT / "config"),
            "--interval", str(args.interval)], demo_dir / "agent.log", env=agent_env).start())
        procs.append(ManagedProcess("agent-worker", [
            console_script("poolwarden-agent"), "work", "--config-dir", str(ROOT / "config")],
            demo_dir / "agent-worker.log", env=agent_env).start())

        wait_for_port(port, timeout=30)
        print(f"""
  poolwarden demo is running.

    Panel:            http://127.0.0.1:{port}/
    Sign in:          user {DEMO_ADMIN}, password {admin_password}
    TOTP secret:      {totp_secret}
                      (add it to an authenticator app, or get the current code with
                       .venv/bin/python -m devtools.totp {totp_file})
    Disk API:         http://127.0.0.1:{port}/api/admin/system/disk
    Simulated pool:   {urls['api']}/api/pools
    Simulated node:   {urls['node']}/info
    Fault control:    {urls['control']}/state   (e.g. curl -X POST {urls['control']}/faults/node_stalled)
    Alert inbox:      e-mail in {inbox.mailbox}/, webhooks in {inbox.webhooks}
    Maintenance:      http://127.0.0.1:{port}/hosts/pool-1/maintenance  (worker log: agent-worker.log)

  Logs are in {demo_dir}/*.log. The agent reports every {args.interval} s; numbers change as the
  simulated pool moves. Press Ctrl-C to stop everything.
""", flush=True)

        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            for p in procs:
                if not p.alive():
                    raise RuntimeError(f"{p.name} stopped unexpectedly (exit {p.proc.returncode}); "
                                       f"last lines of {p.log_path}:\n{p.tail()}")
            time.sleep(1)
    except Stop:
        step("stopping")
    except Exception as exc:  # noqa: BLE001 - show the operator what failed, then clean up
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        return_code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):
            p.stop()
        for s in reversed(started):
            s.stop()
        pid_file.unlink(missing_ok=True)
        step("everything stopped")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
