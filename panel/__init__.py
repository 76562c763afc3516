"""poolwarden control panel (Flask)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the panel: settings from the environment (overridden by ``config``), then each part."""
    from panel import cli, db, errors, security
    from panel.api.routes import bp as api_bp
    from panel.config import check_secret_key, load_config, require
    from panel.health import bp as health_bp
    from panel.hosts.routes import bp as hosts_bp

    app = Flask(__name__)
    app.config.from_mapping(load_config())
    app.config.from_mapping(config or {})
    check_secret_key(app.config)
    if not app.testing:
        require(app.config, "DATABASE_URL")

    db.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    cli.init_app(app)

    app.register_blueprint(hosts_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    return app
