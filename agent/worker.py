"""``poolwarden-agent work``: the maintenance worker — an RQ worker on this host's ``maint:<host>``.

What it runs, and nothing else (DESIGN.md, security model):

* jobs whose function is ``agent.worker.run_job`` (``contract.MAINT_JOB_FUNCTION``): ``CatalogueJob``
  never imports a function by name, never calls an RQ callback named in the job, refuses methods of
  pickled instances, and RQ's JSON serializer is used throughout (pickle would run code on load);
* envelopes signed with this host's job key (HMAC-SHA256), addressed to this host, not expired,
  naming a catalogue action with parameters ``contract.validate_params`` accepts;
* no destructive action while safe mode is on — either from the panel (the envelope says so) or
  locally (``maintenance.safeModeFile`` exists: ``poolwarden-agent safe-mode on``).

The job's progress goes to ``job.meta["progress"]`` line by line; the return value is
``{"ok", "summary", "details", "error", "progress", "refused"}`` (see ``result``). A refused job
returns ``ok: false, refused: true`` and the reason; a failed action ``ok: false`` and its message.
Each job runs in a forked work horse (RQ's default): a crash or a kill in an action never takes
the worker down, and RQ's job timeout stops an action that hangs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.contract import (
    ACTIONS,
    MAINT_JOB_FUNCTION,
    EnvelopeRejected,
    maint_queue,
    verify_envelope,
)

log = logging.getLogger("agent.worker")

KEY_BYTES_MIN = 16


class WorkerSetupError(Exception):
    """The worker cannot start: the message says what to fix."""


@dataclass
class Runtime:
    config: Config
    key: bytes


_runtime: Runtime | None = None  # set by ``configure`` before the worker forks its work horses


def read_job_key(path: str | None) -> bytes:
    if not path:
        raise WorkerSetupError("maintenance.jobKeyFile is not set in monitoring.json: the worker needs this host's "
                               "job key (poolwarden-panel maintenance enrol HOST prints it)")
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except OSError as exc:
        raise WorkerSetupError(f"cannot read the job key file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WorkerSetupError(f"the job key file {path} is not hex text") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise WorkerSetupError(f"the job key file {path} must hold the key as hex") from None
    if len(key) < KEY_BYTES_MIN:
        raise WorkerSetupError(f"the job key in {path} is too short ({len(key)} bytes, need {KEY_BYTES_MIN}+)")
    return key


def configure(config: Config, key: bytes) -> None:
    global _runtime
    _runtime = Runtime(config, key)


def safe_mode_file(config: Config) -> Path | None:
    path = config.monitoring.maintenance.safe_mode_file
    return Path(path) if path else None


def local_safe_mode(config: Config) -> str | None:
    """The reason safe mode is on locally, or None when it is off."""
    path = safe_mode_file(config)
    if path is None or not path.exists():
        return None
    try:
        reason = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        reason = ""
    return reason or "no reason given"


def result(ok: bool, summary: str, *, details: dict[str, Any] | None = None, error: str | None = None,
           progress: list[str] | None = None, refused: bool = False) -> dict[str, Any]:
    return {"ok": ok, "summary": summary, "details": details or {}, "error": error, "progress": progress or [],
            "refused": refused}


def _job_progress(line: str) -> None:
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        return
    job.meta.setdefault("progress", []).append(line)
    try:
        job.save_meta()
    except Exception as exc:  # noqa: BLE001 - progress is best effort; the result carries every line
        log.debug("could not save progress: %s", exc)


def run_job(envelope: Any, signature: Any) -> dict[str, Any]:
    """The only function the worker runs: check the envelope, then run its catalogue action."""
    from agent.actions import ActionContext, ActionFailed, implementation

    if _runtime is None:
        return result(False, "refused: the worker is not configured", error="worker not configured", refused=True)
    config, key = _runtime.config, _runtime.key
    try:
        params = verify_envelope(key, envelope, signature, host=config.host)
    except EnvelopeRejected as exc:
        log.warning("refused a job: %s", exc)
        return result(False, f"refused: {exc}", error=str(exc), refused=True)
    name = envelope["action"]
    action = ACTIONS[name]
    local = local_safe_mode(config)
    if local is not None and action.is_destructive(params):
        reason = f"safe mode is on on this host ({local}): destructive actions are refused"
        log.warning("refused %s: %s", name, reason)
        return result(False, f"refused: {reason}", error=reason, refused=True)

    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.meta["started_at"] = time.time()
        job.meta["progress"] = []
        job.save_meta()
    ctx = ActionContext(host=config.host, config=config, job_id=str(envelope.get("job")),
                        requested_by=str(envelope.get("requested_by")), progress=_job_progress)
    log.info("job %s: %s %s requested by %s", ctx.job_id, name, params, ctx.requested_by)
    ctx.say(f"{action.title}: started on {config.host} for {ctx.requested_by}")
    try:
        outcome = implementation(name)(ctx, params)
    except ActionFailed as exc:
        ctx.say(f"failed: {exc.message}")
        log.warning("job %s: %s failed: %s", ctx.job_id, name, exc.message)
        return result(False, exc.message, details=exc.details, error=exc.message, progress=ctx.lines)
    except Exception as exc:  # noqa: BLE001 - a bug in an action: report it as the job's failure
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        ctx.say(f"failed unexpectedly: {last}")
        log.exception("job %s: %s failed unexpectedly", ctx.job_id, name)
        return result(False, f"failed unexpectedly: {last}", error=last, progress=ctx.lines)
    summary = str(outcome.get("summary") or f"{action.title}: done")
    ok = bool(outcome.get("ok", True))
    ctx.say(f"done: {summary}")
    details = {k: v for k, v in outcome.items() if k not in ("summary", "ok")}
    return result(ok, summary, details=details, progress=ctx.lines,
                  error=None if ok else summary)


def make_job_class():
    from rq.job import Job

    class CatalogueJob(Job):
        """A job that can only ever call ``run_job`` with two positional arguments."""

        @property
        def func(self):
            if self.func_name != MAINT_JOB_FUNCTION:
                raise EnvelopeRejected(f"refused: {self.func_name!r} is not the maintenance job function")
            if self.instance is not None or self.kwargs:
                raise EnvelopeRejected("refused: maintenance jobs take exactly (envelope, signature)")
            if len(self.args) != 2:
                raise EnvelopeRejected("refused: maintenance jobs take exactly (envelope, signature)")
            if self._success_callback_name or self._failure_callback_name or self._stopped_callback_name:
                raise EnvelopeRejected("refused: maintenance jobs carry no callbacks")
            return run_job

        # RQ would import and call these by name: never. A job naming one is refused in ``func``.
        @property
        def success_callback(self):
            return None

        @property
        def failure_callback(self):
            return None

        @property
        def stopped_callback(self):
            return None

    return CatalogueJob


def build_worker(config: Config, key: bytes, redis_url: str, *, simple: bool = False, name: str | None = None):
    """An RQ worker on this host's queue only, with the JSON serializer and the catalogue job class."""
    import redis
    from rq import Queue, SimpleWorker, Worker
    from rq.serializers import JSONSerializer

    configure(config, key)
    connection = redis.Redis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=30)
    job_class = make_job_class()
    queue = Queue(maint_queue(config.host), connection=connection, serializer=JSONSerializer, job_class=job_class)
    cls = SimpleWorker if simple else Worker
    worker_name = name or f"{config.host}.{socket.gethostname()}.{os.getpid()}".replace(":", "_")
    return cls([queue], connection=connection, serializer=JSONSerializer, job_class=job_class, name=worker_name)
