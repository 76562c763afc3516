"""The agent's Redis user (contract.agent_redis_acl_rules) is enough for its worker and its stream,
and keeps it away from other hosts' streams and queues."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from agent.contract import agent_redis_acl_rules, maint_queue, sign_envelope, stream_key
from agent.worker import build_worker
from tests.agent.test_worker import HOST, KEY, config, enqueue, envelope_for  # noqa: F401 - fixture

PASSWORD = "agent-password-for-tests-0123456789"


@pytest.fixture
def agent_url(redis_url):
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "agent-test", "reset", "on", f">{PASSWORD}",
                          *agent_redis_acl_rules(HOST))
    yield redis_url.replace("redis://", f"redis://agent-test:{PASSWORD}@")
    admin.execute_command("ACL", "DELUSER", "agent-test")


def test_worker_runs_under_the_agent_acl(config, redis_url, agent_url):  # noqa: F811 - fixture
    env = envelope_for("restart", {"service": "miningcore"}, safe_mode=True, job="c" * 32)
    job = enqueue(redis_url, env, sign_envelope(KEY, env))
    for simple in (True, False):  # in-process and forked work horse
        build_worker(config, KEY, agent_url, simple=simple).work(burst=True, with_scheduler=False)
    done = Job.fetch(job.id, connection=redis.Redis.from_url(redis_url), serializer=JSONSerializer)
    assert done.get_status() == "finished"
    assert "safe mode" in done.return_value()["error"]
    agent = redis.Redis.from_url(agent_url)
    agent.xadd(stream_key(HOST), {"batch": "{}"})


def test_agent_acl_keeps_to_its_own_host(redis_url, agent_url):
    agent = redis.Redis.from_url(agent_url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.xadd(stream_key("other-host"), {"batch": "{}"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.lpop("rq:queue:" + maint_queue("other-host"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        Queue(maint_queue("other-host"), connection=agent, serializer=JSONSerializer).enqueue("os.getcwd")
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.xrange(stream_key("other-host"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.config_get("*")
