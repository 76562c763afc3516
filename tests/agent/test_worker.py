"""The maintenance worker runs catalogue actions from signed envelopes, and nothing else.

Real Redis, real RQ queues and workers (SimpleWorker in-process for speed, the forking Worker where
the process boundary matters)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from agent.config import load_config
from agent.contract import MAINT_JOB_FUNCTION, maint_job_id, maint_queue, make_envelope, sign_envelope
from agent.worker import WorkerSetupError, build_worker, read_job_key

KEY = bytes(range(32))
HOST = "pool-test"


@pytest.fixture
def config(tmp_path):
    pool = json.loads(Path("config/pool.json").read_text())
    pool["host"] = HOST
    pool["docker"]["enabled"] = False
    monitoring = json.loads(Path("config/monitoring.json").read_text())
    monitoring["agent"]["spoolDir"] = str(tmp_path / "spool")
    monitoring["maintenance"] = {"jobKeyFile": str(tmp_path / "job.key"), "safeModeFile": str(tmp_path / "safe-mode"),
                                 "workDir": str(tmp_path / "work")}
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    (tmp_path / "monitoring.json").write_text(json.dumps(monitoring))
    (tmp_path / "job.key").write_text(KEY.hex())
    return load_config(tmp_path, env={})


def enqueue(redis_url, envelope, signature, *, func=MAINT_JOB_FUNCTION, serializer=JSONSerializer, **kwargs):
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(maint_queue(HOST), connection=conn, serializer=serializer)
    return queue.enqueue(func, envelope, signature, job_id=maint_job_id(envelope["job"]) if isinstance(
        envelope, dict) and "job" in envelope else None, **kwargs)


def envelope_for(action, params, *, host=HOST, safe_mode=False, ttl=600, job="0" * 32):
    return make_envelope(job_uuid=job, host=host, action=action, params=params, requested_by="alice",
                         safe_mode=safe_mode, ttl_seconds=ttl)


def run_burst(config, redis_url):
    worker = build_worker(config, KEY, redis_url, simple=True)
    worker.work(burst=True, with_scheduler=False)


def finished(redis_url, job_id):
    job = Job.fetch(job_id, connection=redis.Redis.from_url(redis_url), serializer=JSONSerializer)
    return job, job.get_status(), job.return_value()


def test_bad_signature_wrong_host_expired_are_refused(config, redis_url):
    cases = []
    env = envelope_for("restart", {"service": "miningcore"}, job="1" * 32)
    cases.append((enqueue(redis_url, env, sign_envelope(b"x" * 32, env)), "bad signature"))
    env = envelope_for("restart", {"service": "miningcore"}, host="other-host", job="2" * 32)
    cases.append((enqueue(redis_url, env, sign_envelope(KEY, env)), "for host 'other-host'"))
    env = envelope_for("restart", {"service": "miningcore"}, ttl=-1, job="3" * 32)
    cases.append((enqueue(redis_url, env, sign_envelope(KEY, env)), "expired"))
    env = envelope_for("restart", {"service": "miningcore"}, job="4" * 32)
    tampered = dict(env, params={"service": "postgresql"})
    cases.append((enqueue(redis_url, tampered, sign_envelope(KEY, env)), "bad signature"))
    run_burst(config, redis_url)
    for job, reason in cases:
        _, status, value = finished(redis_url, job.id)
        assert status == "finished"
        assert value["ok"] is False and value["refused"] is True
        assert reason in value["error"]


def test_safe_mode_from_panel_and_local_file_refuse_destructive_only(config, redis_url, tmp_path):
    env = envelope_for("stop", {"service": "miningcore"}, safe_mode=True, job="5" * 32)
    panel_side = enqueue(redis_url, env, sign_envelope(KEY, env))
    (tmp_path / "safe-mode").write_text("disk swap in progress\n")
    env = envelope_for("restart", {"service": "nginx"}, job="6" * 32)
    local = enqueue(redis_url, env, sign_envelope(KEY, env))
    env = envelope_for("cleanup", {"dry_run": True}, job="7" * 32)  # a dry run is not destructive
    allowed = enqueue(redis_url, env, sign_envelope(KEY, env))
    run_burst(config, redis_url)
    assert "safe mode is on for this host" in finished(redis_url, panel_side.id)[2]["error"]
    assert "disk swap in progress" in finished(redis_url, local.id)[2]["error"]
    value = finished(redis_url, allowed.id)[2]
    assert value["refused"] is False  # it ran (and fails for want of a database here, which is fine)


def test_functions_outside_the_catalogue_never_run(config, redis_url, tmp_path):
    marker = tmp_path / "pwned"
    env = envelope_for("health_check", {}, job="8" * 32)
    job = enqueue(redis_url, ["touch", str(marker)], "x", func="subprocess.call")
    with_callback = Queue(maint_queue(HOST), connection=redis.Redis.from_url(redis_url),
                          serializer=JSONSerializer).enqueue(
        MAINT_JOB_FUNCTION, env, sign_envelope(KEY, env), job_id=maint_job_id(env["job"]),
        on_success="os.abort")
    run_burst(config, redis_url)
    for j in (job, with_callback):
        fetched, status, _ = finished(redis_url, j.id)
        assert status == "failed"
        assert "refused" in fetched.latest_result().exc_string
    assert not marker.exists()


class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["PW_MARKER"],))


def test_a_pickled_payload_is_never_unpickled(config, redis_url, tmp_path):
    marker = tmp_path / "pickled"
    os.environ["PW_MARKER"] = str(marker)
    try:
        conn = redis.Redis.from_url(redis_url)
        queue = Queue(maint_queue(HOST), connection=conn)  # RQ's default serializer: pickle
        job = queue.enqueue(MAINT_JOB_FUNCTION, Boom(), "sig")
        raw = conn.hget(job.key, "data")
        assert zlib.decompress(raw)[:1] == pickle.PROTO  # really pickled: would run os.system when loaded
        with contextlib.suppress(Exception):  # RQ may give up on the undecodable job; what matters is below
            run_burst(config, redis_url)
        assert not marker.exists()
    finally:
        os.environ.pop("PW_MARKER", None)


def test_job_key_file_errors_are_clear(tmp_path):
    with pytest.raises(WorkerSetupError, match="jobKeyFile is not set"):
        read_job_key(None)
    with pytest.raises(WorkerSetupError, match="cannot read the job key file"):
        read_job_key(str(tmp_path / "missing"))
    (tmp_path / "k").write_text("zz")
    with pytest.raises(WorkerSetupError, match="as hex"):
        read_job_key(str(tmp_path / "k"))
    (tmp_path / "k").write_text("abcd")
    with pytest.raises(WorkerSetupError, match="too short"):
        read_job_key(str(tmp_path / "k"))


@pytest.mark.slow
def test_cli_worker_runs_forked_jobs_and_safe_mode_command(config, redis_url, tmp_path):
    env_vars = dict(os.environ, POOLWARDEN_REDIS_URL=redis_url)
    cli = [sys.executable, "-m", "agent.cli"]
    out = subprocess.run([*cli, "safe-mode", "on", "--reason", "hands on", "--config-dir", str(tmp_path)],
                         capture_output=True, text=True, env=env_vars, check=True).stdout
    assert "safe mode is ON: hands on" in out
    # the config fixture wrote its files with the Redis URL of the default config: point it at the test Redis
    monitoring = json.loads((tmp_path / "monitoring.json").read_text())
    monitoring["agent"]["redisUrl"] = redis_url
    (tmp_path / "monitoring.json").write_text(json.dumps(monitoring))
    env = envelope_for("restart", {"service": "miningcore"}, job="9" * 32)
    job = enqueue(redis_url, env, sign_envelope(KEY, env))
    started = time.monotonic()
    subprocess.run([*cli, "work", "--burst", "--config-dir", str(tmp_path)], env=env_vars, check=True,
                   capture_output=True, timeout=60)
    assert time.monotonic() - started < 60
    assert "hands on" in finished(redis_url, job.id)[2]["error"]
    out = subprocess.run([*cli, "safe-mode", "off", "--config-dir", str(tmp_path)], capture_output=True, text=True,
                         env=env_vars, check=True).stdout
    assert "safe mode is off" in out


@pytest.mark.slow
def test_worker_waits_for_redis_instead_of_crashing(config, tmp_path):
    """Started while Redis is down, the worker says so and keeps trying; --burst gives up with a message."""
    from devtools.services import free_port

    monitoring = json.loads((tmp_path / "monitoring.json").read_text())
    monitoring["agent"]["redisUrl"] = f"redis://127.0.0.1:{free_port()}/0"
    (tmp_path / "monitoring.json").write_text(json.dumps(monitoring))
    cli = [sys.executable, "-m", "agent.cli", "work", "--config-dir", str(tmp_path)]
    burst = subprocess.run([*cli, "--burst"], capture_output=True, text=True, timeout=60)
    assert burst.returncode == 1 and "is unreachable" in burst.stderr and "Traceback" not in burst.stderr
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None  # still running, waiting for Redis
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "retrying in 5 s" in out and "Traceback" not in out
