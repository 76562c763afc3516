"""poolwarden control panel (Flask)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the panel: settings from the environment (overridden by ``config``), then each part."""
    from panel import alerts, audit, cli, db, errors, maintenance, notify, secretbox, security, tokens
    from panel.account.routes import bp as account_bp
    from panel.allowlist.routes import bp as allowlist_bp
    from panel.api import openapi
    from panel.api.routes import bp as api_bp
    from panel.auth.routes import bp as auth_bp
    from panel.config import check_secret_key, load_config, require
    from panel.health import bp as health_bp
    from panel.hosts.routes import bp as hosts_bp
    from panel.metrics import bp as metrics_bp
    from panel.users.routes import bp as users_bp

    app = Flask(__name__)
    app.config.from_mapping(load_config())
    app.config.from_mapping(config or {})
    check_secret_key(app.config)
    if not app.testing:
        require(app.config, "DATABASE_URL")
    elif "SESSION_COOKIE_SECURE" not in (config or {}):
        app.config["SESSION_COOKIE_SECURE"] = False  # the test client and test servers speak plain HTTP

    security.init_app(app)  # first: its allowlist hook runs before every other hook
    db.init_app(app)
    errors.init_app(app)
    secretbox.init_app(app)
    audit.init_app(app)
    tokens.init_app(app)  # bearer tokens for /api; the session hook leaves those requests alone
    cli.init_app(app)

    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(hosts_bp)
    app.register_blueprint(users_bp)
    app.register_blueprint(allowlist_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    maintenance.init_app(app)
    notify.init_app(app)
    alerts.init_app(app)
    openapi.init_app(app)
    return app
