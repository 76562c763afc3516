"""Maintenance from the panel: catalogue actions queued on a host's RQ queue, followed, scheduled.

* ``dispatch``: enqueue (signed envelope, JSON serializer), cancel, worker presence.
* ``sync``: the engine task (``tick``): RQ state into ``maintenance_jobs``, expiry, schedules.
* ``hooks``: ``on_job_started`` / ``on_job_finished``, called once per transition.
* ``schedules``: cadences, schedule rows, provisioning from ``POOLWARDEN_MAINTENANCE_CONFIG``.
* ``keys``: the per-host job keys (encrypted at rest).
* ``routes``, ``schedule_routes``, ``api``: pages and ``/api/admin/maintenance``; ``cli``: commands.
"""

from __future__ import annotations

from flask import Flask

from panel.maintenance.hooks import on_job_finished, on_job_started

__all__ = ["init_app", "on_job_finished", "on_job_started"]


def init_app(app: Flask) -> None:
    """Register the maintenance pages, its API and the ``maintenance`` commands on ``app.cli``."""
    from panel.maintenance import schedule_routes  # noqa: F401 - adds the schedule pages to the blueprint
    from panel.maintenance.api import bp as api_bp
    from panel.maintenance.cli import maintenance_group
    from panel.maintenance.routes import bp

    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    from panel.audit.cli import bound_to_app

    app.cli.add_command(bound_to_app(maintenance_group))
