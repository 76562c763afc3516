"""Maintenance from end to end: a button's job goes from the panel through Redis to the real agent
worker, which runs the real action (pg_dump of poolsim's Miningcore database), and the result
comes back into the panel's job list; safe mode refuses; a host without a worker is reported."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from devtools.processes import console_script
from devtools.services import ROOT
from tests.integration.conftest import HOST, panel_client, panel_command, wait_until
from tests.panel.auth_helpers import csrf_token

pytestmark = pytest.mark.slow

API = "/api/admin/maintenance"


@pytest.fixture
def client(stack):
    return panel_client(stack)


def post(client, path, body):
    token = csrf_token(client.get("/account").get_data(as_text=True))
    return client.post(path, json=body, headers={"X-CSRFToken": token})


def job(client, job_id):
    return client.get(f"{API}/jobs/{job_id}").get_json()


def finished(client, job_id):
    state = job(client, job_id)
    return state if state["status"] not in ("queued", "running") else None


def test_backup_from_the_panel_runs_on_the_agent_and_reports_back(stack, client):
    stack["run_engine"]()
    worker = stack["run_worker"]()
    answer = post(client, f"{API}/backup?host={HOST}", {"keep_daily": 3})
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["id"]
    state = wait_until(lambda: finished(client, job_id), 120, "the backup job to finish")
    assert state["status"] == "succeeded", state
    assert state["requested_by"] == "user:" + stack["admin"]["username"]
    assert any("pg_restore" in line or "verified" in line for line in state["progress"]), state["progress"]
    backups = stack["tmp"] / "backups"
    dumps = sorted(p.name for p in backups.iterdir() if p.name.endswith(".dump"))
    assert len(dumps) == 1 and dumps[0].startswith("miningcore-"), list(backups.iterdir())

    # The health check changes nothing and reports every check with its verdict.
    answer = post(client, f"{API}/health_check?host={HOST}", {})
    assert answer.status_code == 202
    state = wait_until(lambda: finished(client, answer.get_json()["id"]), 120, "the health check")
    assert state["status"] in ("succeeded", "failed") and state["summary"], state

    # Safe mode on the host (from the agent's console) refuses a destructive job the panel sent.
    subprocess.run([console_script("poolwarden-agent"), "safe-mode", "on", "--reason", "disk swap",
                    "--config-dir", str(ROOT / "config")], env={**os.environ, **stack["agent_env"]}, check=True,
                   capture_output=True)
    answer = post(client, f"{API}/cleanup?host={HOST}", {"dry_run": True})
    assert answer.status_code == 202
    state = wait_until(lambda: finished(client, answer.get_json()["id"]), 120, "the dry-run clean-up")
    assert state["status"] in ("succeeded", "failed") and "safe mode" not in (state.get("error") or "")

    # the session signed in moments ago, so its TOTP code is fresh enough for a destructive action
    answer = post(client, f"{API}/cleanup?host={HOST}", {"dry_run": False})
    assert answer.status_code == 202, answer.get_json()
    state = wait_until(lambda: finished(client, answer.get_json()["id"]), 120, "the refused clean-up")
    assert state["status"] == "refused" and "disk swap" in state["error"], state
    assert worker.alive()


def test_a_job_for_a_host_without_a_worker_is_reported(stack, client):
    stack["run_engine"]()  # the engine marks it; no agent worker runs
    answer = post(client, f"{API}/health_check?host={HOST}", {})
    assert answer.status_code == 202
    job_id = answer.get_json()["id"]
    # the panel's grace before it gives up is 120 s by default; the page says the worker is offline at once
    page = client.get(f"/hosts/{HOST}/maintenance").get_data(as_text=True)
    assert "offline" in page.lower() or "not running" in page.lower()
    assert job(client, job_id)["status"] == "queued"
    listed = client.get(f"{API}/jobs?host={HOST}").get_json()
    assert job_id in json.dumps(listed)
    panel_command(stack["panel_env"], "maintenance", "key", HOST)  # the key is still there to give the agent
