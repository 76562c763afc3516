"""Real receivers for notification tests: a webhook sink (HTTP on loopback) and an SMTP server (aiosmtpd).

``WebhookSink`` records every request (method, path, headers, body, arrival time) and answers
with the status codes it is told to, in order (then 200): ``sink.respond(500, 500)`` makes the
first two requests fail. ``SmtpSink`` is aiosmtpd's real SMTP server; ``messages`` are the parsed
e-mails as received. Both have pytest fixtures below (import them into a test module).
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools.services import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    def json(self):
        return json.loads(self.body)


@dataclass
class WebhookSink:
    """An HTTP server on 127.0.0.1 that records requests and answers as scripted."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    _script: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    delay: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def respond(self, *statuses: int) -> None:
        """Answer the next requests with these status codes (afterwards 200 again)."""
        with self._lock:
            self._script.extend(statuses)

    def start(self) -> WebhookSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if sink.delay:
                    time.sleep(sink.delay)
                with sink._lock:
                    status = sink._script.popleft() if sink._script else 200
                    sink.requests.append(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                                  body, time.time(), status))
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.port = self.port or free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0, ok_only: bool = False) -> list[Received]:
        """Wait until ``count`` requests (or successful ones) arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.requests if r.status < 300] if ok_only else list(self.requests)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"the webhook sink got {len(self.requests)} requests, expected {count}: "
                             f"{[r.status for r in self.requests]}")


class SmtpSink:
    """aiosmtpd's SMTP server on a loopback port, keeping every message it accepts."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.envelopes: list = []
        self.refuse: dict[str, str] = {}   # recipient -> SMTP reply, e.g. "550 5.1.1 no such user"
        self._controller = None

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
                if address in sink.refuse:
                    return sink.refuse[address]
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
                sink.envelopes.append(envelope)
                return "250 Message accepted for delivery"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(e.original_content or e.content, policy=email.policy.default)
                for e in self.envelopes]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.envelopes) >= count:
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"the SMTP server got {len(self.envelopes)} messages, expected {count}")


@pytest.fixture
def webhook_sink():
    sink = WebhookSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()
