"""Settings, the secret key rule, serving (and its cookie warning), and the number formats."""

from __future__ import annotations

import pytest

from panel import create_app
from panel.config import ConfigError, load_config
from panel.hosts.formatting import human_age, human_bytes, human_count, human_hashrate, human_si
from panel.server import bind_address, is_loopback


@pytest.fixture(autouse=True)
def secrets_key(monkeypatch):
    """Apps built outside TESTING need a secrets key, as a real install has."""
    from panel.secretbox import encode_key, new_key

    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY", encode_key(new_key()))


def test_load_config_reads_the_environment():
    config = load_config({
        "POOLWARDEN_DATABASE_URL": "postgresql://pw@db/pw",
        "POOLWARDEN_REDIS_URL": "redis://r:6379/0",
        "POOLWARDEN_SECRET_KEY": "k" * 32,
        "POOLWARDEN_STALE_AFTER_SECONDS": "90",
    })
    assert config == {"DATABASE_URL": "postgresql://pw@db/pw", "REDIS_URL": "redis://r:6379/0",
                      "SECRET_KEY": "k" * 32, "STALE_AFTER_SECONDS": 90,
                      "SESSION_COOKIE_SECURE": True, "SESSION_IDLE_MINUTES": 30, "SESSION_MAX_HOURS": 12,
                      "RETENTION_RAW_DAYS": 7, "RETENTION_1M_DAYS": 30, "RETENTION_1H_DAYS": 400,
                      "TRUSTED_PROXIES": []}
    assert load_config({})["STALE_AFTER_SECONDS"] == 60


def test_load_config_reads_the_security_settings():
    config = load_config({
        "POOLWARDEN_INSECURE_COOKIES": "1",
        "POOLWARDEN_SESSION_IDLE_MINUTES": "10",
        "POOLWARDEN_SESSION_MAX_HOURS": "4",
        "POOLWARDEN_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/24 fd00::/8",
    })
    assert config["SESSION_COOKIE_SECURE"] is False
    assert (config["SESSION_IDLE_MINUTES"], config["SESSION_MAX_HOURS"]) == (10, 4)
    assert config["TRUSTED_PROXIES"] == ["10.0.0.1/32", "192.168.0.0/24", "fd00::/8"]


@pytest.mark.parametrize("env, message", [
    ({"POOLWARDEN_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"}, "'proxy.local' is not an IPv4/IPv6 address"),
    ({"POOLWARDEN_SESSION_IDLE_MINUTES": "half an hour"}, "POOLWARDEN_SESSION_IDLE_MINUTES must be a whole number"),
    ({"POOLWARDEN_SESSION_MAX_HOURS": "0"}, "POOLWARDEN_SESSION_MAX_HOURS must be greater than 0"),
])
def test_bad_security_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_cookies_are_secure_outside_tests_and_plain_in_tests(monkeypatch):
    monkeypatch.delenv("POOLWARDEN_INSECURE_COOKIES", raising=False)
    app = create_app({"SECRET_KEY": "x" * 32, "DATABASE_URL": "postgresql://x@127.0.0.1/pw"})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    test_app = create_app({"TESTING": True, "SECRET_KEY": "x" * 32})
    assert test_app.config["SESSION_COOKIE_SECURE"] is False


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


@pytest.fixture
def served(monkeypatch):
    """Replace gunicorn by a recorder: which app, host and port serve would have run."""
    import panel.server

    calls = []
    monkeypatch.setattr(panel.server, "serve", lambda app, host, port, workers: calls.append((app, host, port)))
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_serve_beyond_loopback_warns_loudly_without_secure_cookies(runner, served, host):
    result = runner.invoke(args=["serve", "--host", host])  # the test app has plain (not Secure) cookies
    assert result.exit_code == 0, result.output
    assert served and served[0][1] == host
    assert f"WARNING: listening on {host} with POOLWARDEN_INSECURE_COOKIES=1" in result.output
    assert "anyone on the network path can steal" in result.output


def test_serve_beyond_loopback_with_secure_cookies_only_notes_https(app, runner, served):
    app.config["SESSION_COOKIE_SECURE"] = True
    result = runner.invoke(args=["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output
    assert "browsers sign in only over HTTPS" in result.output


def test_serve_on_loopback_does_not_warn(runner, served):
    result = runner.invoke(args=["serve", "--host", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output


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
def test_serve_runs_gunicorn_and_the_demo_admin_signs_in(db_url, redis_url, tmp_path):
    """The console script as the demo runs it: create-admin with an enrolled TOTP, serve, sign in over HTTP."""
    import os
    import signal
    import subprocess
    import sys

    import pyotp
    import requests

    from devtools.services import free_port, wait_for_port
    from panel.secretbox import encode_key, new_key
    from tests.panel.auth_helpers import csrf_token

    port = free_port()
    env = {**os.environ, "POOLWARDEN_DATABASE_URL": db_url, "POOLWARDEN_REDIS_URL": redis_url,
           "POOLWARDEN_SECRET_KEY": "a-test-secret-of-sufficient-length", "POOLWARDEN_INSECURE_COOKIES": "1",
           "POOLWARDEN_SECRETS_KEY": encode_key(new_key())}
    cli = [sys.executable, "-c", "from panel.cli import main; main()"]
    secret_file = tmp_path / "totp-secret"
    made = subprocess.run([*cli, "create-admin", "--username", "demo", "--password-stdin", "--totp-secret-out",
                           str(secret_file)], input="pool-watcher-1234\n", env=env, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    assert f"created admin 'demo' with TOTP enrolled; secret written to {secret_file}" in made.stdout
    assert secret_file.stat().st_mode & 0o777 == 0o600
    secret = secret_file.read_text().strip()

    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=30)
        with requests.Session() as http:
            assert http.get(f"{base}/healthz", timeout=5).json()["status"] == "ok"
            anonymous = http.get(f"{base}/", timeout=5, allow_redirects=False)
            assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
            page = http.get(f"{base}/login", timeout=5).text
            step = http.post(f"{base}/login", data={"csrf_token": csrf_token(page), "username": "demo",
                                                    "password": "pool-watcher-1234"}, timeout=10)
            assert step.url.endswith("/login/code"), step.text[:500]
            done = http.post(f"{base}/login/code", data={"csrf_token": csrf_token(step.text),
                                                         "code": pyotp.TOTP(secret).now()}, timeout=10)
            assert "No host has reported yet" in done.text
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


def test_retention_days_come_from_the_environment():
    config = load_config({"POOLWARDEN_RETENTION_RAW_DAYS": "3", "POOLWARDEN_RETENTION_1M_DAYS": "14",
                          "POOLWARDEN_RETENTION_1H_DAYS": "730"})
    assert (config["RETENTION_RAW_DAYS"], config["RETENTION_1M_DAYS"], config["RETENTION_1H_DAYS"]) == (3, 14, 730)
    with pytest.raises(ConfigError, match="POOLWARDEN_RETENTION_RAW_DAYS"):
        load_config({"POOLWARDEN_RETENTION_RAW_DAYS": "0"})
