"""Containers and Docker disk usage against a real, private dockerd with busybox containers:
restart and OOM-kill counts, CPU from our own deltas, and the cost of one cycle."""

from __future__ import annotations

import contextlib
import time

import pytest

from agent.collectors import ContainerCollector, DockerDiskCollector, run_collector


def remove(client, *names):
    for name in names:
        with contextlib.suppress(Exception):
            client.containers.get(name).remove(force=True)

pytestmark = pytest.mark.slow

ALWAYS = {"poolwarden_container_running", "poolwarden_container_status_info",
          "poolwarden_container_restarts_observed_total", "poolwarden_container_oom_kills_observed_total",
          "poolwarden_container_restart_count", "poolwarden_container_oom_killed"}
RUNNING = ALWAYS | {"poolwarden_container_uptime_seconds", "poolwarden_container_memory_usage_bytes",
                    "poolwarden_container_memory_limit_bytes"}
RATES = {"poolwarden_container_cpu_percent", "poolwarden_container_blkio_read_bytes_per_second",
         "poolwarden_container_blkio_write_bytes_per_second",
         "poolwarden_container_network_receive_bytes_per_second",
         "poolwarden_container_network_transmit_bytes_per_second"}


@pytest.fixture(scope="module")
def engine(session_dir):
    from devtools.dockerd import PrivateDockerd, build_busybox_image

    with PrivateDockerd("dockerd-agent", base=session_dir) as dockerd:
        client = dockerd.client()
        image = build_busybox_image(client)
        yield dockerd, client, image
        client.close()


def names_of(samples, container):
    return {s.name for s in samples if s.labels.get("container") == container}


def values_of(samples, container):
    return {s.name: s.value for s in samples if s.labels.get("container") == container}


def wait_state(client, name, state, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container = client.containers.get(name)
        if container.status == state:
            return container
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {state}")


def wait_event(client, name, action, timeout=20):
    """The daemon may log an event a moment after the state change it belongs to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream = client.api.events(since=0, until=time.time(), decode=True,
                                   filters={"container": name, "event": action})
        if list(stream):
            return
        time.sleep(0.1)
    raise AssertionError(f"the daemon never logged {action} for {name}")


def test_restart_oom_and_busy_cpu(engine):
    dockerd, client, image = engine
    client.containers.run(image, "sleep 3600", detach=True, name="miningcore", network_mode="none")
    network = client.networks.create("pw-agent-test", driver="bridge")  # the engine runs --bridge=none
    client.containers.run(image, "sh -c 'while true; do :; done'", detach=True, name="busy", mem_limit="64m",
                          network="pw-agent-test")
    collector = ContainerCollector(dockerd.url, {"miningcore": "miningcore", "postgresql": "absent"}, host_memory=1e12)
    try:
        first = run_collector(collector)
        assert first.ok, first.error
        assert names_of(first.samples, "miningcore") == RUNNING
        assert values_of(first.samples, "absent") == {"poolwarden_container_running": 0.0}
        time.sleep(1.0)
        second = run_collector(collector)
        assert names_of(second.samples, "busy") == RUNNING | RATES
        assert names_of(second.samples, "miningcore") == RUNNING | RATES - {
            "poolwarden_container_network_receive_bytes_per_second",
            "poolwarden_container_network_transmit_bytes_per_second"}  # network none: no interface but lo
        busy = values_of(second.samples, "busy")
        idle = values_of(second.samples, "miningcore")["poolwarden_container_cpu_percent"]
        # a spinning shell: up to one core; far less when the 2-core machine is busy with other tests
        assert max(5.0, idle * 5) < busy["poolwarden_container_cpu_percent"] <= 210
        assert busy["poolwarden_container_memory_limit_bytes"] == 64 * 1024 * 1024
        assert values_of(second.samples, "miningcore")["poolwarden_container_memory_limit_bytes"] == 1e12

        client.containers.get("miningcore").restart(timeout=0)
        client.containers.run(image, "sh -c 'x=a; while true; do x=$x$x; done'", detach=True, name="hog",
                              mem_limit="8m", memswap_limit="8m")
        wait_state(client, "hog", "exited")
        wait_event(client, "hog", "oom")
        third = run_collector(collector)
        assert third.ok, third.error
        restarted = values_of(third.samples, "miningcore")
        assert restarted["poolwarden_container_restarts_observed_total"] == 1
        assert restarted["poolwarden_container_running"] == 1
        assert [(e.kind, e.data["container"]) for e in third.events] == [("container_restarted", "miningcore")]
        hog = values_of(third.samples, "hog")
        assert hog["poolwarden_container_running"] == 0
        assert hog["poolwarden_container_oom_killed"] == 1
        assert hog["poolwarden_container_oom_kills_observed_total"] == 1
        fourth = run_collector(collector)  # counted once, not again
        assert values_of(fourth.samples, "hog")["poolwarden_container_oom_kills_observed_total"] == 1
        assert values_of(fourth.samples, "miningcore")["poolwarden_container_restarts_observed_total"] == 1
        assert fourth.events == []
    finally:
        collector.close()
        remove(client, "miningcore", "busy", "hog")
        network.remove()


def test_policy_restarts_counted_by_docker(engine):
    dockerd, client, image = engine
    client.containers.run(image, "sh -c 'sleep 0.2; exit 3'", detach=True, name="flappy",
                          restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    collector = ContainerCollector(dockerd.url)
    try:
        run_collector(collector)
        deadline = time.monotonic() + 20
        while client.api.inspect_container("flappy")["RestartCount"] < 2 or \
                client.containers.get("flappy").status != "exited":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        v = values_of(run_collector(collector).samples, "flappy")
        assert v["poolwarden_container_restart_count"] == 2
        assert v["poolwarden_container_restarts_observed_total"] >= 1
    finally:
        collector.close()
        remove(client, "flappy")


def test_twenty_containers_in_one_fast_cycle(engine):
    dockerd, client, image = engine
    for i in range(20):
        client.containers.run(image, "sleep 3600", detach=True, name=f"many{i}", network_mode="none")
    collector = ContainerCollector(dockerd.url)
    try:
        run_collector(collector)
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            result = run_collector(collector)
            timings.append(time.perf_counter() - start)
            assert result.ok, result.error
        assert sum(1 for s in result.samples if s.name == "poolwarden_container_cpu_percent") == 20
        assert min(timings) < 0.5  # the bench asserts the real target (150 ms); CI machines vary
    finally:
        collector.close()
        remove(client, *(f"many{i}" for i in range(20)))


def test_docker_disk_usage(engine):
    dockerd, client, image = engine
    client.volumes.create("pgdata")
    client.containers.run(image, "sh -c 'head -c 300000 /dev/zero > /data/f; dd if=/dev/zero of=/rw bs=1k count=200;"
                                 " sleep 3600'", detach=True, name="writer", volumes={"pgdata": {"bind": "/data"}})
    try:
        time.sleep(1.0)
        result = run_collector(DockerDiskCollector(dockerd.url))
        assert result.ok, result.error
        assert {s.name for s in result.samples} == set(DockerDiskCollector.METRICS)
        by = {(s.name, tuple(s.labels.values())): s.value for s in result.samples}
        assert by[("poolwarden_docker_images", ())] >= 1
        assert by[("poolwarden_docker_images_size_bytes", ())] > 500_000
        assert by[("poolwarden_docker_volume_size_bytes", ("pgdata",))] >= 300_000
        assert by[("poolwarden_container_rw_size_bytes", ("writer",))] >= 200_000
    finally:
        remove(client, "writer")
        with contextlib.suppress(Exception):
            client.volumes.get("pgdata").remove(force=True)


def test_engine_unreachable(tmp_path):
    collector = ContainerCollector(f"unix://{tmp_path}/missing.sock", {"miningcore": "mc"})
    result = run_collector(collector)
    assert not result.ok and "not reachable" in result.error
    assert [(s.name, s.labels, s.value) for s in result.samples] == [
        ("poolwarden_container_running", {"container": "mc"}, 0.0)]
