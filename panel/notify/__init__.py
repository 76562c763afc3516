"""Notifications: routes, grouping, silences, acknowledgements and delivery to channels.

* ``dispatcher``: the engine task's work: alerts into groups, noise control, notifications queued.
* ``jobs``: the RQ job ``panel.notify.deliver`` (retries, idempotency, a delivery row per attempt).
* ``channels``: webhook and e-mail; ``store``: channels and routes in the database;
  ``provisioning``: ``integrations.json``.
* ``silences`` (``create_silence``, ``expire_silence``: the maintenance code calls them),
  ``inhibit`` (dependency suppression), ``acks`` (acknowledge, snooze).
* ``routes`` and ``api``: the pages and ``/api/admin/...``; ``worker``: the ``notify-worker`` command.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from panel.notify.acks import AlertActionError, acknowledge, snooze
from panel.notify.jobs import deliver
from panel.notify.silences import SilenceError, create_silence, expire_silence

__all__ = ["AlertActionError", "SilenceError", "TICK_SECONDS", "acknowledge", "create_silence", "deliver",
           "expire_silence", "init_app", "snooze", "tick"]

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
REQUEUE_EVERY_SECONDS = 60.0
_last_requeue = {"at": 0.0}


def tick(ctx, now: datetime | None = None):
    """The engine task: provision integrations.json when it changed, dispatch, re-queue lost jobs."""
    from panel.notify import jobs
    from panel.notify.dispatcher import dispatch
    from panel.notify.provisioning import provision_if_changed
    from panel.notify.settings import Settings

    settings = Settings.from_config(ctx.config)
    conn, rds = ctx.conn, ctx.redis
    provision_if_changed(conn, settings.integrations_config)
    report = dispatch(conn, now=now, external_url=settings.external_url,
                      enqueue=lambda ids: jobs.enqueue(rds, ids, settings.retry_intervals))
    if time.monotonic() - _last_requeue["at"] >= REQUEUE_EVERY_SECONDS:
        _last_requeue["at"] = time.monotonic()
        jobs.requeue_lost(conn, rds, intervals=settings.retry_intervals)
    return report


def init_app(app) -> None:
    """The notification pages (silences, channels, acknowledge/snooze) and their API."""
    from panel.notify.api import bp as api_bp
    from panel.notify.routes import bp
    from panel.notify.worker import notify_worker_command

    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    app.cli.add_command(_bound(notify_worker_command))


def _bound(command):
    """A copy of a command that runs inside the app context (for ``app.cli`` and the test runner)."""
    import copy

    from flask.cli import with_appcontext

    bound = copy.copy(command)
    bound.callback = with_appcontext(command.callback)
    return bound
