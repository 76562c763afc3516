"""Queueing maintenance jobs from the API: a signed JSON job on the host's own queue, parameters
checked (400 naming the field), roles and step-up, safe mode, hosts without a key, cancel, and a
job nobody takes being expired and reported rather than lost."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta

import pytest
from rq import SimpleWorker

from agent.contract import (
    MAINT_JOB_FUNCTION,
    EnvelopeRejected,
    maint_job_id,
    maint_queue,
    verify_envelope,
)
from panel.maintenance import sync
from panel.maintenance.settings import Settings
from tests.panel.helpers import ingest, pool_host_batch, xadd
from tests.panel.maint_helpers import (
    HOST,
    enrol,
    form_post,
    job_row,
    rq_jobs,
    session_post_json,
    token_for,
)

API = "/api/admin/maintenance"

pytest_plugins = ["tests.panel.maint_fixtures"]  # its fixtures: host_key, ctx, dbconn


def test_enqueue_puts_a_signed_json_job_on_the_hosts_own_queue(client, auth, db_url, rds, host_key, sql):
    headers = token_for(auth, db_url, "operator")
    response = client.post(f"{API}/backup", json={"keep_daily": 3}, headers=headers)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["status"] == "queued" and job["host"] == HOST and job["requested_by"] == "token:t-operator"
    assert job["params"] == {"database": "miningcore", "keep_daily": 3, "keep_weekly": 4}

    (queued,) = rq_jobs(rds)
    assert queued.id == maint_job_id(job["id"]) == job["rq_job_id"]
    assert queued.origin == maint_queue(HOST)
    assert queued.func_name == MAINT_JOB_FUNCTION
    assert queued.timeout == 6 * 3600 + 60
    assert queued.result_ttl == queued.failure_ttl == 7 * 86400
    assert queued.ttl == 3600
    # JSON on the wire, not pickle: the (zlib-compressed) payload reads back as plain JSON
    raw = zlib.decompress(rds.hget(f"rq:job:{queued.id}", "data"))
    assert json.loads(raw)[0] == MAINT_JOB_FUNCTION
    envelope, signature = queued.args
    assert verify_envelope(host_key, envelope, signature, host=HOST) == job["params"]
    assert envelope["job"] == job["id"] and envelope["requested_by"] == "token:t-operator"
    assert envelope["safe_mode"] is False
    assert envelope["expires_at"] - envelope["issued_at"] == pytest.approx(3600)
    with pytest.raises(EnvelopeRejected, match="bad signature"):
        verify_envelope(b"k" * 32, envelope, signature, host=HOST)
    with pytest.raises(EnvelopeRejected, match="for host"):
        verify_envelope(host_key, envelope, signature, host="pool-2")

    row = job_row(sql, job["id"])
    assert (row["status"], row["requested_by"], row["rq_job_id"]) == ("queued", "token:t-operator", queued.id)
    (audit,) = sql("SELECT actor, details FROM audit_log WHERE action = 'maintenance.queue'")
    assert audit[0] == "token:t-operator" and audit[1]["params"]["keep_daily"] == 3


@pytest.mark.parametrize(("action", "body", "field", "words"), [
    ("backup", {"keep_daily": 0}, "keep_daily", "at least 1"),
    ("backup", {"keep_daily": "7"}, "keep_daily", "whole number"),
    ("backup", {"compress": True}, "compress", "not a parameter of backup"),
    ("vacuum", {"tables": ["shares", "users"]}, "tables", "unknown 'users'"),
    ("restart", {}, "service", "is required"),
    ("restart", {"service": "sshd"}, "service", "must be one of"),
    ("update_miningcore_config", {"config": "{\"pools\": [", "rollback_after_seconds": 60}, "config",
     "not valid JSON"),
    ("cleanup", [1, 2], "params", "JSON object"),
])
def test_bad_parameters_are_refused_naming_the_field(client, auth, db_url, rds, host_key, action, body, field,
                                                     words):
    response = client.post(f"{API}/{action}", json=body, headers=token_for(auth, db_url, "admin"))
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["field"] == field and words in answer["error"] and field in answer["error"]
    assert rq_jobs(rds) == []


def test_unknown_action_and_host(client, auth, db_url, host_key):
    headers = token_for(auth, db_url, "operator")
    response = client.post(f"{API}/format_disk", json={}, headers=headers)
    assert response.status_code == 404 and "unknown action 'format_disk'" in response.get_json()["error"]
    response = client.post(f"{API}/backup?host=nowhere", json={}, headers=headers)
    assert response.status_code == 404 and "unknown host 'nowhere'" in response.get_json()["error"]


def test_roles_and_step_up(client, auth, db_url, rds, host_key, sql):
    viewer = token_for(auth, db_url, "viewer")
    assert client.post(f"{API}/health_check", headers=viewer).status_code == 403
    operator = token_for(auth, db_url, "operator")
    # a safe action, and clean-up as a dry run (its default), are the operator's
    assert client.post(f"{API}/health_check", headers=operator).status_code == 202
    assert client.post(f"{API}/cleanup", json={}, headers=operator).status_code == 202
    # destructive ones are the admin's
    refused = client.post(f"{API}/cleanup", json={"dry_run": False}, headers=operator)
    assert refused.status_code == 403 and "admin role" in refused.get_json()["error"]
    assert client.post(f"{API}/restart", json={"service": "miningcore"}, headers=operator).status_code == 403
    # an API token never carries a fresh TOTP code: destructive actions need the session's step-up
    admin = token_for(auth, db_url, "admin")
    response = client.post(f"{API}/restart", json={"service": "miningcore"}, headers=admin)
    assert response.status_code == 403 and "fresh TOTP code" in response.get_json()["error"]
    auth.login("ada", "admin")  # a sign-in counts as a fresh code for five minutes
    response = session_post_json(auth, f"{API}/restart", {"service": "miningcore"})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["requested_by"] == "user:ada"
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")
    response = session_post_json(auth, f"{API}/restart", {"service": "ergo_node"})
    assert response.status_code == 403 and "fresh TOTP code" in response.get_json()["error"]
    assert [j.args[0]["action"] for j in rq_jobs(rds)] == ["health_check", "cleanup", "restart"]
    refusals = sql("SELECT actor, details->>'reason' FROM audit_log WHERE action = 'maintenance.refuse'")
    assert any("admin role" in reason for _, reason in refusals)


def test_safe_mode_refuses_destructive_actions_and_signs_safe_mode_into_the_envelope(client, auth, rds, host_key,
                                                                                     sql):
    auth.login("ada", "admin")
    page = f"/hosts/{HOST}/maintenance"
    response = form_post(auth, page, f"{page}/safe-mode", {"state": "on", "reason": "incident: disk failing"})
    assert response.status_code == 302
    refused = session_post_json(auth, f"{API}/restart", {"service": "miningcore"})
    assert refused.status_code == 403
    assert "safe mode is on for pool-1 (switched on by user:ada: incident: disk failing)" in refused.get_json()["error"]
    assert session_post_json(auth, f"{API}/cleanup", {"dry_run": False}).status_code == 403
    allowed = session_post_json(auth, f"{API}/backup", {})
    assert allowed.status_code == 202
    (queued,) = rq_jobs(rds)
    assert queued.args[0]["safe_mode"] is True  # the agent refuses a destructive job carrying this, too
    reasons = [r for (r,) in sql("SELECT details->>'reason' FROM audit_log WHERE action = 'maintenance.refuse'")]
    assert len(reasons) == 2 and all("safe mode" in r for r in reasons)
    (change,) = sql("SELECT actor, before, after FROM audit_log WHERE action = 'maintenance.safe_mode'")
    assert change == ("user:ada", {"safe_mode": False, "reason": None},
                      {"safe_mode": True, "reason": "incident: disk failing"})
    assert "Safe mode is on" in auth.client.get(page).get_data(as_text=True)


def test_switching_safe_mode_on_cancels_queued_destructive_jobs(auth, rds, host_key, sql):
    auth.login("ada", "admin")
    restart = session_post_json(auth, f"{API}/restart", {"service": "nginx"}).get_json()
    backup = session_post_json(auth, f"{API}/backup", {}).get_json()
    page = f"/hosts/{HOST}/maintenance"
    form_post(auth, page, f"{page}/safe-mode", {"state": "on", "reason": "hands-on work"})
    assert job_row(sql, restart["id"])["status"] == "cancelled"
    assert job_row(sql, backup["id"])["status"] == "queued"
    assert [j.args[0]["action"] for j in rq_jobs(rds)] == ["backup"]


def test_safe_mode_needs_a_reason_and_the_admin_role(auth, host_key, sql):
    auth.login("otto", "operator")
    page = f"/hosts/{HOST}/maintenance"
    assert form_post(auth, page, f"{page}/safe-mode", {"state": "on", "reason": "x"}).status_code == 403
    auth.logout()
    auth.login("ada", "admin")
    response = form_post(auth, page, f"{page}/safe-mode", {"state": "on", "reason": ""})
    assert response.status_code == 302
    assert "Say why" in auth.client.get(page).get_data(as_text=True)
    assert sql("SELECT count(*) FROM maintenance_host_settings WHERE safe_mode")[0][0] == 0


def test_a_host_without_a_key_is_refused_with_how_to_enrol(client, auth, db_url, rds, runner):
    xadd(rds, HOST, pool_host_batch())
    ingest(runner)
    response = client.post(f"{API}/backup", json={}, headers=token_for(auth, db_url, "operator"))
    assert response.status_code == 409
    assert "poolwarden-panel maintenance enrol pool-1" in response.get_json()["error"]
    assert rq_jobs(rds) == []
    auth.login("otto", "operator")
    page = auth.client.get(f"/hosts/{HOST}/maintenance").get_data(as_text=True)
    assert "has no job key" in page and "poolwarden-panel maintenance enrol pool-1" in page


def test_the_host_is_chosen_by_query_or_body_and_needed_when_there_are_several(client, auth, db_url, rds, runner):
    enrol(runner, "pool-1")
    key2 = enrol(runner, "pool-2")
    headers = token_for(auth, db_url, "operator")
    several = client.post(f"{API}/health_check", json={}, headers=headers)
    assert several.status_code == 400 and "pool-1, pool-2" in several.get_json()["error"]
    by_query = client.post(f"{API}/health_check?host=pool-2", json={}, headers=headers)
    by_body = client.post(f"{API}/health_check", json={"host": "pool-2"}, headers=headers)
    assert by_query.status_code == by_body.status_code == 202
    jobs = rq_jobs(rds, "pool-2")
    assert len(jobs) == 2 and rq_jobs(rds, "pool-1") == []
    for job in jobs:
        verify_envelope(key2, *job.args, host="pool-2")


def test_cancel_a_queued_job(client, auth, db_url, rds, host_key, sql):
    headers = token_for(auth, db_url, "operator")
    job = client.post(f"{API}/backup", json={}, headers=headers).get_json()
    response = client.post(f"{API}/jobs/{job['id']}/cancel", headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert rq_jobs(rds) == [] and rds.exists(f"rq:job:{job['rq_job_id']}") == 0
    assert "cancelled by token:t-operator" in job_row(sql, job["id"])["error"]
    again = client.post(f"{API}/jobs/{job['id']}/cancel", headers=headers)
    assert again.status_code == 409 and "only a queued job" in again.get_json()["error"]
    actions = [a for (a,) in sql("SELECT action FROM audit_log WHERE object_id = %s ORDER BY id", (job["id"],))]
    assert actions == ["maintenance.queue", "maintenance.cancel", "maintenance.job_finished"]
    viewer = token_for(auth, db_url, "viewer")
    assert client.post(f"{API}/jobs/{job['id']}/cancel", headers=viewer).status_code == 403


def test_a_job_a_worker_already_took_cannot_be_cancelled(client, auth, db_url, rds, host_key, sql):
    headers = token_for(auth, db_url, "operator")
    job = client.post(f"{API}/backup", json={}, headers=headers).get_json()
    rds.lrem(f"rq:queue:{maint_queue(HOST)}", 1, job["rq_job_id"])  # what a worker's dequeue does
    response = client.post(f"{API}/jobs/{job['id']}/cancel", headers=headers)
    assert response.status_code == 409 and "cannot be cancelled" in response.get_json()["error"]
    assert job_row(sql, job["id"])["status"] == "queued"


def test_a_job_nobody_takes_is_expired_and_reported_not_lost(client, auth, db_url, rds, host_key, dbconn, sql):
    headers = token_for(auth, db_url, "operator")
    job = client.post(f"{API}/health_check", json={}, headers=headers).get_json()
    settings = Settings(worker_grace_seconds=120)
    requested = dbconn.execute("SELECT requested_at FROM maintenance_jobs").fetchone()["requested_at"]
    sync.sync_jobs(dbconn, rds, settings, now=requested + timedelta(seconds=60))
    assert job_row(sql, job["id"])["status"] == "queued"
    sync.sync_jobs(dbconn, rds, settings, now=requested + timedelta(seconds=121))
    row = job_row(sql, job["id"])
    assert row["status"] == "expired" and row["finished_at"]
    assert "no maintenance worker is running on pool-1 (never seen)" in row["error"]
    assert rq_jobs(rds) == []  # off the queue: a worker started later will not run a stale job
    listed = client.get(f"{API}/jobs?status=expired", headers=headers).get_json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    (finished,) = sql("SELECT details FROM audit_log WHERE action = 'maintenance.job_finished'")
    assert finished[0]["status"] == "expired"


def test_a_queued_job_waits_while_a_worker_is_alive(client, auth, db_url, rds, host_key, dbconn, sql):
    headers = token_for(auth, db_url, "operator")
    job = client.post(f"{API}/health_check", json={}, headers=headers).get_json()
    worker = SimpleWorker([maint_queue(HOST)], connection=rds)
    worker.register_birth()
    try:
        later = dbconn.execute("SELECT now() + interval '1 hour' AS t").fetchone()["t"]
        sync.sync_jobs(dbconn, rds, Settings(), now=later)  # a busy worker may take an hour to get to it
        assert job_row(sql, job["id"])["status"] == "queued"
        state = client.get(f"{API}/hosts/{HOST}", headers=headers).get_json()
        assert state["worker"]["online"] is True and state["worker"]["workers"] == 1
    finally:
        worker.register_death()
    seen = dbconn.execute("SELECT worker_last_seen_at FROM maintenance_host_settings").fetchone()
    assert seen["worker_last_seen_at"] is not None
    state = client.get(f"{API}/hosts/{HOST}", headers=headers).get_json()
    assert state["worker"]["online"] is False and state["worker"]["last_seen"]


def test_jobs_and_logs_filters(client, auth, db_url, host_key):
    headers = token_for(auth, db_url, "operator")
    client.post(f"{API}/backup", json={}, headers=headers)
    client.post(f"{API}/health_check", json={}, headers=headers)
    jobs = client.get(f"{API}/jobs?action=backup", headers=headers).get_json()["jobs"]
    assert [j["action"] for j in jobs] == ["backup"]
    assert len(client.get(f"{API}/jobs?status=queued,running", headers=headers).get_json()["jobs"]) == 2
    bad = client.get(f"{API}/jobs?status=done", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "status"
    assert client.get(f"{API}/jobs?limit=0", headers=headers).status_code == 400
    entries = client.get(f"{API}/logs?limit=1", headers=headers).get_json()["entries"]
    assert len(entries) == 1 and entries[0]["action"] == "health_check" and entries[0]["progress"] == []
    assert client.get(f"{API}/jobs/not-a-uuid", headers=headers).status_code == 404
