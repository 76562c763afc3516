"""Running the panel under gunicorn, on loopback only until the login lands."""

from __future__ import annotations

import ipaddress

from flask import Flask
from gunicorn.app.base import BaseApplication

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_address(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class PanelServer(BaseApplication):
    """gunicorn driven from code: the app is built (and its config checked) before forking."""

    def __init__(self, app: Flask, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer gunicorn options are skipped on older versions
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(app: Flask, host: str, port: int, workers: int) -> None:
    PanelServer(app, {
        "bind": bind_address(host, port),
        "workers": workers,
        "worker_class": "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "poolwarden-panel",
        # gunicorn >= 24 opens a management socket in $HOME by default; the panel has no use for it.
        "control_socket_disable": True,
    }).run()
