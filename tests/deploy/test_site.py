"""site.yml converges a control host and a pool host, the pieces work together, and a second run
changes nothing."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import LOG_DIR, recap, run_playbook, sh

pytestmark = pytest.mark.slow

PANEL_UNITS = ["redis-server", "postgresql@15-main", "nginx", "poolwarden-engine", "poolwarden-panel"]
POOL_UNITS = ["postgresql@15-main", "poolsim", "poolwarden-agent"]


def test_site_converges_without_failures(converged):
    _, result = converged
    totals = recap(result.stdout)
    assert set(totals) == {"panel", "pool-1"}
    for host, counts in totals.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0, (host, counts)


@pytest.mark.parametrize(("host", "units"), [("panel", PANEL_UNITS), ("pool-1", POOL_UNITS)])
def test_every_unit_is_active_and_enabled(converged, host, units):
    engine, _ = converged
    active = sh(engine, host, "systemctl is-active " + " ".join(units), check=False).stdout.split()
    assert dict(zip(units, active, strict=True)) == dict.fromkeys(units, "active")
    enabled = sh(engine, host, "systemctl is-enabled " + " ".join(u for u in units if "@" not in u),
                 check=False).stdout.split()
    assert set(enabled) == {"enabled"}


def container_ip(engine, name: str) -> str:
    from tests.deploy.conftest import docker

    return docker(engine, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  name).stdout.strip()


def wait_for(check, timeout: float = 60, interval: float = 1.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


SERVER_NAME = "panel.poolwarden.test"  # poolwarden_panel_server_name in inventory/vagrant


def panel_https(engine, tmp_path_factory):
    """A connection pool to nginx on the panel that trusts exactly the panel's (self-signed) certificate."""
    import urllib3

    from tests.deploy.conftest import docker

    cert = tmp_path_factory.mktemp("tls") / "panel.crt"
    cert.write_text(docker(engine, "exec", "panel", "cat", "/etc/nginx/poolwarden-tls/panel.crt").stdout)
    return urllib3.HTTPSConnectionPool(container_ip(engine, "panel"), 443, ca_certs=str(cert),
                                       cert_reqs="CERT_REQUIRED", server_hostname=SERVER_NAME,
                                       assert_hostname=SERVER_NAME, timeout=10.0, retries=False)


def test_panel_answers_over_https_through_nginx(converged, tmp_path_factory):
    import requests

    engine, _ = converged
    plain = requests.get(f"http://{container_ip(engine, 'panel')}/healthz", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    response = panel_https(engine, tmp_path_factory).request("GET", "/healthz", headers={"Host": SERVER_NAME})
    assert response.status == 200 and response.json()["status"] == "ok"
    assert response.headers["Server"] == "nginx"
    # gunicorn itself listens on loopback only.
    listening = sh(engine, "panel", "ss -Htln 'sport = :8050'").stdout
    assert "127.0.0.1:8050" in listening and "0.0.0.0:8050" not in listening


PANEL_SQL = "runuser -u postgres -- psql -d poolwarden -Atc"


def test_pool_host_samples_reach_the_panel_database(converged):
    engine, _ = converged

    def samples() -> int:
        query = ("SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id JOIN hosts h ON h.id = r.host_id"
                 " WHERE h.name = 'pool-1' AND r.name = 'poolwarden_pool_hashrate_hps'")
        out = sh(engine, "panel", f'cd / && {PANEL_SQL} "{query}"', check=False).stdout.strip()
        return int(out) if out.isdigit() else 0

    assert wait_for(lambda: samples() > 0, timeout=60), "no sample of pool-1 in the panel's database"


LOGIN_PASSWORD = "panel-check-password-0000"
CREATE_ADMIN = ("set -a; . /etc/poolwarden/panel.env; set +a; exec /opt/poolwarden/venv/bin/poolwarden-panel "
                "create-admin --username deploy-test --password-stdin --totp-secret-out - --replace")


def signed_in(engine):
    """A requests session signed in to the panel (password + TOTP) as a fresh admin."""
    import functools
    import re
    import warnings

    import pyotp
    import requests
    from urllib3.exceptions import InsecureRequestWarning

    from tests.deploy.conftest import docker

    created = docker(engine, "exec", "-i", "panel", "runuser", "-u", "poolwarden", "--", "sh", "-c", CREATE_ADMIN,
                     input=LOGIN_PASSWORD + "\n").stdout
    secret = created.rsplit("secret:", 1)[1].strip()
    base = f"https://{container_ip(engine, 'panel')}"
    session = requests.Session()
    # Per request, not session.verify: REQUESTS_CA_BUNDLE in the environment would override that. The
    # certificate itself is checked in test_panel_answers_over_https_through_nginx.
    session.request = functools.partial(session.request, verify=False)  # type: ignore[method-assign]

    def csrf(path: str) -> str:
        page = session.get(base + path, timeout=10)
        return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        # A browser sends Referer on same-origin posts; Flask-WTF insists on it over HTTPS.
        step = session.post(base + "/login", timeout=10, headers={"Referer": base + "/login"},
                            data={"csrf_token": csrf("/login"), "username": "deploy-test",
                                  "password": LOGIN_PASSWORD, "next": ""})
        assert step.url.endswith("/login/code"), (step.status_code, step.text[:600])
        done = session.post(base + "/login/code", timeout=10, headers={"Referer": base + "/login/code"},
                            data={"csrf_token": csrf("/login/code"), "code": pyotp.TOTP(secret).now()})
        assert done.status_code == 200 and "/login" not in done.url, (done.status_code, done.text[:600])
    return session, base


def test_pool_host_appears_in_the_panel_api(converged):
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    engine, _ = converged
    session, base = signed_in(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        anonymous = session.__class__().get(base + "/api/hosts", verify=False, timeout=10)
        assert anonymous.status_code in (401, 403)

        def hosts() -> list[str]:
            response = session.get(base + "/api/hosts", timeout=10)
            assert response.status_code == 200, response.text[:500]
            return [h["name"] for h in response.json()["hosts"]]

        assert wait_for(lambda: "pool-1" in hosts(), timeout=60)


REDIS_PROBE = r"""
import socket, sys
def ask(*commands):
    with socket.create_connection(("panel", 6379), timeout=5) as s:
        replies = []
        for cmd in commands:
            parts = cmd.split()
            s.sendall(("*%d\r\n" % len(parts) + "".join("$%d\r\n%s\r\n" % (len(p), p) for p in parts)).encode())
            replies.append(s.recv(4096).decode().strip())
        return replies
print("|".join(ask("PING")))
print("|".join(ask("AUTH agent-pool-1 %s" % sys.argv[1], "XLEN pw:samples:pool-1", "XLEN pw:samples:other", "KEYS *")))
"""


def test_redis_refuses_clients_without_a_password_and_confines_agents(converged):
    engine, _ = converged
    from tests.deploy.conftest import docker

    out = docker(engine, "exec", "pool-1", "python3", "-c", REDIS_PROBE, "vagrant-redis-pool1-0000").stdout.splitlines()
    assert out[0].startswith("-NOAUTH")
    auth, own, other, keys = out[1].split("|")
    assert auth == "+OK"
    assert own.startswith("-NOPERM")  # XLEN is not an agent's command: it may only append
    assert other.startswith("-NOPERM") and keys.startswith("-NOPERM")


def test_second_converge_changes_nothing(converged, wheelhouse):
    engine, _ = converged
    result = run_playbook(engine, "playbooks/site.yml", {"common_wheelhouse_archive": str(wheelhouse)},
                          LOG_DIR / "converge-2.log")
    print(f"second converge: {result.seconds:.0f} s")  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout[-4000:]
    totals = recap(result.stdout)
    changed = [line for line in result.stdout.splitlines() if line.startswith("changed:")]
    assert all(c["changed"] == 0 for c in totals.values()), (totals, changed)
