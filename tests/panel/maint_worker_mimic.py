"""A stand-in for the agent's maintenance worker that speaks the same protocol, for the panel's tests.

It checks the envelope with the contract's ``verify_envelope`` like the real worker, then "runs"
the action without touching anything: progress lines into ``job.meta["progress"]`` (saved as it
goes), ``job.meta["started_at"]``, and the result dict ``{ok, summary, details, error, progress}``.
A refused job returns ``refused: true``; ``rotate_logs`` raises (an unexpected crash leaves the RQ
job failed); ``vacuum`` waits for the test to open ``GATE_KEY`` in Redis, so a test can watch the
job while it runs. The real worker (agent/worker.py) is tested with the agent.
"""

from __future__ import annotations

import time
from typing import Any

from rq import SimpleWorker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from agent.contract import MAINT_JOB_FUNCTION, EnvelopeRejected, maint_queue, verify_envelope

GATE_KEY = "test:maint:gate"
CONFIG: dict[str, Any] = {"host": None, "key": None}


def _say(job, line: str, lines: list[str]) -> None:
    lines.append(line)
    if job is not None:
        job.meta.setdefault("progress", []).append(line)
        job.save_meta()


def run_job(envelope: Any, signature: Any) -> dict[str, Any]:
    job = get_current_job()
    try:
        params = verify_envelope(CONFIG["key"], envelope, signature, host=CONFIG["host"])
    except EnvelopeRejected as exc:
        return {"ok": False, "refused": True, "summary": f"refused: {exc}", "error": str(exc), "details": {},
                "progress": []}
    lines: list[str] = []
    if job is not None:
        job.meta["started_at"] = time.time()
        job.meta["progress"] = []
        job.save_meta()
    action = envelope["action"]
    _say(job, f"{action}: started for {envelope['requested_by']}", lines)
    if action == "rotate_logs":
        raise RuntimeError("logrotate exploded")
    if action == "vacuum":
        _say(job, f"vacuuming {', '.join(params['tables'])}", lines)
        deadline = time.time() + 20
        while time.time() < deadline and not job.connection.get(GATE_KEY):
            time.sleep(0.05)
    if action == "backup" and params["keep_daily"] == 13:
        _say(job, "disk full", lines)
        return {"ok": False, "summary": "backup failed: no space left", "details": {"free_bytes": 0},
                "error": "no space left on /srv/backups", "progress": lines}
    _say(job, f"{action}: done", lines)
    return {"ok": True, "summary": f"{action} finished", "details": {"params": params, "rows": 42},
            "error": None, "progress": lines}


class MimicJob(Job):
    """Runs ``run_job`` above for the contract's job function name, and nothing else."""

    @property
    def func(self):
        if self.func_name != MAINT_JOB_FUNCTION:
            raise EnvelopeRejected(f"refused: {self.func_name!r} is not the maintenance job function")
        return run_job


def make_worker(rds, host: str, key: bytes) -> SimpleWorker:
    from rq import Queue

    CONFIG.update(host=host, key=key)
    queue = Queue(maint_queue(host), connection=rds, serializer=JSONSerializer)
    return SimpleWorker([queue], connection=rds, serializer=JSONSerializer, job_class=MimicJob)
