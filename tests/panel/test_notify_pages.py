"""The notification pages and API: silences, acknowledge and snooze, channels (step-up for secrets,
send test, delivery log), roles, CSRF and the audit log."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from panel.notify.provisioning import provision
from panel.tokens.store import create_token
from tests.panel.auth_helpers import csrf_token
from tests.panel.notify_helpers import make_channel
from tests.panel.security_helpers import bearer

pytest_plugins = ["tests.panel.notify_fixtures", "tests.sinks"]  # fixtures: secrets_key, alert_table, webhook_sink


@pytest.fixture(autouse=True)
def _one_secrets_key(secrets_key):
    """Set before any sign-in: TOTP secrets and channel secrets are encrypted with the same key."""


@pytest.fixture
def conn(db_url, secrets_key):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def operator(auth, secrets_key):
    auth.login("olga", "operator")
    return auth


@pytest.fixture
def admin(auth, secrets_key):
    auth.login("root", "admin")
    return auth


def audit_actions(conn) -> list[str]:
    return [r["action"] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]


def drop_step_up(conn) -> None:
    conn.execute("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")


def step_up(auth, username: str) -> None:
    page = auth.client.get("/step-up").get_data(as_text=True)
    response = auth.client.post("/step-up", data={"csrf_token": csrf_token(page), "code": auth.code(username),
                                                  "next": "/integrations"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


# -- silences ------------------------------------------------------------------------------------------

def test_viewers_see_silences_but_cannot_make_them(viewer, conn, client):
    from panel.notify import create_silence

    create_silence(conn, matchers=[{"name": "host", "op": "=", "value": "pool-1"}], starts_at=None,
                   ends_at=datetime.now(UTC) + timedelta(hours=2), created_by="user:olga", comment="disk swap")
    page = html.unescape(client.get("/silences").get_data(as_text=True))
    assert 'host="pool-1"' in page and "disk swap" in page and "active" in page
    assert 'id="silence-form"' not in page and "Expire" not in page
    token = csrf_token(client.get("/account").get_data(as_text=True))
    assert client.post("/silences", data={"csrf_token": token, "matchers": "host=x"}).status_code == 403


def test_operator_creates_and_expires_a_silence(operator, conn):
    response = operator.post("/silences", {"matchers": 'host=pool-1\nalertname=~"Disk.*"', "kind": "once",
                                           "duration": "60", "comment": "disk swap"})
    assert response.status_code == 302
    (silence,) = conn.execute("SELECT * FROM silences").fetchall()
    assert silence["matchers"] == [{"name": "host", "op": "=", "value": "pool-1"},
                                   {"name": "alertname", "op": "=~", "value": "Disk.*"}]
    assert abs((silence["ends_at"] - silence["starts_at"]).total_seconds() - 3600) < 1
    assert silence["created_by"] == "user:olga" and silence["source"] == "user"
    page = html.unescape(operator.client.get("/silences").get_data(as_text=True))
    assert "Silence 1 created." in page and 'alertname=~"Disk.*"' in page
    response = operator.post(f"/silences/{silence['id']}/expire", token_from="/silences")
    assert response.status_code == 302
    assert conn.execute("SELECT expired_by FROM silences").fetchone()["expired_by"] == "user:olga"
    assert audit_actions(conn)[-2:] == ["silence.create", "silence.expire"]


def test_operator_creates_a_weekly_maintenance_window(operator, conn):
    response = operator.post("/silences", {"matchers": "host=pool-1", "kind": "weekly", "weekdays": ["1", "3"],
                                           "window_start": "02:30", "window_minutes": "90",
                                           "until": "2099-01-31", "comment": "weekly vacuum"})
    assert response.status_code == 302
    silence = conn.execute("SELECT recurrence, ends_at FROM silences").fetchone()
    assert silence["recurrence"] == {"weekdays": [1, 3], "start": "02:30", "duration_minutes": 90}
    assert silence["ends_at"] == datetime(2099, 2, 1, tzinfo=UTC)
    assert "every Tue, Thu at 02:30 UTC for 1 h 30 min" in operator.client.get("/silences").get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    ({"matchers": "host", "kind": "once", "duration": "60"}, "write it as name=value"),
    ({"matchers": 'host=~".*"', "kind": "once", "duration": "60"}, "would silence every alert"),
    ({"matchers": "host=a", "kind": "once", "duration": "60", "ends_at": "2001-01-01T00:00"}, "ends_at: must be after"),
    ({"matchers": "host=a", "kind": "weekly", "window_start": "03:00", "window_minutes": "60"}, "choose at least one"),
    ({"matchers": "host=a", "kind": "once", "starts_at": "tomorrow"}, "YYYY-MM-DD HH:MM"),
])
def test_bad_silences_are_refused_with_the_reason(operator, conn, data, message):
    response = operator.post("/silences", data)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert conn.execute("SELECT count(*) AS n FROM silences").fetchone()["n"] == 0


def test_forms_need_their_csrf_token(operator, conn, alert_table):
    alert_id = alert_table.fire()
    client = operator.client
    assert client.post("/silences", data={"matchers": "host=a", "kind": "once", "duration": "60"}).status_code == 400
    assert client.post(f"/alerts/{alert_id}/acknowledge").status_code == 400
    assert conn.execute("SELECT acknowledged_at FROM alerts").fetchone()["acknowledged_at"] is None


# -- acknowledge and snooze ----------------------------------------------------------------------------------

def test_acknowledge_and_snooze_from_a_page(operator, conn, alert_table):
    from flask import url_for

    alert_id = alert_table.fire()
    with operator.app.test_request_context():
        ack_url, snooze_url = (url_for("notify.acknowledge", alert_id=alert_id),
                               url_for("notify.snooze", alert_id=alert_id))
    response = operator.post(ack_url, {"next": "/silences"}, token_from="/silences")
    assert response.status_code == 302 and response.headers["Location"] == "/silences"
    response = operator.post(snooze_url, {"minutes": "60", "next": "https://evil.example/"}, token_from="/silences")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    row = conn.execute("SELECT acknowledged_by, snoozed_by, snoozed_until FROM alerts").fetchone()
    assert row["acknowledged_by"] == "user:olga" and row["snoozed_by"] == "user:olga"
    assert abs((row["snoozed_until"] - datetime.now(UTC)).total_seconds() - 3600) < 60
    assert operator.post(snooze_url, {"minutes": "0"}, token_from="/silences").status_code == 400
    alert_table.resolve(alert_id, datetime.now(UTC))
    response = operator.post(ack_url, token_from="/silences")
    assert response.status_code == 409 and "resolved already" in response.get_data(as_text=True)
    assert operator.post("/alerts/999999/acknowledge", token_from="/silences").status_code == 404
    assert audit_actions(conn)[-2:] == ["alert.acknowledge", "alert.snooze"]


def test_viewers_cannot_acknowledge(viewer, alert_table, client):
    alert_id = alert_table.fire()
    token = csrf_token(client.get("/account").get_data(as_text=True))
    assert client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/alerts/{alert_id}/snooze", data={"csrf_token": token, "minutes": "5"}).status_code == 403


# -- channels ------------------------------------------------------------------------------------------------

def test_channels_are_for_admins(operator):
    assert operator.client.get("/integrations").status_code == 403
    assert operator.client.get("/integrations/new?type=webhook").status_code == 403


def test_admin_creates_a_webhook_after_a_step_up_and_tests_it(admin, conn, webhook_sink):
    drop_step_up(conn)
    form = {"name": "ops-hook", "enabled": "y", "url": webhook_sink.url, "secret": "k3y", "timeoutSeconds": "5"}
    response = admin.post("/integrations/new?type=webhook", form)
    assert response.status_code == 302 and response.headers["Location"].startswith("/step-up")
    assert conn.execute("SELECT count(*) AS n FROM integrations").fetchone()["n"] == 0
    step_up(admin, "root")
    response = admin.post("/integrations/new?type=webhook", form)
    assert response.status_code == 302, response.get_data(as_text=True)[:600]
    channel = conn.execute("SELECT * FROM integrations").fetchone()
    assert channel["settings"] == {"timeoutSeconds": 5, "authHeaderName": "Authorization"}
    assert "k3y" not in (channel["secrets_enc"] or "") and webhook_sink.url not in channel["secrets_enc"]
    page = admin.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "set, leave empty to keep it" in page and webhook_sink.url not in page and "k3y" not in page

    response = admin.post(f"/integrations/{channel['id']}/test", token_from=f"/integrations/{channel['id']}")
    assert response.status_code == 302
    (request,) = webhook_sink.wait_for(1)
    assert request.headers["x-poolwarden-event"] == "test" and request.json()["kind"] == "test"
    page = admin.client.get(f"/integrations/{channel['id']}").get_data(as_text=True)
    assert "Test notification sent to ops-hook (200)" in page
    assert "delivery-sent" in page, "the delivery log shows the attempt"
    assert "integration.create" in audit_actions(conn) and "integration.test" in audit_actions(conn)


def test_editing_without_touching_secrets_needs_no_step_up(admin, conn, webhook_sink):
    channel = make_channel(conn, url=webhook_sink.url, secret="old-secret")
    drop_step_up(conn)
    page_url = f"/integrations/{channel.id}"
    response = admin.post(page_url, {"name": "ops-hook", "enabled": "y", "timeoutSeconds": "3"})
    assert response.status_code == 302 and response.headers["Location"] == page_url
    row = conn.execute("SELECT settings, enabled FROM integrations").fetchone()
    assert row["settings"]["timeoutSeconds"] == 3
    from panel.notify.store import get_integration

    assert get_integration(conn, channel.id).secrets()["secret"] == "old-secret", "a blank secret keeps the old one"
    response = admin.post(page_url, {"name": "ops-hook", "enabled": "y", "secret": "new-secret"})
    assert response.headers["Location"].startswith("/step-up")
    assert get_integration(conn, channel.id).secrets()["secret"] == "old-secret"


def test_bad_channel_settings_are_shown_on_the_form(admin, conn):
    response = admin.post("/integrations/new?type=email", {"name": "mail", "smtpHost": "m.example.org",
                                                            "from": "pw@example.org", "to": "not-an-address"})
    assert response.status_code == 400
    assert "not an e-mail address: &#39;not-an-address&#39;" in response.get_data(as_text=True)


def test_the_channels_page_shows_channels_routes_and_a_refused_file(admin, conn, tmp_path):
    path = tmp_path / "integrations.json"
    path.write_text('{"integrations": [{"name": "file-hook", "type": "webhook", "url": "http://127.0.0.1:1/x"}],'
                    ' "routes": [{"name": "crit", "severities": ["critical"], "integrations": ["file-hook"]}]}')
    assert provision(conn, path).ok
    path.write_text('{"integrations": [{"name": "file-hook", "type": "webhook", "url": "nope"}]}')
    assert not provision(conn, path).ok
    page = admin.client.get("/integrations").get_data(as_text=True)
    assert "file-hook" in page and 'id="route-' in page and "provisioned" in page
    assert "was refused" in page and "integrations[0].url: must be an http(s) URL" in page
    channel_id = conn.execute("SELECT id FROM integrations").fetchone()["id"]
    response = admin.post(f"/integrations/{channel_id}", {"name": "renamed"}, token_from="/integrations")
    assert response.status_code == 409


def test_admin_makes_a_route(admin, conn):
    make_channel(conn, "pager")
    response = admin.post("/integrations/routes/new", {
        "name": "critical-pools", "severities": ["critical"], "matchers": "component=pool", "integrations": ["pager"],
        "group_by": "alertname, pool", "group_wait": "10", "group_interval": "60", "repeat_interval": "3600",
        "enabled": "y"})
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    from panel.notify.store import load_routes

    (route,) = load_routes(conn)
    assert (route.name, sorted(route.severities), route.group_by, route.integration_names) == (
        "critical-pools", ["critical"], ("alertname", "pool"), ("pager",))
    assert str(route.matchers[0]) == 'component="pool"'


# -- API -----------------------------------------------------------------------------------------------------

@pytest.fixture
def tokens(conn, app):
    from tests.panel.security_helpers import create_user

    out = {}
    for role in ("viewer", "operator", "admin"):
        owner = create_user(app.config["DATABASE_URL"], f"{role}-owner", role)
        out[role] = create_token(conn, name=f"{role}-token", role=role, owner=owner, expires_in_days=1).token
    return out


def test_api_acknowledge_and_snooze(client, tokens, alert_table, conn):
    alert_id = alert_table.fire()
    assert client.post(f"/api/admin/alerts/acknowledge/{alert_id}", headers=bearer(tokens["viewer"])).status_code == 403
    response = client.post(f"/api/admin/alerts/acknowledge/{alert_id}", headers=bearer(tokens["operator"]))
    assert response.status_code == 200 and response.get_json()["acknowledgedBy"] == "token:operator-token"
    response = client.post(f"/api/admin/alerts/snooze/{alert_id}", json={"minutes": 30},
                           headers=bearer(tokens["operator"]))
    assert response.status_code == 200 and response.get_json()["snoozedUntil"]
    response = client.post(f"/api/admin/alerts/snooze/{alert_id}", json={"minutes": "lots"},
                           headers=bearer(tokens["operator"]))
    assert response.status_code == 400 and "whole number" in response.get_json()["error"]
    assert client.post("/api/admin/alerts/acknowledge/424242", headers=bearer(tokens["operator"])).status_code == 404


def test_api_silences(client, tokens, conn):
    ends = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"matchers": [{"name": "host", "op": "=", "value": "pool-1"}], "endsAt": ends, "comment": "api"}
    assert client.post("/api/admin/silences", json=body, headers=bearer(tokens["viewer"])).status_code == 403
    response = client.post("/api/admin/silences", json=body, headers=bearer(tokens["operator"]))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["state"] == "active" and created["source"] == "api" and created["endsAt"] == ends
    weekly = client.post("/api/admin/silences", headers=bearer(tokens["operator"]), json={
        "matchers": [{"name": "component", "op": "=", "value": "database"}],
        "recurrence": {"weekdays": [6], "start": "04:00", "duration_minutes": 30}})
    assert weekly.status_code == 201 and weekly.get_json()["window"]["startsAt"].endswith("T04:00:00Z")
    listed = client.get("/api/admin/silences", headers=bearer(tokens["viewer"])).get_json()["silences"]
    assert {s["id"] for s in listed} == {created["id"], weekly.get_json()["id"]}
    response = client.delete(f"/api/admin/silences/{created['id']}", headers=bearer(tokens["operator"]))
    assert response.status_code == 200 and response.get_json()["state"] == "expired"
    assert len(client.get("/api/admin/silences", headers=bearer(tokens["viewer"])).get_json()["silences"]) == 1
    every = client.get("/api/admin/silences?state=all", headers=bearer(tokens["viewer"])).get_json()["silences"]
    assert len(every) == 2
    assert client.delete("/api/admin/silences/999", headers=bearer(tokens["operator"])).status_code == 404
    bad = client.post("/api/admin/silences", json={"matchers": [], "endsAt": ends}, headers=bearer(tokens["operator"]))
    assert bad.status_code == 400 and "at least one matcher" in bad.get_json()["error"]
    bad = client.post("/api/admin/silences", json={**body, "endsAt": "soon"}, headers=bearer(tokens["operator"]))
    assert bad.status_code == 400 and "endsAt" in bad.get_json()["error"]


def test_api_channels_tests_and_deliveries(client, tokens, conn, webhook_sink):
    channel = make_channel(conn, url=webhook_sink.url, secret="do-not-show")
    assert client.get("/api/admin/integrations", headers=bearer(tokens["operator"])).status_code == 403
    listed = client.get("/api/admin/integrations", headers=bearer(tokens["admin"]))
    assert "do-not-show" not in listed.get_data(as_text=True) and webhook_sink.url not in listed.get_data(as_text=True)
    (item,) = listed.get_json()["integrations"]
    assert item["secrets"] == {"url": True, "secret": True, "authHeader": False}
    webhook_sink.respond(503)
    result = client.post(f"/api/admin/integrations/{channel.id}/test", headers=bearer(tokens["admin"])).get_json()
    assert result["status"] == "failed" and result["code"] == 503
    result = client.post(f"/api/admin/integrations/{channel.id}/test", headers=bearer(tokens["admin"])).get_json()
    assert result["status"] == "sent" and result["code"] == 200
    deliveries = client.get(f"/api/admin/deliveries?integration={channel.id}&limit=5",
                            headers=bearer(tokens["admin"])).get_json()["deliveries"]
    assert [(d["status"], d["response_code"], d["kind"]) for d in deliveries] == [
        ("sent", 200, "test"), ("failed", 503, "test")]
    assert client.get("/api/admin/deliveries?limit=0", headers=bearer(tokens["admin"])).status_code == 400
    assert client.post("/api/admin/integrations/77/test", headers=bearer(tokens["admin"])).status_code == 404
