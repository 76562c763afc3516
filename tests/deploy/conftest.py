"""Deployment tests: the Ansible roles converge onto systemd containers on a private Docker engine.

The Debian 12 systemd image is built once with debootstrap (deploy/images/build-systemd-image.sh)
and kept as a tarball under ``.run/deploy-cache/``, named by a hash of the build script, so later
runs only ``docker import`` it. The containers run on a user-defined bridge network of the private
engine (``--bridge=none`` only removes the default bridge; a user-defined one works with iptables
off), so the pool host reaches the panel's Redis over a real network, by name.

Every container gets what systemd needs to boot unprivileged (TESTING.md): tmpfs on /run and
/run/lock, the cgroup tree read-only, and ``seccomp=unconfined`` so that units with sandboxing
options (Debian's own redis-server.service uses PrivateUsers=) can set up their namespaces.
Never ``--privileged``: it fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from devtools.services import ROOT, RUN_DIR

BUILD_SCRIPT = ROOT / "deploy" / "images" / "build-systemd-image.sh"
WHEELHOUSE_SCRIPT = ROOT / "deploy" / "build-wheelhouse.sh"
CACHE_DIR = RUN_DIR / "deploy-cache"
# Playbook logs outlive the session directory, for reading after a failure.
LOG_DIR = RUN_DIR / "deploy-logs"
IMAGE_TAG = "poolwarden/debian-systemd:12"
NETWORK = "poolwarden-deploy"
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
HOSTS = ("panel", "pool-1")
SYSTEMD_RUN_ARGS = [
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--security-opt", "seccomp=unconfined", "--stop-signal", "SIGRTMIN+3",
]


def _missing_tools() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap, dockerd)")
    for tool in ("dockerd", "debootstrap", "docker"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            missing.append(tool)
    if not (VENV_BIN / "ansible-playbook").exists():
        missing.append("ansible (pip install 'ansible>=12,<13')")
    return missing


def pytest_collection_modifyitems(config, items):
    missing = _missing_tools()
    if not missing:
        return
    if os.geteuid() != 0:  # a developer without root cannot run these at all
        mark = pytest.mark.skip(reason="deployment tests need " + ", ".join(missing))
    else:  # as root, devtools/bootstrap.sh installs every tool: a missing one is an install bug
        mark = pytest.mark.usefixtures("_deploy_tools_missing")
    for item in items:
        if "tests/deploy/" in str(item.fspath):
            item.add_marker(mark)


@pytest.fixture
def _deploy_tools_missing():
    pytest.fail("deployment tests need " + ", ".join(_missing_tools()) + ": run devtools/bootstrap.sh test")


def image_tarball() -> Path:
    digest = hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]
    return CACHE_DIR / f"debian-systemd-{digest}.tar"


@pytest.fixture(scope="session")
def systemd_rootfs() -> Path:
    """The image's root filesystem tarball: built once (about a minute), then reused across runs."""
    tarball = image_tarball()
    if not tarball.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        for stale in CACHE_DIR.glob("debian-systemd-*.tar"):
            stale.unlink()
        started = time.monotonic()
        subprocess.run([str(BUILD_SCRIPT), str(tarball)], check=True, capture_output=True, text=True)
        print(f"built {tarball.name} in {time.monotonic() - started:.0f} s")
    return tarball


@pytest.fixture(scope="session")
def docker_engine(session_dir):
    from devtools.dockerd import PrivateDockerd

    with PrivateDockerd("dockerd", base=session_dir) as engine:
        yield engine


def docker(engine, *args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": engine.url}
    result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@pytest.fixture(scope="session")
def systemd_image(docker_engine, systemd_rootfs) -> str:
    docker(docker_engine, "import", "--change", 'CMD ["/lib/systemd/systemd"]', "--change", "ENV container=docker",
           str(systemd_rootfs), IMAGE_TAG, timeout=300)
    return IMAGE_TAG


@pytest.fixture(scope="session")
def wheelhouse(session_dir) -> Path:
    """poolwarden's wheel from this checkout plus its dependencies (cached between runs)."""
    out = session_dir / "poolwarden-wheelhouse.tar"
    env = {**os.environ, "PYTHON": str(VENV_BIN / "python"), "WHEEL_CACHE": str(CACHE_DIR / "wheels")}
    subprocess.run([str(WHEELHOUSE_SCRIPT), str(out)], check=True, capture_output=True, text=True, env=env)
    return out


def wait_for_systemd(engine, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = docker(engine, "exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise AssertionError(f"systemd in {name} did not finish booting: {state!r}")


@pytest.fixture(scope="session")
def machines(docker_engine, systemd_image):
    """The control host ``panel`` and the pool host ``pool-1``, booted, on one network."""
    docker(docker_engine, "network", "create", NETWORK)
    for name in HOSTS:
        docker(docker_engine, "run", "-d", "--name", name, "--hostname", name, "--network", NETWORK,
               *SYSTEMD_RUN_ARGS, systemd_image, timeout=300)
    for name in HOSTS:
        wait_for_systemd(docker_engine, name)
    yield docker_engine


def run_playbook(engine, playbook: str, extra_vars: dict, log: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_HOST": engine.url, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory/vagrant", "-i", "tests/deploy/inventory/docker.yml",
           "-e", json.dumps(extra_vars), *args, playbook]
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return result


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {ok: n, changed: n, failed: n, ...}}."""
    totals = {}
    in_recap = False
    for line in stdout.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and re.match(r"^\S+\s+:\s+ok=\d+", line):  # not a profile_tasks line after the recap
            host, _, counts = line.partition(":")
            totals[host.strip()] = {k: int(v) for k, v in (pair.split("=") for pair in counts.split())}
    return totals


@pytest.fixture(scope="session")
def converged(machines, wheelhouse):
    """site.yml applied once; returns (engine, first run)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    result = run_playbook(machines, "playbooks/site.yml", {"common_wheelhouse_archive": str(wheelhouse)},
                          LOG_DIR / "converge-1.log")
    print(f"first converge: {result.seconds:.0f} s")  # type: ignore[attr-defined]
    if result.returncode != 0:
        pytest.fail(f"site.yml failed (rc {result.returncode}); log in {LOG_DIR}/converge-1.log:\n"
                    + result.stdout[-6000:] + result.stderr[-2000:])
    return machines, result


def sh(engine, host: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return docker(engine, "exec", host, "sh", "-c", script, check=check)
