"""Agent test helpers: a real local HTTP server that serves the reference fixtures, and config files."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path("/work/shared/reference/fixtures")


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text(encoding="utf-8")


class FixtureServer:
    """``routes[path] = (status, body, content_type)``; tests change routes while it runs.

    Every request is recorded in ``requests`` as (path, headers) for assertions.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append((self.path, dict(self.headers.items())))
                route = server.routes.get(self.path) or server.routes.get(self.path.split("?", 1)[0])
                if callable(route):
                    route = route(self.path)
                status, body, ctype = route or (404, "Not found", "text/plain")
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: str | dict, status: int = 200, content_type: str = "application/json") -> None:
        if not isinstance(body, str):
            body = json.dumps(body)
        self.routes[path] = (status, body, content_type)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def miningcore_server():
    """A Miningcore API answering /api/pools and /api/pools/ergo1 from the fixtures."""
    server = FixtureServer()
    server.serve("/api/pools", fixture_text("miningcore/api_pools.json"))
    server.serve("/api/pools/ergo1", fixture_text("miningcore/api_pools_ergo1.json"))
    server.serve("/api/pools/ergo1/blocks", fixture_text("miningcore/api_pools_ergo1_blocks.json"))
    server.serve("/api/pools/ergo1/payments", fixture_text("miningcore/api_pools_ergo1_payments.json"))
    server.serve("/metrics", fixture_text("miningcore/metrics.txt"), content_type="text/plain; version=0.0.4")
    yield server
    server.close()


@pytest.fixture
def ergo_server():
    """An Ergo node answering /info from the fixture."""
    server = FixtureServer()
    server.serve("/info", fixture_text("ergo/info.json"))
    server.serve("/blocks/lastHeaders/1", json.dumps(json.loads(fixture_text("ergo/blocks_lastHeaders_2.json"))[-1:]))
    yield server
    server.close()


@pytest.fixture
def refused_url():
    """An http URL on a loopback port nothing listens on."""
    from devtools.services import free_port

    return f"http://127.0.0.1:{free_port()}"


def write_config(directory: Path, pool: dict, monitoring: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pool.json").write_text(json.dumps(pool, indent=2))
    (directory / "monitoring.json").write_text(json.dumps(monitoring, indent=2))
    return directory


def example_config() -> tuple[dict, dict]:
    """The repository's example files, as dicts."""
    root = Path(__file__).resolve().parents[2] / "config"
    return (json.loads((root / "pool.json").read_text()), json.loads((root / "monitoring.json").read_text()))
