"""The Vagrantfile validates, and its docker provider brings up both machines provisioned by
site.yml, on the same locally built systemd image as the other deployment tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.deploy.conftest import LOG_DIR, ROOT, VENV_BIN, docker, recap

pytestmark = pytest.mark.slow

needs_vagrant = pytest.mark.skipif(not shutil.which("vagrant") and os.geteuid() != 0,
                                   reason="vagrant is not installed (apt-get install vagrant)")


def vagrant(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def vagrant_env(session_dir):
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "VAGRANT_CHECKPOINT_DISABLE": "1",
            # Vagrant's state (.vagrant/) in the session directory, not in the work tree.
            "VAGRANT_DOTFILE_PATH": str(session_dir / "vagrant-state"), "VAGRANT_NO_COLOR": "1"}


@needs_vagrant
def test_vagrantfile_validates(vagrant_env):
    result = vagrant("validate", "--ignore-provider", env=vagrant_env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_vagrant
@pytest.mark.timeout(600)
def test_vagrant_up_with_the_docker_provider(docker_engine, systemd_image, wheelhouse, vagrant_env):
    env = {**vagrant_env, "DOCKER_HOST": docker_engine.url, "POOLWARDEN_WHEELHOUSE": str(wheelhouse),
           "POOLWARDEN_VAGRANT_IMAGE": systemd_image, "ANSIBLE_NOCOLOR": "1"}
    started = time.monotonic()
    try:
        up = vagrant("up", "--provider=docker", env=env)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        (LOG_DIR / "vagrant-up.log").write_text(up.stdout + "\n--- stderr ---\n" + up.stderr)
        print(f"vagrant up --provider=docker: {time.monotonic() - started:.0f} s")
        assert up.returncode == 0, up.stdout[-5000:] + up.stderr[-3000:]
        totals = recap(up.stdout)
        assert set(totals) == {"panel", "pool-1"}
        assert all(t["failed"] == 0 and t["unreachable"] == 0 for t in totals.values()), totals
        status = vagrant("status", env=env, timeout=120).stdout
        assert status.count("running (docker)") == 2, status
        for machine, units in [("pool-1", ["poolsim", "poolwarden-agent", "poolwarden-agent-worker"]),
                               ("panel", ["poolwarden-engine", "poolwarden-panel", "poolwarden-notify-worker"])]:
            container = f"poolwarden-vagrant-{machine}"
            active = docker(docker_engine, "exec", container, "systemctl", "is-active", *units, check=False)
            journal = docker(docker_engine, "exec", container, "journalctl", "-n", "40", "--no-pager",
                             *(f"--unit={u}" for u in units), check=False).stdout
            assert active.stdout.split() == ["active"] * len(units), journal
        # The pool host reaches the panel across the machines' private network: its samples arrive.
        query = ("SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id JOIN hosts h ON h.id = r.host_id"
                 " WHERE h.name = 'pool-1'")
        deadline = time.monotonic() + 60
        while True:
            count = docker(docker_engine, "exec", "-w", "/", "poolwarden-vagrant-panel", "runuser", "-u", "postgres",
                           "--", "psql", "-d", "poolwarden", "-Atc", query, check=False).stdout.strip()
            if (count.isdigit() and int(count) > 0) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert count.isdigit() and int(count) > 0, f"no sample of pool-1 reached the panel: {count!r}"
    finally:
        vagrant("destroy", "-f", env=env, timeout=300)
