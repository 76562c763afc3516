"""Every route of the app is authenticated and authorised: walk ``app.url_map``.

Only the login page, static files and /healthz answer without a session or token. Every other
endpoint declares its least role with ``@role_required`` (which sets ``required_role``) or is a step
of the sign-in itself (``login_flow``: reachable only with a pending password login); an endpoint
with neither fails this test, so a new route cannot be forgotten.
"""

from __future__ import annotations

import pytest

from panel.auth.principal import ROLES, role_rank
from tests.panel.auth_helpers import csrf_token

PUBLIC = {"static", "health.healthz", "auth.login"}
SAMPLE_VALUES = {"int": 1, "filename": "panel.css", "name": "pool-1", "default": "x"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def sample_url(app, rule) -> str:
    values = {}
    for arg in rule.arguments:
        converter = type(rule._converters[arg]).__name__.lower()
        if "integer" in converter:
            values[arg] = SAMPLE_VALUES["int"]
        else:
            values[arg] = SAMPLE_VALUES.get(arg, SAMPLE_VALUES["default"])
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


def routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - IGNORED_METHODS):
            yield rule, method, sample_url(app, rule)


def request(client, method: str, url: str, token: str):
    data = {"csrf_token": token} if method != "GET" else None
    return client.open(url, method=method, data=data)


def test_every_non_public_endpoint_declares_a_role_or_is_a_sign_in_step(app):
    missing = []
    for endpoint, view in app.view_functions.items():
        if endpoint in PUBLIC:
            continue
        role = getattr(view, "required_role", None)
        if role is None and not getattr(view, "login_flow", False):
            missing.append(endpoint)
        elif role is not None:
            assert role in ROLES, endpoint
    assert missing == [], f"endpoints without @role_required: {missing}"
    assert len(app.view_functions) > 15


def test_nothing_but_login_static_and_healthz_answers_without_a_session(app, client):
    token = csrf_token(client.get("/login").get_data(as_text=True))  # an anonymous session's token
    checked = 0
    for rule, method, url in routes(app):
        response = request(client, method, url, token)
        where = f"{method} {url} ({rule.endpoint})"
        if rule.endpoint in PUBLIC:
            assert response.status_code == 200 or method != "GET", where
            continue
        if url.startswith("/api/") or url == "/metrics":  # machine-read: 401, never a login redirect
            assert response.status_code == 401, where
            assert response.get_json()["error"], where
        else:
            assert response.status_code == 302, where
            assert response.headers["Location"].startswith("/login"), where
        checked += 1
    assert checked > 15


def test_public_routes_answer_anonymously(client):
    assert client.get("/login").status_code == 200
    assert client.get("/static/panel.css").status_code == 200
    assert client.get("/static/panel.js").status_code == 200
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_each_route_enforces_its_role(app, auth, role):
    auth.login(f"someone-{role}", role)
    client = auth.client
    token = csrf_token(client.get("/account").get_data(as_text=True))
    refused = allowed = 0
    for rule, method, url in routes(app):
        view = app.view_functions[rule.endpoint]
        required = getattr(view, "required_role", None)
        if required is None:
            continue
        where = f"{role} {method} {url} ({rule.endpoint}, needs {required})"
        if role_rank(role) < role_rank(required):
            response = request(client, method, url, token)
            assert response.status_code == 403, where
            if url.startswith("/api/") or url == "/metrics":
                assert required in response.get_json()["error"], where
            refused += 1
        elif method == "GET":  # allowed: the page answers (posts act, and are tested one by one elsewhere)
            response = request(client, method, url, token)
            assert response.status_code not in (401, 403), where
            assert not (response.status_code == 302 and response.headers["Location"].startswith("/login")), where
            allowed += 1
    assert allowed > 0
    assert (refused > 0) == (role != "admin")
