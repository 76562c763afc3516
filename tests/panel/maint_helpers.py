"""Helpers of the maintenance tests (their fixtures are in maint_fixtures.py)."""

from __future__ import annotations

import re

import psycopg
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from agent.contract import maint_queue
from panel.tokens.store import create_token
from tests.panel.auth_helpers import csrf_token
from tests.panel.security_helpers import bearer

HOST = "pool-1"
_HEX_LINE = re.compile(r"^([0-9a-f]{64})$", re.M)


def enrol(runner, host: str = HOST) -> bytes:
    result = runner.invoke(args=["maintenance", "enrol", host])
    assert result.exit_code == 0, result.output
    return bytes.fromhex(_HEX_LINE.search(result.output)[1])


def rq_jobs(rds, host: str = HOST) -> list[Job]:
    queue = Queue(maint_queue(host), connection=rds, serializer=JSONSerializer)
    return [Job.fetch(job_id, connection=rds, serializer=JSONSerializer) for job_id in queue.job_ids]


def job_row(sql, job_id: str) -> dict:
    rows = sql("SELECT row_to_json(j) FROM maintenance_jobs j WHERE id = %s", (job_id,))
    assert rows, f"no job {job_id}"
    return rows[0][0]


def token_for(auth, db_url: str, role: str) -> dict[str, str]:
    """An API token of ``role`` (its owner a user of that role): the bearer header."""
    from panel.auth.principal import Principal

    account = auth.create(f"tok-{role}", role)
    owner = Principal("user", account.user_id, account.username, role, account.user_id)
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = create_token(conn, name=f"t-{role}", role=role, owner=owner, expires_in_days=1).token
    return bearer(token)


def session_post_json(auth, path: str, body: dict):
    """POST JSON to the API with the signed-in session (and its CSRF token, as a page script would)."""
    token = csrf_token(auth.client.get("/account").get_data(as_text=True))
    return auth.client.post(path, json=body, headers={"X-CSRFToken": token})


def form_post(auth, page_path: str, action_path: str, data: dict):
    """POST a form with the CSRF token of ``page_path``."""
    page = auth.client.get(page_path).get_data(as_text=True)
    return auth.client.post(action_path, data={"csrf_token": csrf_token(page), **data})
