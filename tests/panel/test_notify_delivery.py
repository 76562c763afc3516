"""Delivery through real RQ workers to a real webhook sink and a real SMTP server (aiosmtpd):
retries with backoff, no retry on client errors, idempotency, the HMAC signature, e-mail parts,
the engine task end to end, and a notify worker that runs nothing but deliveries."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from panel.engine.tasks import TaskContext
from panel.notify import jobs, tick
from panel.notify.dispatcher import dispatch
from panel.notify.store import save_integration
from tests.panel.notify_helpers import TEST_SECRETS_KEY, at, make_channel, make_route

pytest_plugins = ["tests.panel.notify_fixtures", "tests.sinks"]  # fixtures: secrets_key, alert_table, the sinks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def conn(db_url, secrets_key):
    jobs.configure(database_url=db_url)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def rconn(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def burst(rconn) -> None:
    worker = SimpleWorker([jobs.queue(rconn)], connection=rconn, serializer=JSONSerializer,
                          job_class=jobs.make_job_class())
    worker.work(burst=True, with_scheduler=False)


def deliveries(conn) -> list[dict]:
    return conn.execute("SELECT * FROM deliveries ORDER BY id").fetchall()


def one_notification(conn, alert_table, db_url, **route) -> int:
    alert_table.fire("PoolDown", "pool-1", rule_type="pool_down", severity="critical", pool="ergo-solo")
    make_route(conn, [route.pop("channel", "ops-hook")], groupWaitSeconds=0, **route)
    report = dispatch(conn, now=at(0))
    assert len(report.notifications) == 1
    return report.notifications[0]


def test_webhook_500_is_retried_with_backoff_then_delivered(conn, alert_table, db_url, redis_url, rconn,
                                                             webhook_sink):
    """The real ``notify-worker`` command (forking worker + RQ scheduler) in a subprocess."""
    make_channel(conn, url=webhook_sink.url, secret="hmac-key-123")
    nid = one_notification(conn, alert_table, db_url)
    webhook_sink.respond(500, 500)
    jobs.enqueue(rconn, [nid], intervals=(1, 2))
    env = {**os.environ, "POOLWARDEN_DATABASE_URL": db_url, "POOLWARDEN_REDIS_URL": redis_url,
           "POOLWARDEN_SECRETS_KEY": TEST_SECRETS_KEY}
    worker = subprocess.Popen([str(ROOT / ".venv/bin/poolwarden-panel"), "notify-worker"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        received = webhook_sink.wait_for(3, timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0].decode()
    assert [r.status for r in received] == [500, 500, 200], output
    # backoff 1 s then 2 s; RQ's scheduler moves due jobs on its own tick, so allow it a little slack
    first, second = received[1].at - received[0].at, received[2].at - received[1].at
    assert first >= 0.8 and second >= 1.6 and second > first, (first, second)
    assert len({r.body for r in received}) == 1, "every attempt sends the same bytes"
    assert len({r.headers["x-poolwarden-idempotency-key"] for r in received}) == 1
    body = received[2].body
    expected = "sha256=" + hmac.new(b"hmac-key-123", body, hashlib.sha256).hexdigest()
    assert received[2].headers["x-poolwarden-signature"] == expected
    payload = json.loads(body)
    assert payload["status"] == "firing" and payload["severity"] == "critical"
    assert payload["alerts"][0]["labels"]["pool"] == "ergo-solo" and payload["receiver"] == "ops-hook"
    rows = deliveries(conn)
    assert [(d["attempt"], d["status"], d["response_code"]) for d in rows] == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "sent", 200)]
    assert all(d["duration_ms"] > 0 for d in rows)
    assert conn.execute("SELECT status, attempts FROM notifications WHERE id = %s", (nid,)).fetchone() == {
        "status": "sent", "attempts": 3}


def test_client_error_is_not_retried(conn, alert_table, db_url, rconn, webhook_sink):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)
    webhook_sink.respond(404)
    jobs.enqueue(rconn, [nid], intervals=(0, 0, 0))
    burst(rconn)
    burst(rconn)
    assert [r.status for r in webhook_sink.requests] == [404]
    assert [(d["status"], d["response_code"]) for d in deliveries(conn)] == [("failed", 404)]
    assert "HTTP 404" in deliveries(conn)[0]["error"]
    job = Job.fetch(jobs.job_id(nid), connection=rconn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED


def test_too_many_requests_is_retried(conn, alert_table, db_url, rconn, webhook_sink):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)
    webhook_sink.respond(429)
    jobs.enqueue(rconn, [nid], intervals=(0, 0, 0))
    burst(rconn)   # zero intervals: RQ puts the retry straight back and the burst runs it
    assert [r.status for r in webhook_sink.requests] == [429, 200]
    assert [d["status"] for d in deliveries(conn)] == ["retrying", "sent"]


def test_a_slow_receiver_times_out_and_is_retried(webhook_sink):
    from panel.notify.channels import DeliveryError, Message
    from panel.notify.channels.webhook import WebhookChannel

    webhook_sink.delay = 1.5
    channel = WebhookChannel(settings={"timeoutSeconds": 1}, secrets={"url": webhook_sink.url})
    with pytest.raises(DeliveryError) as caught:
        channel.send(Message({"kind": "test"}, "key-1", "test"))
    assert caught.value.retryable and "no answer within 1 s" in str(caught.value)


def test_same_job_twice_delivers_once(conn, alert_table, db_url, rconn, webhook_sink):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)
    jobs.enqueue(rconn, [nid])
    Queue(jobs.QUEUE_NAME, connection=rconn, serializer=JSONSerializer).enqueue(
        jobs.DELIVER_FUNCTION, nid, job_id="duplicate-of-it")
    burst(rconn)
    assert len(webhook_sink.requests) == 1
    duplicate = Job.fetch("duplicate-of-it", connection=rconn, serializer=JSONSerializer)
    assert duplicate.return_value()["status"] == "duplicate"
    assert jobs.deliver(nid)["status"] == "duplicate", "and once more by hand: still not sent again"
    assert len(webhook_sink.requests) == 1
    assert [d["status"] for d in deliveries(conn)] == ["sent"]


def test_concurrent_duplicates_send_once(conn, alert_table, db_url, webhook_sink):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)
    webhook_sink.delay = 0.5
    results = []
    threads = [threading.Thread(target=lambda: results.append(jobs.deliver(nid)["status"])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["duplicate", "duplicate", "sent"]
    assert len(webhook_sink.requests) == 1


def test_email_has_html_and_text_parts(conn, alert_table, db_url, rconn, smtp_sink):
    save_integration(conn, name="ops-mail", kind="email", enabled=True, by="test",
                     values={"smtpHost": "127.0.0.1", "smtpPort": str(smtp_sink.port), "security": "none",
                             "from": "poolwarden@example.org", "to": "ops@example.org, oncall@example.org"})
    down = alert_table.fire("PoolDown", "pool-1", rule_type="pool_down", severity="critical", pool="ergo-solo",
                            summary="Pool ergo-solo <API> is down")
    alert_table.fire("PoolDown", "pool-1", rule_type="pool_down", severity="critical", pool="ergo-pps")
    make_route(conn, ["ops-mail"], groupWaitSeconds=0, groupIntervalSeconds=60)
    dispatch(conn, now=at(0), enqueue=lambda ids: jobs.enqueue(rconn, ids))
    alert_table.resolve(down, at(30))
    dispatch(conn, now=at(60), enqueue=lambda ids: jobs.enqueue(rconn, ids))
    burst(rconn)
    first, second = smtp_sink.wait_for(2)
    assert first["Subject"] == "[poolwarden] CRITICAL: 2 firing - PoolDown on pool-1"
    assert second["Subject"] == "[poolwarden] CRITICAL: 1 firing, 1 resolved - PoolDown on pool-1"
    assert first["From"] == "poolwarden@example.org" and first["To"] == "ops@example.org, oncall@example.org"
    assert sorted(smtp_sink.envelopes[0].rcpt_tos) == ["oncall@example.org", "ops@example.org"]
    assert first.get_content_type() == "multipart/alternative"
    text = second.get_body(("plain",)).get_content()
    html = second.get_body(("html",)).get_content()
    assert "Resolved (1):" in text and "Pool ergo-solo <API> is down" in text
    assert "Pool ergo-solo &lt;API&gt; is down" in html and "<script" not in html
    assert "Firing (1)" in html and "Resolved (1)" in html
    assert second["Message-ID"] and second["Message-ID"] != first["Message-ID"]
    assert [d["status"] for d in deliveries(conn)] == ["sent", "sent"]


def test_refused_recipient_is_not_retried(conn, alert_table, db_url, rconn, smtp_sink):
    smtp_sink.refuse["nobody@example.org"] = "550 5.1.1 no such user"
    save_integration(conn, name="ops-mail", kind="email", enabled=True, by="test",
                     values={"smtpHost": "127.0.0.1", "smtpPort": str(smtp_sink.port), "security": "none",
                             "from": "poolwarden@example.org", "to": "nobody@example.org"})
    nid = one_notification(conn, alert_table, db_url, channel="ops-mail")
    jobs.enqueue(rconn, [nid], intervals=(0, 0))
    burst(rconn)
    rows = deliveries(conn)
    assert [(d["status"], d["response_code"]) for d in rows] == [("failed", 550)]
    assert "refused every recipient" in rows[0]["error"]


def test_unreachable_smtp_server_is_retried_then_given_up(conn, alert_table, db_url, rconn):
    from devtools.services import free_port

    save_integration(conn, name="ops-mail", kind="email", enabled=True, by="test",
                     values={"smtpHost": "127.0.0.1", "smtpPort": str(free_port()), "security": "starttls",
                             "from": "poolwarden@example.org", "to": "ops@example.org", "timeoutSeconds": "2"})
    nid = one_notification(conn, alert_table, db_url, channel="ops-mail")
    jobs.enqueue(rconn, [nid], intervals=(0, 0))
    burst(rconn)
    assert [d["status"] for d in deliveries(conn)] == ["retrying", "retrying", "failed"]
    assert "cannot deliver through 127.0.0.1" in deliveries(conn)[0]["error"]
    assert conn.execute("SELECT status FROM notifications WHERE id = %s", (nid,)).fetchone()["status"] == "failed"


def test_engine_task_provisions_dispatches_and_the_worker_delivers(conn, alert_table, db_url, rconn, tmp_path,
                                                                    webhook_sink, monkeypatch):
    config = tmp_path / "integrations.json"
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    config.write_text(json.dumps({
        "integrations": [{"name": "ops-hook", "type": "webhook", "url": webhook_sink.url,
                          "secret": "${HOOK_SECRET}"}],
        "routes": [{"name": "everything", "integrations": ["ops-hook"], "groupWaitSeconds": 0}],
    }))
    ctx = TaskContext(db_url, rconn, {"INTEGRATIONS_CONFIG": str(config), "EXTERNAL_URL": "https://panel.example"})
    try:
        alert_table.fire("DiskFull", "pool-1", when=at(0))
        report = tick(ctx, now=at(0))
        assert len(report.notifications) == 1
        burst(rconn)
    finally:
        ctx.reset()
    (request,) = webhook_sink.wait_for(1)
    expected = "sha256=" + hmac.new(b"from-the-environment", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-poolwarden-signature"] == expected
    alert = request.json()["alerts"][0]
    assert alert["url"] == f"https://panel.example/alerts/{alert['id']}"
    assert request.json()["externalUrl"] == "https://panel.example"


def test_lost_jobs_are_queued_again(conn, alert_table, db_url, rconn, webhook_sink):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)   # queued in the table, never enqueued (Redis lost it)
    conn.execute("UPDATE notifications SET created_at = now() - interval '10 minutes' WHERE id = %s", (nid,))
    assert jobs.requeue_lost(conn, rconn) == 1
    assert jobs.requeue_lost(conn, rconn) == 0, "its job exists now"
    burst(rconn)
    assert len(webhook_sink.wait_for(1)) == 1


def test_notify_worker_runs_nothing_but_deliveries(rconn, tmp_path, conn):
    marker = tmp_path / "ran"
    queue = Queue(jobs.QUEUE_NAME, connection=rconn, serializer=JSONSerializer)
    job = queue.enqueue("pathlib.Path.touch", str(marker))
    burst(rconn)
    assert not marker.exists()
    job = Job.fetch(job.id, connection=rconn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED
    assert "is not the delivery function" in job.latest_result().exc_string


def test_notify_worker_command_in_burst_mode(conn, alert_table, db_url, rconn, webhook_sink, runner):
    make_channel(conn, url=webhook_sink.url)
    nid = one_notification(conn, alert_table, db_url)
    jobs.enqueue(rconn, [nid])
    result = runner.invoke(args=["notify-worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "delivering from queue 'notify' (burst)" in result.output
    assert len(webhook_sink.wait_for(1)) == 1
    assert conn.execute("SELECT status FROM notifications WHERE id = %s", (nid,)).fetchone()["status"] == "sent"
