"""What the panel's browser tests share: an admin with TOTP, the test app served on a free port, and
signing in through the real forms (the ``page`` fixture, a Chromium tab, is in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator

import pyotp
from werkzeug.serving import make_server

from devtools.services import free_port

ADMIN = "ops"
PASSWORD = "a long admin pass phrase"


def create_admin(runner) -> str:
    """An admin account ``ops``; returns its TOTP secret."""
    result = runner.invoke(args=["create-admin", "--username", ADMIN, "--password-stdin", "--totp-secret-out", "-"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return re.search(r"secret: ([A-Z2-7]+)", result.output)[1]


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """The app on a free loopback port (threaded), for as long as the block runs; yields its base URL."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def sign_in(page, base: str, secret: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(re.compile(r"/login/code$"))
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("main input[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
