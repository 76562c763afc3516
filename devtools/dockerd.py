"""A private Docker engine for tests: its own data root, socket and pid file, no global state.

    with PrivateDockerd("dockerd", base=session_dir) as engine:
        client = engine.client()
        image = build_busybox_image(client)
        client.containers.run(image, "sleep 3600", detach=True, name="miningcore")

Needs Debian's docker.io (dockerd) and busybox-static; devtools/bootstrap.sh installs both for tests.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from devtools.services import RUN_DIR, ServiceError

BUSYBOX_TAG = "poolwarden/busybox:test"


class PrivateDockerd:
    def __init__(self, name: str = "dockerd", base: Path | None = None):
        self.dir = (base or RUN_DIR) / name
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "docker.pid"
        self.log = self.dir / "dockerd.log"
        binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not Path(binary).exists():
            raise ServiceError("dockerd not found: install it with 'apt-get install -y docker.io'")
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> PrivateDockerd:
        if self.dir.exists():
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        # exec-root holds containerd's sockets: keep it short (unix socket paths max out at 108 bytes)
        self.exec_root = Path(tempfile.mkdtemp(prefix="pwd-"))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
                 f"--data-root={self.dir / 'data'}", f"--exec-root={self.exec_root}",
                 "-H", self.url, f"--pidfile={self.pidfile}"],
                stdout=log, stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"dockerd exited ({self.proc.returncode}):\n{self._tail()}")
            if self.socket.exists():
                with contextlib.suppress(Exception):  # not ready yet
                    self.client().ping()
                    return self
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"dockerd did not answer within {timeout:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # Containers first, so no shim outlives the engine.
            with contextlib.suppress(Exception):
                c = self.client()
                for container in c.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
                # A user-defined network's bridge outlives the engine: left behind, they use up the
                # address pools and a later engine cannot create any network.
                with contextlib.suppress(Exception):
                    c.networks.prune()
                c.close()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if hasattr(self, "exec_root"):
            subprocess.run(["umount", "-R", str(self.exec_root)], capture_output=True)
            shutil.rmtree(self.exec_root, ignore_errors=True)

    def __enter__(self) -> PrivateDockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_busybox_image(client, tag: str = BUSYBOX_TAG) -> str:
    """A tiny image FROM scratch with Debian's busybox-static: `sh`, `sleep`, `httpd`, `nc`, ..."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        raise ServiceError("busybox not found: install it with 'apt-get install -y busybox-static'")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = (b"FROM scratch\nCOPY busybox /bin/busybox\n"
                      b"RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
                      b"ENV PATH=/bin\nCMD [\"sh\"]\n")
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(busybox, arcname="busybox")
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return tag
