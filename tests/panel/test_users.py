"""The users page: invite, change role, reset TOTP, disable/enable; audited with before/after, behind
step-up, and never leaving the panel without an enabled admin."""

from __future__ import annotations

import re

import pytest

from tests.panel.auth_helpers import csrf_token


@pytest.fixture
def admin(auth):
    auth.login("root", "admin")
    return auth


def user_id(sql, name: str) -> int:
    return sql("SELECT id FROM users WHERE username = %s", (name,))[0][0]


def act(auth, path: str, **data):
    page = auth.client.get("/admin/users").get_data(as_text=True)
    return auth.client.post(path, data={"csrf_token": csrf_token(page), **data})


def events(audited, action):
    return [e for e in audited if e["action"] == action]


def test_the_page_lists_users_with_their_state(admin, auth, client):
    auth.create("vera", "viewer")
    page = client.get("/admin/users").get_data(as_text=True)
    assert 'id="user-root"' in page and 'id="user-vera"' in page
    assert "at next sign-in" in page  # vera has not enrolled TOTP yet
    assert "10 recovery left" in page


def test_invite_shows_a_temporary_password_once(admin, client, sql, audited):
    response = act(admin, "/admin/users/invite", username="olive", role="operator")
    assert response.status_code == 200
    temporary = re.search(r'id="temporary-password">([^<]+)<', response.get_data(as_text=True))[1]
    assert len(temporary) >= 16
    assert temporary not in client.get("/admin/users").get_data(as_text=True)
    assert sql("SELECT role, must_change_password FROM users WHERE username = 'olive'") == [("operator", True)]
    (event,) = events(audited, "user.invite")
    assert event["after"] == {"username": "olive", "role": "operator", "disabled": False, "totp_enrolled": False}


@pytest.mark.parametrize("username, message", [
    ("root", "already exists"),
    ("Root", "already exists"),
    ("bad name", "Usernames are"),
    ("-dash", "Usernames are"),
])
def test_invite_refuses_bad_usernames(admin, username, message):
    response = act(admin, "/admin/users/invite", username=username, role="viewer")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_change_role_is_audited_with_before_and_after(admin, auth, sql, audited):
    auth.create("vera", "viewer")
    vera = user_id(sql, "vera")
    response = act(admin, f"/admin/users/{vera}/role", **{f"u{vera}-role": "operator"})
    assert response.status_code == 302
    assert sql("SELECT role FROM users WHERE id = %s", (vera,)) == [("operator",)]
    (event,) = events(audited, "user.role_change")
    assert (event["object_type"], event["object_id"]) == ("user", str(vera))
    assert event["before"]["role"] == "viewer" and event["after"]["role"] == "operator"


def test_a_role_change_applies_to_running_sessions(admin, auth, sql):
    other = auth.other_client()
    auth.login("vera", "viewer", client=other)
    assert other.get("/admin/users").status_code == 403
    act(admin, f"/admin/users/{user_id(sql, 'vera')}/role", **{f"u{user_id(sql, 'vera')}-role": "admin"})
    assert other.get("/admin/users").status_code == 200


def test_reset_totp_signs_the_user_out_and_makes_them_enrol_again(admin, auth, sql, audited):
    other = auth.other_client()
    auth.login("vera", "viewer", client=other)
    vera = user_id(sql, "vera")
    act(admin, f"/admin/users/{vera}/reset-totp")
    assert other.get("/").status_code == 302
    assert sql("SELECT totp_secret_enc, totp_enrolled_at FROM users WHERE id = %s", (vera,)) == [(None, None)]
    assert sql("SELECT count(*) FROM recovery_codes WHERE user_id = %s", (vera,)) == [(0,)]
    (event,) = events(audited, "user.totp_reset")
    assert event["before"]["totp_enrolled"] is True and event["after"]["totp_enrolled"] is False
    assert auth.password_step("vera", client=other).headers["Location"] == "/login/enrol"


def test_disable_and_enable(admin, auth, sql, audited):
    other = auth.other_client()
    auth.login("vera", "viewer", client=other)
    vera = user_id(sql, "vera")
    act(admin, f"/admin/users/{vera}/disable")
    assert other.get("/").status_code == 302
    assert auth.password_step("vera", client=other).status_code == 401
    act(admin, f"/admin/users/{vera}/enable")
    assert auth.password_step("vera", client=other).status_code == 302
    assert [e["after"]["disabled"] for e in audited if e["action"] in ("user.disable", "user.enable")] == [True, False]


def test_reset_password_issues_a_new_temporary_one(admin, auth, sql):
    auth.create("vera", "viewer")
    response = act(admin, f"/admin/users/{user_id(sql, 'vera')}/reset-password")
    temporary = re.search(r'id="temporary-password">([^<]+)<', response.get_data(as_text=True))[1]
    assert auth.password_step("vera", temporary, client=auth.other_client()).headers["Location"] == "/login/password"


def test_an_admin_cannot_demote_or_disable_themselves(admin, client, sql):
    root = user_id(sql, "root")
    act(admin, f"/admin/users/{root}/role", **{f"u{root}-role": "viewer"})
    act(admin, f"/admin/users/{root}/disable")
    assert sql("SELECT role, disabled FROM users WHERE id = %s", (root,)) == [("admin", False)]
    assert "cannot remove your own admin rights" in client.get("/admin/users").get_data(as_text=True)


def test_unknown_user_is_404(admin):
    assert act(admin, "/admin/users/999/disable").status_code == 404


def test_changes_need_a_step_up(admin, auth, sql):
    auth.create("vera", "viewer")
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")
    response = act(admin, f"/admin/users/{user_id(sql, 'vera')}/disable")
    assert response.headers["Location"].startswith("/step-up")
    assert sql("SELECT disabled FROM users WHERE username = 'vera'") == [(False,)]
