"""The engine's maintenance task against a real RQ worker (SimpleWorker, JSON serializer, running
tests/panel/maint_worker_mimic.py): jobs move queued -> running -> succeeded / failed / refused
with their output; schedules run when due and never pile up; provisioning from the file."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from psycopg.rows import dict_row

from panel.engine.tasks import TaskContext, default_tasks
from panel.maintenance import schedules, sync
from panel.maintenance.schedules import Cadence
from panel.maintenance.settings import Settings
from tests.panel.maint_helpers import (
    HOST,
    enrol,
    job_row,
    rq_jobs,
    session_post_json,
    token_for,
)
from tests.panel.maint_worker_mimic import GATE_KEY, make_worker

API = "/api/admin/maintenance"

pytest_plugins = ["tests.panel.maint_fixtures"]  # its fixtures: host_key, ctx, dbconn


def queue(client, headers, action: str, params: dict | None = None) -> dict:
    response = client.post(f"{API}/{action}", json=params or {}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_the_engine_runs_the_maintenance_task():
    (task,) = [t for t in default_tasks({}) if t.name == "maintenance"]
    assert task.run is sync.tick and task.every_seconds == 2


def test_sync_follows_a_real_worker_from_running_to_succeeded(client, auth, db_url, redis_url, rds, host_key, ctx,
                                                            sql):
    headers = token_for(auth, db_url, "operator")
    job = queue(client, headers, "vacuum", {"tables": ["shares", "blocks"]})
    sync.tick(ctx)
    assert job_row(sql, job["id"])["status"] == "queued"

    seen: dict = {}

    def watch():  # the engine, in its own thread, while the worker runs the job in this one
        watcher = TaskContext(db_url, redis.Redis.from_url(redis_url), {})
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                sync.tick(watcher)
                row = job_row(sql, job["id"])
                if row["status"] == "running" and len(row["progress"]) >= 2:
                    seen.update(row)
                    seen["api"] = client.get(f"{API}/jobs/{job['id']}", headers=headers).get_json()
                    seen["silences"] = sql("SELECT matchers, source, expired_at FROM silences")
                    break
                time.sleep(0.05)
        finally:
            watcher.redis.set(GATE_KEY, "1")
            watcher.reset()
            watcher.redis.close()

    thread = threading.Thread(target=watch)
    thread.start()
    worker = make_worker(redis.Redis.from_url(redis_url), HOST, host_key)
    assert worker.work(burst=True)
    thread.join(timeout=30)

    assert seen["status"] == "running" and seen["started_at"]
    assert seen["progress"] == ["vacuum: started for token:t-operator", "vacuuming shares, blocks"]
    assert seen["api"]["status"] == "running" and seen["api"]["progress"] == seen["progress"]
    # while it runs, the alerts a vacuum may cause on this host's database are held back ...
    ((matchers, source, expired),) = seen["silences"]
    assert source == "maintenance" and expired is None
    assert {(m["name"], m["op"], m["value"]) for m in matchers} == {("host", "=", HOST),
                                                                    ("service", "=~", "postgresql")}
    sync.tick(ctx)
    row = job_row(sql, job["id"])
    assert row["status"] == "succeeded" and row["summary"] == "vacuum finished" and row["error"] is None
    # ... and released as soon as it finished: what still fires is notified
    assert [e is not None for (e,) in sql("SELECT expired_at FROM silences")] == [True]
    assert row["progress"][-1] == "vacuum: done"
    assert row["result"]["details"] == {"params": {"tables": ["shares", "blocks"]}, "rows": 42}
    started = datetime.fromisoformat(row["started_at"])
    assert datetime.fromisoformat(row["finished_at"]) >= started >= datetime.fromisoformat(row["requested_at"])
    api = client.get(f"{API}/jobs/{job['id']}", headers=headers).get_json()
    assert api["status"] == "succeeded" and api["details"]["rows"] == 42 and api["duration_seconds"] >= 0
    audits = sql("SELECT action, details FROM audit_log WHERE object_id = %s ORDER BY id", (job["id"],))
    assert [a for a, _ in audits] == ["maintenance.queue", "maintenance.job_started", "maintenance.job_finished"]
    assert audits[1][1]["components"] == ["postgresql"]
    assert audits[2][1]["status"] == "succeeded"
    sync.tick(ctx)  # nothing changes, nothing is recorded twice
    assert len(sql("SELECT 1 FROM audit_log WHERE object_id = %s", (job["id"],))) == 3


@pytest.mark.parametrize(("action", "params", "status", "error", "summary"), [
    ("rotate_logs", {}, "failed", "the worker failed: RuntimeError: logrotate exploded", None),
    ("backup", {"keep_daily": 13}, "failed", "no space left on /srv/backups", "backup failed: no space left"),
    ("health_check", {}, "succeeded", None, "health_check finished"),
])
def test_outcomes_of_a_finished_job(client, auth, db_url, rds, host_key, ctx, sql, action, params, status, error,
                                    summary):
    job = queue(client, token_for(auth, db_url, "operator"), action, params)
    make_worker(rds, HOST, host_key).work(burst=True)
    sync.tick(ctx)
    row = job_row(sql, job["id"])
    assert (row["status"], row["error"], row["summary"]) == (status, error, summary)
    assert row["started_at"] and row["finished_at"]
    assert row["progress"][0] == f"{action}: started for token:t-operator"
    actions = [a for (a,) in sql("SELECT action FROM audit_log WHERE object_id = %s ORDER BY id", (job["id"],))]
    assert actions == ["maintenance.queue", "maintenance.job_started", "maintenance.job_finished"]


def test_a_job_the_worker_refuses_is_marked_refused(client, auth, db_url, rds, host_key, ctx, sql):
    job = queue(client, token_for(auth, db_url, "operator"), "health_check")
    make_worker(rds, HOST, b"another key entirely, not pool-1").work(burst=True)
    sync.tick(ctx)
    row = job_row(sql, job["id"])
    assert row["status"] == "refused"
    assert row["error"] == "bad signature: the job was not signed with this host's job key"


def test_a_worker_that_dies_mid_job_fails_the_job(client, auth, db_url, rds, host_key, dbconn, sql):
    job = queue(client, token_for(auth, db_url, "operator"), "backup")
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    rq_job = Job.fetch(job["rq_job_id"], connection=rds, serializer=JSONSerializer)
    rds.lrem(f"rq:queue:maint:{HOST}", 1, rq_job.id)
    rq_job.worker_name = "gone-worker"
    rq_job.meta["progress"] = ["pg_dump started"]
    rq_job.save()
    rq_job.set_status(JobStatus.STARTED)
    settings = Settings(worker_grace_seconds=120)
    sync.sync_jobs(dbconn, rds, settings)
    assert job_row(sql, job["id"])["status"] == "running"
    sync.sync_jobs(dbconn, rds, settings, now=datetime.now(UTC) + timedelta(seconds=30))
    assert job_row(sql, job["id"])["status"] == "running"  # its worker is gone, but the grace is not over
    sync.sync_jobs(dbconn, rds, settings, now=datetime.now(UTC) + timedelta(seconds=130))
    row = job_row(sql, job["id"])
    assert row["status"] == "failed" and "stopped while the job ran" in row["error"]
    assert row["progress"] == ["pg_dump started"]


# -- schedules ------------------------------------------------------------------------------------------


def test_a_due_schedule_runs_once_and_never_piles_up(app, auth, rds, host_key, dbconn, sql):
    auth.login("ada", "admin")

    def run_due(now):
        with app.app_context():  # the engine reads the secrets key from the environment, tests from the app
            return sync.run_due_schedules(dbconn, rds, settings, now)

    response = session_post_json(auth, f"{API}/schedules", {"name": "nightly-backup", "host": HOST,
                                                            "action": "backup", "cadence": "daily at 03:00"})
    assert response.status_code == 201, response.get_json()
    schedule = response.get_json()
    assert schedule["next_run_at"].endswith("T03:00:00Z")
    settings = Settings()
    now = datetime.now(UTC)
    assert run_due(now) == []
    dbconn.execute("UPDATE maintenance_schedules SET next_run_at = %s", (now - timedelta(minutes=1),))
    (job,) = run_due(now)
    assert job["status"] == "queued", job["error"]
    assert job["requested_by"] == "schedule:nightly-backup" and job["schedule_id"] == schedule["id"]
    assert [j.args[0]["requested_by"] for j in rq_jobs(rds)] == ["schedule:nightly-backup"]
    row = dbconn.execute("SELECT * FROM maintenance_schedules").fetchone()
    assert row["last_run_at"] == now and row["last_job_id"] == job["id"]
    assert row["next_run_at"] > now and row["next_run_at"].hour == 3 and row["next_run_at"].minute == 0

    # due again while the first run still waits for a worker: skipped, not queued twice
    dbconn.execute("UPDATE maintenance_schedules SET next_run_at = %s", (now - timedelta(minutes=1),))
    assert run_due(now) == []
    assert len(rq_jobs(rds)) == 1
    assert dbconn.execute("SELECT next_run_at FROM maintenance_schedules").fetchone()["next_run_at"] > now
    (skip,) = sql("SELECT details->>'reason' FROM audit_log WHERE action = 'maintenance.schedule_skip'")
    assert f"job {job['id']}" in skip[0] and "still queued" in skip[0]

    # once the previous run has ended, the next turn runs
    dbconn.execute("UPDATE maintenance_jobs SET status = 'succeeded', finished_at = now()")
    dbconn.execute("UPDATE maintenance_schedules SET next_run_at = %s", (now - timedelta(minutes=1),))
    assert len(run_due(now)) == 1


def test_a_scheduled_run_the_panel_refuses_is_recorded(auth, runner, rds, dbconn, sql):  # (no key needed)
    enrol(runner, "pool-2")
    auth.login("ada", "admin")
    created = session_post_json(auth, f"{API}/schedules", {"name": "rotate", "host": "pool-2",
                                                           "action": "rotate_logs", "cadence": "every 6 hours"})
    assert created.status_code == 201
    dbconn.execute("DELETE FROM maintenance_host_keys")  # the key was lost (or the host re-installed)
    dbconn.execute("UPDATE maintenance_schedules SET next_run_at = now() - interval '1 minute'")
    (job,) = sync.run_due_schedules(dbconn, rds, Settings())
    assert job["status"] == "refused" and "maintenance enrol pool-2" in job["error"]
    assert rq_jobs(rds, "pool-2") == []


def test_destructive_schedules_need_a_fresh_code_and_unknown_hosts_are_refused(auth, host_key, sql):
    auth.login("ada", "admin")
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")
    body = {"name": "purge", "host": HOST, "action": "cleanup", "params": {"dry_run": False},
            "cadence": "weekly on sunday at 05:00"}
    response = session_post_json(auth, f"{API}/schedules", body)
    assert response.status_code == 403 and "fresh TOTP" in response.get_json()["error"]
    response = session_post_json(auth, f"{API}/schedules", {**body, "params": {}, "host": "nowhere"})
    assert response.status_code == 400 and response.get_json()["field"] == "host"
    response = session_post_json(auth, f"{API}/schedules", {**body, "action": "restart", "params": {}})
    assert response.status_code == 400 and "cannot be put on a schedule" in response.get_json()["error"]


@pytest.mark.parametrize(("now", "cadence", "previous", "expected"), [
    ("2026-03-04 02:59", "daily at 03:00", None, "2026-03-04 03:00"),
    ("2026-03-04 03:00", "daily at 03:00", None, "2026-03-05 03:00"),
    ("2026-03-04 10:00", "weekly on sunday at 04:30", None, "2026-03-08 04:30"),   # a Wednesday
    ("2026-03-08 04:31", "weekly on sun at 04:30", None, "2026-03-15 04:30"),
    ("2026-03-04 10:17", "every 6 hours", None, "2026-03-04 11:00"),
    ("2026-03-04 11:00", "every 6 hours", "2026-03-04 11:00", "2026-03-04 17:00"),
    ("2026-03-06 09:00", "every 6 hours", "2026-03-04 11:00", "2026-03-06 11:00"),  # missed runs are not caught up
])
def test_cadences(now, cadence, previous, expected):
    def ts(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC) if text else None

    assert Cadence.parse(cadence).next_run(ts(now), ts(previous)) == ts(expected)


@pytest.mark.parametrize(("text", "words"), [
    ("nightly", "must be \"daily at HH:MM\""),
    ("daily at 25:00", "is not a time of day"),
    ("weekly on funday at 01:00", "'funday' is not a weekday"),
    ("every 0 hours", "from 1 to 168"),
])
def test_bad_cadences_say_what_is_expected(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        Cadence.parse(text)


# -- provisioning -------------------------------------------------------------------------------------


GOOD = {"schedules": [
    {"name": "nightly-backup", "host": "pool-1", "action": "backup", "params": {"keep_daily": 10},
     "cadence": "daily at 03:00"},
    {"name": "weekly-vacuum", "host": "pool-1", "action": "vacuum", "cadence": "weekly on sunday at 04:30"},
]}


def write(path, data) -> None:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def test_schedules_are_provisioned_from_the_file_and_a_bad_file_changes_nothing(app, auth, runner, rds, tmp_path,
                                                                               db_url, sql):
    config = tmp_path / "maintenance.json"
    write(config, GOOD)
    app.config["MAINTENANCE_CONFIG"] = str(config)
    context = TaskContext(db_url, rds, app.config)
    try:
        sync.tick(context)
        rows = sql("SELECT name, cadence, provisioned, params->>'keep_daily' FROM maintenance_schedules ORDER BY name")
        assert rows == [("nightly-backup", "daily at 03:00", True, "10"),
                        ("weekly-vacuum", "weekly on sunday at 04:30", True, None)]

        bad = {"schedules": [GOOD["schedules"][0], {**GOOD["schedules"][1], "cadence": "sometimes"}]}
        write(config, bad)
        sync.tick(context)
        assert len(sql("SELECT 1 FROM maintenance_schedules")) == 2  # the previous schedules stay
        (error,) = sql("SELECT error FROM maintenance_provisioning")[0]
        assert "schedules[1].cadence: must be" in error and str(config) in error
        auth.login("vera", "viewer")
        page = auth.client.get("/maintenance/schedules").get_data(as_text=True)
        assert "The schedules file was not applied" in page and "schedules[1].cadence" in page
        check = runner.invoke(args=["maintenance", "provision", "--check"])
        assert check.exit_code == 1 and "schedules[1].cadence" in check.output

        write(config, {"schedules": [{**GOOD["schedules"][0], "cadence": "daily at 02:00"}]})
        sync.tick(context)
        rows = sql("SELECT name, cadence FROM maintenance_schedules")
        assert rows == [("nightly-backup", "daily at 02:00")]
        assert sql("SELECT error FROM maintenance_provisioning")[0][0] is None
        (audit,) = sql("SELECT details FROM audit_log WHERE action = 'maintenance.schedules_provision'"
                       " ORDER BY id DESC LIMIT 1")[0]
        assert audit["updated"] == ["nightly-backup"] and audit["removed"] == ["weekly-vacuum"]
    finally:
        context.reset()


@pytest.mark.parametrize(("content", "field", "words"), [
    ("{\"schedules\": [", "maintenance.json", "not valid JSON: line 1"),
    ({"schedules": [{"name": "x", "host": "pool-1", "action": "restart", "cadence": "daily at 01:00"}]},
     "schedules[0].action", "restart cannot be put on a schedule"),
    ({"schedules": [{"name": "x", "host": "pool-1", "action": "backup", "params": {"keep_daily": 0},
                     "cadence": "daily at 01:00"}]}, "schedules[0].params.keep_daily", "must be at least 1"),
    ({"schedules": [{"name": "x", "host": "pool 1", "action": "backup", "cadence": "daily at 01:00"}]},
     "schedules[0].host", "must be a host name"),
    ({"schedules": [{"name": "x", "host": "pool-1", "action": "backup", "cadence": "daily at 01:00", "when": 1}]},
     "schedules[0].when", "is not a schedule field"),
    ({"schedules": [GOOD["schedules"][0], GOOD["schedules"][0]]}, "schedules[1].name", "is used twice"),
    ({"jobs": []}, "maintenance.json", "must be a JSON object {\"schedules\": [...]}"),
])
def test_provisioning_errors_name_the_field(tmp_path, db_url, content, field, words):
    config = tmp_path / "maintenance.json"
    write(config, content)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        with pytest.raises(schedules.ScheduleError) as caught:
            schedules.provision(conn, str(config))
    assert field in str(caught.value) and words in str(caught.value)


def test_a_provisioned_name_may_not_take_over_a_panel_schedule(auth, host_key, tmp_path, db_url, runner):
    auth.login("ada", "admin")
    body = {"name": "nightly-backup", "host": HOST, "action": "backup", "cadence": "daily at 01:00"}
    assert session_post_json(auth, f"{API}/schedules", body).status_code == 201
    config = tmp_path / "maintenance.json"
    write(config, GOOD)
    result = runner.invoke(args=["maintenance", "provision", "--file", str(config)])
    assert result.exit_code == 1
    assert "schedules[0].name: 'nightly-backup' is the name of a schedule made in the panel" in result.output


def test_the_example_configuration_is_valid():
    from pathlib import Path

    specs = schedules.parse_config_file(str(Path(__file__).parents[2] / "config" / "maintenance.json"))
    assert {s.action for s in specs} >= {"backup", "vacuum", "rotate_logs", "cleanup"}
