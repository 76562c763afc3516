"""Settings, the secret key rule, loopback-only serving, and the number formats."""

from __future__ import annotations

import pytest

from panel import create_app
from panel.config import ConfigError, load_config
from panel.hosts.formatting import human_age, human_bytes, human_count, human_hashrate, human_si
from panel.server import bind_address, is_loopback


def test_load_config_reads_the_environment():
    config = load_config({
        "POOLWARDEN_DATABASE_URL": "postgresql://pw@db/pw",
        "POOLWARDEN_REDIS_URL": "redis://r:6379/0",
        "POOLWARDEN_SECRET_KEY": "k" * 32,
        "POOLWARDEN_STALE_AFTER_SECONDS": "90",
    })
    assert config == {"DATABASE_URL": "postgresql://pw@db/pw", "REDIS_URL": "redis://r:6379/0",
                      "SECRET_KEY": "k" * 32, "STALE_AFTER_SECONDS": 90}
    assert load_config({})["STALE_AFTER_SECONDS"] == 60


@pytest.mark.parametrize("value, message", [("soon", "whole number"), ("0", "greater than 0"), ("-5", "greater")])
def test_bad_stale_after_is_refused(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"POOLWARDEN_STALE_AFTER_SECONDS": value})


@pytest.mark.parametrize("key, message", [(None, "is not set"), ("dev", "is too short")])
def test_app_refuses_to_start_without_a_real_secret_key(monkeypatch, key, message):
    monkeypatch.delenv("POOLWARDEN_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match=f"POOLWARDEN_SECRET_KEY {message}"):
        create_app({"SECRET_KEY": key, "DATABASE_URL": "postgresql://x@127.0.0.1/pw"})


def test_app_starts_with_a_real_secret_key():
    app = create_app({"SECRET_KEY": "x" * 32, "DATABASE_URL": "postgresql://x@127.0.0.1/pw"})
    assert not app.testing


def test_app_needs_a_database_url_outside_tests(monkeypatch):
    monkeypatch.delenv("POOLWARDEN_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="POOLWARDEN_DATABASE_URL"):
        create_app({"SECRET_KEY": "x" * 32})


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("panel.example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_bind_address():
    assert bind_address("127.0.0.1", 8050) == "127.0.0.1:8050"
    assert bind_address("::1", 8050) == "[::1]:8050"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "panel.example.org"])
def test_serve_refuses_non_loopback(runner, host):
    result = runner.invoke(args=["serve", "--host", host])
    assert result.exit_code == 2
    assert f"refusing to listen on {host}" in result.output
    assert "loopback only" in result.output


@pytest.mark.parametrize("func, value, expected", [
    (human_bytes, None, "—"),
    (human_bytes, 512, "512 B"),
    (human_bytes, 1536, "1.5 KiB"),
    (human_bytes, 250 * 2**30, "250.0 GiB"),
    (human_bytes, 3 * 2**40, "3.0 TiB"),
    (human_hashrate, 950, "950 H/s"),
    (human_hashrate, 1_250, "1.25 kH/s"),
    (human_hashrate, 1.25e9, "1.25 GH/s"),
    (human_hashrate, 21.3e12, "21.30 TH/s"),
    (human_si, 999, "999"),
    (human_si, 1.5e15, "1.50 P"),
    (human_count, 1234567, "1,234,567"),
    (human_count, 2.5, "2.50"),
    (human_age, 4, "4 s ago"),
    (human_age, 119, "119 s ago"),
    (human_age, 300, "5 min ago"),
    (human_age, 4 * 3600, "4 h ago"),
    (human_age, 3 * 86400, "3 d ago"),
    (human_age, None, "never"),
])
def test_human_formats(func, value, expected):
    assert func(value) == expected


@pytest.mark.slow
def test_serve_runs_gunicorn_on_loopback(db_url, redis_url, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import requests

    from devtools.services import free_port, wait_for_port

    port = free_port()
    env = {**os.environ, "POOLWARDEN_DATABASE_URL": db_url, "POOLWARDEN_REDIS_URL": redis_url,
           "POOLWARDEN_SECRET_KEY": "a-test-secret-of-sufficient-length"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from panel.cli import main; main()", "serve", "--port", str(port),
                             "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30)
        with requests.Session() as http:
            assert http.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
            assert "No host has reported yet" in http.get(f"http://127.0.0.1:{port}/", timeout=5).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_without_secret_key_says_what_to_set(monkeypatch):
    from click.testing import CliRunner

    from panel.cli import main

    monkeypatch.setenv("POOLWARDEN_DATABASE_URL", "postgresql://x@127.0.0.1/pw")
    monkeypatch.delenv("POOLWARDEN_SECRET_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "POOLWARDEN_SECRET_KEY is not set" in result.output
