"""site.yml converges a control host and a pool host, the pieces work together, and a second run
changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.deploy.conftest import LOG_DIR, recap, run_playbook, sh

pytestmark = pytest.mark.slow

PANEL_UNITS = ["redis-server", "postgresql@15-main", "nginx", "poolwarden-engine", "poolwarden-panel",
               "poolwarden-notify-worker"]
POOL_UNITS = ["postgresql@15-main", "poolsim", "poolwarden-agent", "poolwarden-agent-worker"]
JOB_KEY = "e2b8a1f6cf3ee39763cfff23acdf1913dba1336d2e6106c34c7b327c4fed9be8"  # pool-1's, inventory/vagrant vault


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
    # poolwarden's own units came up once and stayed up: none is crash-looping behind Restart=on-failure.
    for unit in (u for u in units if u.startswith("poolwarden")):
        restarts = sh(engine, host, f"systemctl show -p NRestarts --value {unit}").stdout.strip()
        assert restarts == "0", sh(engine, host, f"journalctl -u {unit} -n 30 --no-pager", check=False).stdout


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
        # The API takes the session's CSRF token in a header, as the panel's own scripts send it.
        session.headers.update({"X-CSRFToken": csrf("/"), "Referer": base + "/"})
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
print("|".join(ask("AUTH agent-pool-1 %s" % sys.argv[1], "XLEN pw:samples:pool-1", "XLEN pw:samples:other",
                  "LLEN rq:queue:maint:pool-2", "KEYS *")))
"""


def test_redis_refuses_clients_without_a_password_and_confines_agents(converged):
    engine, _ = converged
    from tests.deploy.conftest import docker

    out = docker(engine, "exec", "pool-1", "python3", "-c", REDIS_PROBE, "vagrant-redis-pool1-0000").stdout.splitlines()
    assert out[0].startswith("-NOAUTH")
    auth, own, other, other_queue, keys = out[1].split("|")
    assert auth == "+OK"
    assert own.startswith(":")  # its own stream (agent.contract.agent_redis_acl_rules) ...
    # ... but not another host's stream or maintenance queue, and no command that walks every key.
    assert other.startswith("-NOPERM") and other_queue.startswith("-NOPERM") and keys.startswith("-NOPERM")


def api(session, method: str, url: str, **kwargs):
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        return session.request(method, url, timeout=15, **kwargs)


def run_job(session, base: str, action: str, params: dict, timeout: float = 120) -> dict:
    """Queue a maintenance action for pool-1 through the panel's API and wait until it has finished."""
    import time

    queued = api(session, "POST", f"{base}/api/admin/maintenance/{action}?host=pool-1", json=params)
    assert queued.status_code == 202, (queued.status_code, queued.text[:800])
    job_id = queued.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        job = api(session, "GET", f"{base}/api/admin/maintenance/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(1)


def test_the_panel_provisions_the_inventory_schedules(converged):
    engine, _ = converged
    session, base = signed_in(engine)
    listing = api(session, "GET", f"{base}/api/admin/maintenance/schedules?host=pool-1").json()
    assert listing["provisioning"]["path"] == "/etc/poolwarden/maintenance.json"
    assert listing["provisioning"]["error"] is None
    provisioned = {s["name"]: s["action"] for s in listing["schedules"] if s["provisioned"]}
    assert provisioned == {"pool-1-nightly-backup": "backup", "pool-1-weekly-vacuum": "vacuum",
                           "pool-1-log-rotation": "rotate_logs"}
    env = sh(engine, "panel", "cat /etc/poolwarden/panel.env").stdout
    for setting, file in [("ALERTS", "alerts"), ("INTEGRATIONS", "integrations"), ("MAINTENANCE", "maintenance")]:
        assert f"POOLWARDEN_{setting}_CONFIG=/etc/poolwarden/{file}.json" in env
    modes = sh(engine, "panel", "stat -c '%n %U:%G %a' /etc/poolwarden/alerts.json /etc/poolwarden/integrations.json"
                                " /etc/poolwarden/maintenance.json").stdout.split("\n")
    assert all(line.endswith(" root:poolwarden 640") for line in filter(None, modes)), modes


def test_backup_requested_in_the_panel_runs_on_the_pool_host(converged):
    engine, _ = converged
    # The job key the worker checks signatures with, installed from the vault for the service user only.
    assert sh(engine, "pool-1", "stat -c '%U:%G %a' /etc/poolwarden/job.key").stdout.split() == ["root:poolwarden",
                                                                                              "640"]
    assert sh(engine, "pool-1", "cat /etc/poolwarden/job.key").stdout.strip() == JOB_KEY
    session, base = signed_in(engine)
    job = run_job(session, base, "backup", {})
    assert job["status"] == "succeeded", (job["status"], job["error"], job.get("progress"))
    assert job["host"] == "pool-1" and job["requested_by"].endswith("deploy-test")
    backup = job["details"]["file"]
    assert backup.startswith("/var/backups/poolwarden/miningcore-") and backup.endswith(".dump")
    assert job["summary"].startswith(backup.rsplit("/", 1)[1]) and "verified" in job["summary"]
    assert any("pg_restore --list" in line for line in job["progress"])
    # The file is on the pool host, owned by the agent's user, private, and checks out with its checksum.
    listing = sh(engine, "pool-1", f"stat -c '%U %a %s' {backup} && cd /var/backups/poolwarden && "
                                   f"sha256sum -c {backup.rsplit('/', 1)[1]}.sha256").stdout.split("\n")
    owner, mode, size = listing[0].split()
    assert (owner, mode) == ("poolwarden", "600") and int(size) == job["details"]["size"] > 0
    assert listing[1].endswith(": OK")
    manifest = json.loads(sh(engine, "pool-1", f"cat {backup}.json").stdout)
    assert manifest["verified"] is True and manifest["row_counts"]["shares"] > 0


def test_vacuum_runs_as_the_owner_of_miningcore_tables(converged):
    engine, _ = converged
    session, base = signed_in(engine)
    job = run_job(session, base, "vacuum", {"tables": ["shares", "blocks"]})
    assert job["status"] == "succeeded", (job["status"], job["error"], job.get("progress"))
    # As a role that does not own them, PostgreSQL 15 would skip the tables with a mere warning.
    vacuumed = sh(engine, "pool-1", "cd / && runuser -u postgres -- psql -d miningcore -Atc \"SELECT relname FROM "
                                    "pg_stat_user_tables WHERE last_vacuum IS NOT NULL ORDER BY relname\"").stdout
    assert vacuumed.split() == ["blocks", "shares"]


def test_log_rotation_truncates_the_pool_logs_in_place(converged):
    engine, _ = converged
    session, base = signed_in(engine)
    job = run_job(session, base, "rotate_logs", {"force": True})
    assert job["status"] == "succeeded", (job["status"], job["error"], job.get("progress"))
    rotated = {item["file"] for item in job["details"]["rotated"]}
    assert "/var/log/poolsim/miningcore.log" in rotated
    # copytruncate: poolsim keeps writing into the same file; the rotated copy sits beside it, compressed.
    assert sh(engine, "pool-1", "gzip -t /var/log/poolsim/miningcore.log.1.gz && stat -c %U /var/log/poolsim/"
                                "miningcore.log.1.gz").stdout.strip() == "poolwarden"


def test_worker_restarts_only_its_own_units(converged):
    engine, _ = converged

    def main_pid() -> str:
        return sh(engine, "pool-1", "systemctl show -p MainPID --value poolsim").stdout.strip()

    before = main_pid()
    session, base = signed_in(engine)  # a fresh TOTP sign-in counts as the step-up a restart needs
    job = run_job(session, base, "restart", {"service": "miningcore"})
    assert job["status"] == "succeeded", (job["status"], job["error"], job.get("progress"))
    assert "poolsim.service" in job["summary"] and "healthy" in job["summary"]
    assert main_pid() not in (before, "0")
    assert sh(engine, "pool-1", "systemctl is-active poolsim").stdout.strip() == "active"
    # The polkit rule names the configured units only: any other unit is refused to the agent's user.
    refused = sh(engine, "pool-1", "runuser -u poolwarden -- systemctl --no-ask-password restart ssh.service",
                 check=False)
    assert refused.returncode != 0, refused.stdout
    assert "Interactive authentication required" in refused.stderr or "Access denied" in refused.stderr, refused.stderr


def test_worker_writes_only_where_its_actions_must(converged):
    engine, _ = converged
    unit = sh(engine, "pool-1", "systemctl show -p ReadWritePaths -p ProtectSystem -p User -p NoNewPrivileges "
                                "poolwarden-agent-worker").stdout
    props = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line)
    assert props["User"] == "poolwarden" and props["ProtectSystem"] == "strict" and props["NoNewPrivileges"] == "yes"
    assert sorted(props["ReadWritePaths"].split()) == sorted(
        ["/var/lib/poolwarden/agent-work", "/var/backups/poolwarden", "-/var/log/poolsim"])
    # The maintenance DSN is for systemd's eyes only; the collector keeps the read-only role.
    assert sh(engine, "pool-1", "stat -c '%U:%G %a' /etc/poolwarden/agent-worker.env").stdout.split() == ["root:root",
                                                                                                         "600"]
    assert sh(engine, "pool-1", "cat /etc/poolwarden/agent-worker.env").stdout.count(
        'POOLWARDEN_MININGCORE_DB_DSN="postgresql://miningcore:') == 1
    pool = json.loads(sh(engine, "pool-1", "cat /etc/poolwarden/pool.json").stdout)
    assert pool["miningcore"]["database"]["dsn"].startswith("${POOLWARDEN_MININGCORE_DB_DSN:-postgresql://poolwarden_agent:")


def test_second_converge_changes_nothing(converged, wheelhouse):
    engine, _ = converged
    result = run_playbook(engine, "playbooks/site.yml", {"common_wheelhouse_archive": str(wheelhouse)},
                          LOG_DIR / "converge-2.log")
    print(f"second converge: {result.seconds:.0f} s")  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stdout[-4000:]
    totals = recap(result.stdout)
    changed = [line for line in result.stdout.splitlines() if line.startswith("changed:")]
    assert all(c["changed"] == 0 for c in totals.values()), (totals, changed)


SHOW_KEY = ("set -a; . /etc/poolwarden/panel.env; set +a; exec /opt/poolwarden/venv/bin/poolwarden-panel "
            "maintenance {}")


def test_a_job_key_changed_in_the_panel_is_enrolled_again(converged, wheelhouse):
    engine, _ = converged
    # Someone replaced pool-1's key in the panel by hand: its jobs would now be refused by the agent.
    sh(engine, "panel", "runuser -u poolwarden -- sh -c '" + SHOW_KEY.format("enrol pool-1 --replace") + "' >/dev/null")
    assert sh(engine, "panel", "runuser -u poolwarden -- sh -c '" + SHOW_KEY.format("key pool-1") + "'"
              ).stdout.strip() != JOB_KEY
    result = run_playbook(engine, "playbooks/panel.yml", {"common_wheelhouse_archive": str(wheelhouse)},
                          LOG_DIR / "converge-job-keys.log", "--tags", "job_keys")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)["panel"]["changed"] == 1
    assert sh(engine, "panel", "runuser -u poolwarden -- sh -c '" + SHOW_KEY.format("key pool-1") + "'"
              ).stdout.strip() == JOB_KEY
