"""Alerting, the rules and evaluation half: built-in rule types, alerts.json, the state machine the
engine runs every few seconds, the alert pages and ``/api/admin/alerts``. (Grouping, silences,
acknowledge/snooze and delivery are ``panel.notify``.)

* ``types``: the rule types (parameters, what they read, how they judge), one module per area.
* ``config``: alerts.json (check, built-in rules, export); ``store``: rules in the database.
* ``data``: what one evaluation reads; ``evaluator``: the state machine and the engine task.
* ``replay``/``preview``: "would have fired N times in the last 7 days".
* ``queries``, ``routes``, ``api``, ``openapi``: pages and API; ``cli``: the ``alerts`` commands.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the alert pages, their API and the ``alerts`` commands on ``app.cli``."""
    from panel.alerts.api import bp as api_bp
    from panel.alerts.cli import alerts_group
    from panel.alerts.routes import bp
    from panel.audit.cli import bound_to_app

    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    app.cli.add_command(bound_to_app(alerts_group))
