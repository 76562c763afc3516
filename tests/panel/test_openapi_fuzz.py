"""The OpenAPI document: it describes every /api route, needs authentication, and the live API
conforms to it under schemathesis fuzzing (no 5xx, documented status codes, content types, schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from panel.api.openapi import _openapi_path, document
from panel.tokens.store import create_token
from tests.panel.helpers import ingest, pool_host_batch, xadd
from tests.panel.security_helpers import bearer, create_user, secure_app

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def api(app, db_url):
    """The app wired with tokens and the document, and a viewer token."""
    import psycopg

    secure_app(app)
    owner = create_user(db_url, "alice", "admin")
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = create_token(conn, name="fuzz", role="viewer", owner=owner, expires_in_days=1).token
    return app, token


def test_every_api_route_is_documented(api):
    app, _ = api
    documented = set(document()["paths"])
    routes = {_openapi_path(rule.rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/") and not rule.rule.startswith("/api/test/")}
    assert routes == documented


def test_document_is_served_to_authenticated_clients_only(api):
    app, token = api
    client = app.test_client()
    assert client.get("/api/openapi.json").status_code == 401
    response = client.get("/api/openapi.json", headers=bearer(token))
    assert response.status_code == 200
    body = response.get_json()
    assert body["openapi"].startswith("3.")
    assert body["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "pw_<id>_<secret>"}
    for path, methods in body["paths"].items():
        for method, op in methods.items():
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
            assert op["x-required-role"] in ("viewer", "operator", "admin")


@pytest.mark.slow
def test_api_conforms_to_its_document_under_fuzzing(api, runner, rds):
    app, token = api
    # one host: with several, a schema-valid call without ?host= is (correctly) a 400, which
    # schemathesis's positive-data check cannot know about
    xadd(rds, "pool-1", pool_host_batch())
    ingest(runner)
    app.config["API_TOKEN_RATE_LIMIT"] = 1_000_000
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=bearer(token))
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the document's own path
    assert {op.path for op in operations} == set(document()["paths"]) - {"/api/openapi.json"}
    for operation in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=bearer(token))

        check()


@pytest.mark.parametrize("url", ["/api/hosts/a%00b/overview", "/api/admin/system/disk?host=a%00b"])
def test_nul_in_a_host_name_is_not_a_server_error(api, url):
    app, token = api
    assert app.test_client().get(url, headers=bearer(token)).status_code < 500
