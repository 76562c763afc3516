"""The demo's inbox: where its alert notifications land, so an operator can see them arrive.

A real SMTP server (aiosmtpd) that stores each message as ``mailbox/<n>.eml``, and an HTTP
endpoint that appends each webhook body, with its signature header, to ``webhooks.jsonl``.
Both listen on loopback only.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from devtools.services import free_port


class Inbox:
    def __init__(self, directory: Path):
        self.dir = directory
        self.mailbox = directory / "mailbox"
        self.webhooks = directory / "webhooks.jsonl"
        self.smtp_port = free_port()
        self._smtp = None
        self._http: ThreadingHTTPServer | None = None

    @property
    def webhook_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}/hooks/poolwarden"

    def start(self) -> Inbox:
        from aiosmtpd.controller import Controller

        self.mailbox.mkdir(parents=True, exist_ok=True)
        mailbox = self.mailbox

        class Store:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{len(list(mailbox.iterdir())) + 1:04d}.eml"
                (mailbox / name).write_bytes(envelope.original_content or envelope.content)
                return "250 stored"

        self._smtp = Controller(Store(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        log = self.webhooks

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = body.decode(errors="replace")
                with log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"received": time.time(), "path": self.path,
                                        "signature": self.headers.get("X-Poolwarden-Signature"),
                                        "body": parsed}) + "\n")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def integrations_config(self) -> dict:
        """The example config/integrations.json, pointed at this inbox."""
        example = json.loads((Path(__file__).resolve().parents[1] / "config" / "integrations.json").read_text())
        for integration in example["integrations"]:
            if integration["type"] == "webhook":
                integration.update(url=self.webhook_url, secret=secrets.token_hex(16))
            elif integration["type"] == "email":
                integration.update(smtpHost="127.0.0.1", smtpPort=self.smtp_port, security="none", username="",
                                   password="")
        return example
