"""API tokens: created on the page (shown once), hashed at rest, Bearer auth on /api with no session
fallback, revocation, expiry, role scoping, last use, the per-token rate limit, and the audit trail."""

from __future__ import annotations

import hashlib
import re

import psycopg
import pytest
from flask import jsonify

from panel.auth.principal import role_required
from panel.tokens.store import TokenError, create_token
from tests.panel.security_helpers import bearer, create_user, csrf_token, secure_app

TOKEN = re.compile(r"pw_\d+_[A-Za-z0-9_-]{43}")


@pytest.fixture
def login(app):
    login = secure_app(app)

    @role_required("admin")
    def admin_only():
        return jsonify(ok=True)

    # a throwaway admin-only API route, to see role scoping at work
    app.add_url_rule("/api/test/admin-only", "test_admin_only", admin_only)
    return login


@pytest.fixture
def admin(db_url, login):
    user = create_user(db_url, "alice", "admin")
    login.as_user(user)
    return user


def new_token(client, name="grafana", role="viewer", expires="30"):
    page = client.get("/tokens").get_data(as_text=True)
    response = client.post("/tokens", data={"csrf_token": csrf_token(page), "name": name, "role": role,
                                            "expires_in_days": expires})
    return response


def created_token(client, **kwargs) -> str:
    response = new_token(client, **kwargs)
    assert response.status_code == 201, response.get_data(as_text=True)
    (token,) = set(TOKEN.findall(response.get_data(as_text=True)))
    return token


def token_row(db_url, token_id):
    with psycopg.connect(db_url) as conn:
        cur = conn.execute("SELECT * FROM api_tokens WHERE id = %s", (token_id,))
        names = [c.name for c in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


# -- creation ---------------------------------------------------------------------------------------


def test_token_is_shown_once_and_stored_hashed(client, admin, db_url):
    response = new_token(client)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    (token,) = set(TOKEN.findall(html))
    assert "shown only once" in html
    token_id, secret = int(token.split("_")[1]), token.split("_", 2)[2]

    row = token_row(db_url, token_id)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(row)
    assert (row["name"], row["role"], row["user_id"]) == ("grafana", "viewer", admin.id)
    assert row["created_by"] == "user:alice"
    assert row["expires_at"] is not None

    listing = client.get("/tokens").get_data(as_text=True)
    assert "grafana" in listing and token not in listing and secret not in listing


def test_create_and_revoke_are_audited(client, admin, db_url, sql):
    token = created_token(client, name="ci", role="operator", expires="")
    token_id = token.split("_")[1]
    page = client.get("/tokens").get_data(as_text=True)
    assert client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(page)}).status_code == 302
    rows = sql("SELECT actor, action, object_type, object_id, after->>'role', after->>'expires_at'"
               " FROM audit_log WHERE action LIKE 'token.%' ORDER BY id")
    assert rows == [("user:alice", "token.create", "api_token", token_id, "operator", None),
                    ("user:alice", "token.revoke", "api_token", token_id, None, None)]
    assert "revoked" in client.get("/tokens").get_data(as_text=True)
    assert token not in str(sql("SELECT * FROM audit_log"))


def test_token_pages_need_admin(client, db_url, login):
    login.as_user(create_user(db_url, "olga", "operator"))
    assert client.get("/tokens").status_code == 403
    assert client.post("/tokens", data={"name": "x", "role": "viewer"}).status_code in (400, 403)


@pytest.mark.parametrize("form, message", [
    ({"name": "", "role": "viewer"}, "This field is required."),
    ({"name": "x" * 81, "role": "viewer"}, "Field cannot be longer than 80 characters."),
    ({"name": "<script>", "role": "viewer"}, "letters, digits"),
    ({"name": "ok", "role": "root"}, "Not a valid choice."),
    ({"name": "ok", "role": "viewer", "expires_in_days": "9999"}, "Not a valid choice."),
])
def test_create_form_validation(client, admin, form, message):
    page = client.get("/tokens").get_data(as_text=True)
    response = client.post("/tokens", data={"csrf_token": csrf_token(page), **form})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_create_without_csrf_token_is_refused(client, admin, sql):
    assert client.post("/tokens", data={"name": "x", "role": "viewer"}).status_code == 400
    assert sql("SELECT count(*) FROM api_tokens") == [(0,)]


def test_active_names_are_unique(client, admin):
    created_token(client, name="grafana")
    response = new_token(client, name="GRAFANA")
    assert response.status_code == 400
    assert "already exists" in response.get_data(as_text=True)


def test_a_token_never_gets_more_than_its_creators_role(db_url):
    operator = create_user(db_url, "olga", "operator")
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(TokenError, match=r"more than your own role \(operator\)"):
            create_token(conn, name="x", role="admin", owner=operator, expires_in_days=None)
        assert create_token(conn, name="x", role="operator", owner=operator, expires_in_days=1).role == "operator"


# -- bearer authentication on /api ---------------------------------------------------------------------


def test_bearer_token_works_on_api(client, admin, login):
    token = created_token(client)
    login.as_user(None)  # no session from here on
    assert client.get("/api/hosts").status_code == 401
    response = client.get("/api/hosts", headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["hosts"] == []
    assert client.get("/api/openapi.json", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("header, message", [
    ("Bearer pw_1_" + "A" * 43, "invalid API token"),
    ("Bearer pw_999_" + "A" * 43, "invalid API token"),
    ("Bearer not-a-token", "invalid API token"),
    ("Bearer ", "send the API token as 'Authorization: Bearer <token>'"),
    ("Basic YWxpY2U6cHc=", "send the API token as 'Authorization: Bearer <token>'"),
])
def test_bad_tokens_get_401_json_and_no_session_fallback(client, admin, header, message):
    created_token(client)  # token 1 exists; its secret is not A...A
    response = client.get("/api/hosts", headers={"Authorization": header})  # the admin session is still there
    assert response.status_code == 401
    assert response.get_json() == {"error": message}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_gets_401(client, admin, db_url):
    token = created_token(client)
    assert client.get("/api/hosts", headers=bearer(token)).status_code == 200
    page = client.get("/tokens").get_data(as_text=True)
    client.post(f"/tokens/{token.split('_')[1]}/revoke", data={"csrf_token": csrf_token(page)})
    response = client.get("/api/hosts", headers=bearer(token))
    assert (response.status_code, response.get_json()) == (401, {"error": "API token revoked"})


def test_expired_token_gets_401(client, admin, sql):
    token = created_token(client, expires="1")
    assert client.get("/api/hosts", headers=bearer(token)).status_code == 200
    sql("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
    response = client.get("/api/hosts", headers=bearer(token))
    assert (response.status_code, response.get_json()) == (401, {"error": "API token expired"})


def test_disabled_owner_disables_the_token(client, admin, sql):
    token = created_token(client)
    sql("UPDATE users SET disabled = true WHERE id = %s", (admin.id,))
    response = client.get("/api/hosts", headers=bearer(token))
    assert response.status_code == 401 and "disabled" in response.get_json()["error"]


def test_role_scoping(client, admin, sql):
    viewer = created_token(client, name="viewer-token", role="viewer")
    admin_token = created_token(client, name="admin-token", role="admin")
    response = client.get("/api/test/admin-only", headers=bearer(viewer))
    assert response.status_code == 403
    assert response.get_json() == {"error": "this needs the admin role; you are viewer"}
    assert client.get("/api/test/admin-only", headers=bearer(admin_token)).status_code == 200
    # demoting the owner demotes their tokens
    sql("UPDATE users SET role = 'viewer' WHERE id = %s", (admin.id,))
    assert client.get("/api/test/admin-only", headers=bearer(admin_token)).status_code == 403


def test_last_use_is_recorded(client, admin, db_url):
    token = created_token(client)
    token_id = int(token.split("_")[1])
    assert token_row(db_url, token_id)["last_used_at"] is None
    assert "never" in client.get("/tokens").get_data(as_text=True)
    client.get("/api/hosts", headers=bearer(token), environ_base={"REMOTE_ADDR": "203.0.113.5"})
    row = token_row(db_url, token_id)
    assert row["last_used_at"] is not None and row["last_used_from"] == "203.0.113.5"
    assert "203.0.113.5" in client.get("/tokens").get_data(as_text=True)


def test_rate_limit_per_token(app, client, admin):
    app.config["API_TOKEN_RATE_LIMIT"] = 3
    first = created_token(client, name="first")
    second = created_token(client, name="second")
    assert [client.get("/api/hosts", headers=bearer(first)).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/api/hosts", headers=bearer(first))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "rate limit exceeded" in limited.get_json()["error"]
    assert client.get("/api/hosts", headers=bearer(second)).status_code == 200


def test_rate_limit_lets_requests_through_when_redis_is_down(app, client, admin):
    token = created_token(client)
    app.config["API_TOKEN_RATE_LIMIT"] = 1
    app.extensions.pop("poolwarden_token_rate_redis", None)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    assert [client.get("/api/hosts", headers=bearer(token)).status_code for _ in range(3)] == [200] * 3
