"""Private PostgreSQL and Redis servers for the demo and the tests.

Each server lives in a directory of its own under the project's run directory (``.run/``), listens
on 127.0.0.1 on a free port, and is stopped by ``stop()`` (or the context manager). The machine's
default services and ports are never touched.

As root, PostgreSQL runs as the ``postgres`` system user (``initdb`` refuses root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("POOLWARDEN_RUN_DIR", ROOT / ".run"))


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing answered on {host}:{port} within {timeout:.0f} s")


def _pg_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL server binaries not found: install them with 'apt-get install -y postgresql'")


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a loopback port."""

    def __init__(self, name: str = "postgres", base: Path | None = None, port: int | None = None):
        self.dir = (base or RUN_DIR) / name
        self.port = port or free_port()
        self.bindir = _pg_bindir()
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.log = self.dir / "postgres.log"
        self.user = "postgres"
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    # -- helpers
    def _cmd(self, args: list[str]) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return args

    def _chown(self, path: Path) -> None:
        if self._run_as:
            pw = pwd.getpwnam(self._run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        auth = user or self.user
        if password:
            auth += ":" + password
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle
    def start(self) -> PrivatePostgres:
        if self.dir.exists():
            self.stop(quiet=True)
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.sockdir.mkdir()
        for p in (self.dir, self.sockdir):
            self._chown(p)
        init = subprocess.run(
            self._cmd([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                       "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"]),
            capture_output=True, text=True, cwd="/",
        )
        if init.returncode != 0:
            raise ServiceError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        start = subprocess.run(
            self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                       "-o", opts, "-w", "-t", "30", "start"]),
            capture_output=True, text=True, cwd="/",
        )
        if start.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ServiceError(f"PostgreSQL did not start on port {self.port}: {start.stderr.strip()}\n{log}")
        return self

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, quiet: bool = False) -> None:
        if not self.data.exists():
            return
        result = subprocess.run(
            self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "20", "stop"]),
            capture_output=True, text=True, cwd="/",
        )
        if result.returncode != 0:
            pid = self.pid()
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not quiet and pid:
                raise ServiceError(f"pg_ctl stop failed: {result.stderr.strip()}")

    def create_database(self, name: str, owner: str | None = None) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            if owner:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE ROLE "{owner}" LOGIN')
                conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
            else:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(quiet=True)


class PrivateRedis:
    """A throw-away Redis server on a loopback port."""

    def __init__(self, name: str = "redis", base: Path | None = None, port: int | None = None,
                 appendonly: bool = True):
        self.dir = (base or RUN_DIR) / name
        self.port = port or free_port()
        self.appendonly = appendonly
        self.pidfile = self.dir / "redis.pid"
        self.log = self.dir / "redis.log"
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise ServiceError("redis-server not found: install it with 'apt-get install -y redis-server'")
        self.binary = binary

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, fresh: bool = True) -> PrivateRedis:
        if fresh and self.dir.exists():
            self.stop()
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
                "--pidfile", str(self.pidfile), "--dir", str(self.dir), "--logfile", str(self.log),
                "--save", "", "--protected-mode", "yes"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"redis-server failed to start: {result.stderr.strip() or result.stdout.strip()}")
        wait_for_port(self.port)
        self._wait_until_loaded()
        return self

    def _wait_until_loaded(self, timeout: float = 15.0) -> None:
        """A restarted Redis answers LOADING while it replays its append-only file: wait for PING."""
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.BusyLoadingError, redis.ConnectionError):
                    if time.monotonic() > deadline:
                        raise ServiceError(f"Redis on port {self.port} still loading after {timeout:.0f} s") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def restart(self) -> None:
        """Stop and start again on the same port, keeping the data (for durability tests)."""
        self.stop()
        self.start(fresh=False)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
