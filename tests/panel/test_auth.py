"""Sign-in through the real forms: password, TOTP enrolment and codes, recovery codes, lockout,
server-side sessions (regenerated id, idle/absolute expiry, log out everywhere), CSRF, step-up."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.panel.auth_helpers import PASSWORD, csrf_token, fresh_code, totp_secret_of

COOKIE = "poolwarden_session"


def session_id(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def code_step(auth, code: str, client=None):
    client = client or auth.client
    page = client.get("/login/code").get_data(as_text=True)
    return client.post("/login/code", data={"csrf_token": csrf_token(page), "code": code})


# -- enrolment and the second factor --------------------------------------------------------------


def test_first_sign_in_enrols_totp_with_a_qr_code_and_shows_ten_recovery_codes(client, auth, sql, audited):
    auth.create("alice", "operator")
    response = auth.password_step("alice")
    assert response.status_code == 302 and response.headers["Location"] == "/login/enrol"
    assert client.get("/").status_code == 302  # the password alone is not a login

    page = client.get("/login/enrol").get_data(as_text=True)
    assert "<svg" in page and 'class="qr"' in page and "<script" not in page.split("</head>")[1]
    assert "style=" not in page
    secret = totp_secret_of(page)
    assert len(secret) == 32
    assert client.get("/login/enrol").get_data(as_text=True).count(secret[:4] + " ") == 1  # same secret on reload
    stored = sql("SELECT totp_secret_enc, totp_enrolled_at FROM users WHERE username = 'alice'")[0]
    assert stored[0] and secret not in stored[0] and stored[1] is None  # encrypted at rest, not yet enrolled

    response = client.post("/login/enrol", data={"csrf_token": csrf_token(page), "code": "000000"})
    assert response.status_code == 401 and "not valid" in response.get_data(as_text=True)
    response = client.post("/login/enrol", data={"csrf_token": csrf_token(page),
                                                 "code": pyotp.TOTP(secret).now()})
    body = response.get_data(as_text=True)
    codes = re.findall(r"<code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code>", body)
    assert len(codes) == 10 and len(set(codes)) == 10
    hashes = [row[0] for row in sql("SELECT code_hash FROM recovery_codes")]
    assert len(hashes) == 10 and not any(code in h for code in codes for h in hashes)  # stored hashed
    assert client.get("/").status_code == 200
    assert "auth.totp_enrolled" in [e["action"] for e in audited]
    assert "auth.login" in [e["action"] for e in audited]


def test_wrong_and_replayed_codes_are_refused(client, auth, sql):
    account = auth.create("bob", "viewer")
    auth.login("bob")
    auth.logout()
    used_step = sql("SELECT totp_last_step FROM users WHERE username = 'bob'")[0][0]
    auth.password_step("bob")
    wrong = code_step(auth, "123456" if pyotp.TOTP(account.secret).now() != "123456" else "654321")
    assert wrong.status_code == 401 and "not valid" in wrong.get_data(as_text=True)
    replay = code_step(auth, pyotp.TOTP(account.secret).at(used_step * 30))
    assert replay.status_code == 401 and "already used" in replay.get_data(as_text=True)
    assert client.get("/").status_code == 302
    ok = code_step(auth, fresh_code(account.secret, used_step))
    assert ok.status_code == 302 and client.get("/").status_code == 200


def test_a_recovery_code_works_once(client, auth, audited):
    enrolment = auth.login("carol", "viewer")
    codes = re.findall(r"<code>([a-z0-9-]{19})</code>", enrolment.get_data(as_text=True))
    auth.logout()
    auth.password_step("carol")
    response = code_step(auth, codes[3].upper().replace("-", " "))  # typed loosely
    assert response.status_code == 302
    assert "9 left" in client.get("/").get_data(as_text=True)
    assert any(e["action"] == "auth.recovery_code_used" for e in audited)
    auth.logout()
    auth.password_step("carol")
    again = code_step(auth, codes[3])
    assert again.status_code == 401 and "not valid or was already used" in again.get_data(as_text=True)


def test_the_second_step_expires(client, auth, sql):
    auth.login("dave", "viewer")
    auth.logout()
    auth.password_step("dave")
    sql("UPDATE sessions SET data = jsonb_set(data, '{pending_since}', '0')")
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


# -- lockout ---------------------------------------------------------------------------------------


def test_five_failures_lock_the_account_with_doubling_delays(client, auth, sql, audited):
    auth.create("erin", "viewer")
    for _ in range(4):
        response = auth.password_step("erin", "wrong password!")
        assert response.status_code == 401 and "Wrong username or password" in response.get_data(as_text=True)
    fifth = auth.password_step("erin", "wrong password!")
    assert "Too many failed attempts: try again in 30\u00a0s" in fifth.get_data(as_text=True)
    right = auth.password_step("erin")  # even the right password is refused while locked
    assert right.status_code == 401 and "Too many failed attempts" in right.get_data(as_text=True)
    sql("UPDATE login_attempts SET locked_until = now() - interval '1 second'")
    sixth = auth.password_step("erin", "wrong password!")
    assert "try again in 60\u00a0s" in sixth.get_data(as_text=True)
    assert sql("SELECT failures FROM login_attempts WHERE kind = 'user' AND key = 'erin'") == [(6,)]
    assert any(e["action"] == "auth.locked_out" for e in audited)
    sql("UPDATE login_attempts SET locked_until = NULL")
    auth.login("erin")
    assert sql("SELECT count(*) FROM login_attempts WHERE kind = 'user'") == [(0,)]  # success forgives


def test_unknown_usernames_and_the_address_are_counted_too(client, auth, app, sql):
    app.config["LOGIN_ADDRESS_MAX_FAILURES"] = 3
    for name in ("x1", "x2", "x3"):
        auth.password_step(name, "whatever-password")
    auth.create("frank", "viewer")
    response = auth.password_step("frank")
    assert "Too many failed attempts" in response.get_data(as_text=True)  # the address is locked
    other = auth.other_client()
    page = other.get("/login", environ_base={"REMOTE_ADDR": "127.0.0.2"}).get_data(as_text=True)
    response = other.post("/login", data={"csrf_token": csrf_token(page), "username": "frank", "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "127.0.0.2"})
    assert response.status_code == 302  # another address is not


def test_wrong_totp_codes_count_as_failures(client, auth, sql):
    auth.login("gina", "viewer")
    auth.logout()
    auth.password_step("gina")
    for _ in range(5):
        response = code_step(auth, "000000")
    assert "Too many failed attempts" in response.get_data(as_text=True)
    assert "Too many failed attempts" in code_step(auth, auth.code("gina")).get_data(as_text=True)


# -- sessions ----------------------------------------------------------------------------------------


def test_the_session_id_changes_at_sign_in_and_only_its_hash_is_stored(client, auth, sql):
    client.get("/login")
    anonymous = session_id(client)
    assert anonymous
    auth.create("hank", "viewer")
    auth.password_step("hank")
    pending = session_id(client)
    assert pending != anonymous
    auth.login("hank")
    logged_in = session_id(client)
    assert logged_in not in (anonymous, pending)
    rows = sql("SELECT id_hash, user_id FROM sessions WHERE user_id IS NOT NULL")
    assert len(rows) == 1 and logged_in not in rows[0][0]
    cookie = client.get_cookie(COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax"


def test_the_cookie_holds_only_a_random_id(client, auth):
    auth.login("ivan", "viewer")
    value = session_id(client)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)


def test_idle_sessions_expire(client, auth, sql):
    auth.login("judy", "viewer")
    assert client.get("/").status_code == 200
    sql("UPDATE sessions SET last_seen_at = now() - interval '31 minutes'")
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert "Your session expired" in client.get("/login").get_data(as_text=True)
    assert sql("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL") == [(0,)]


def test_the_idle_limit_is_configurable_and_activity_extends_it(client, auth, app, sql):
    app.config["SESSION_IDLE_MINUTES"] = 5
    auth.login("kim", "viewer")
    sql("UPDATE sessions SET last_seen_at = now() - interval '4 minutes'")
    assert client.get("/").status_code == 200
    sql("UPDATE sessions SET last_seen_at = last_seen_at - interval '2 minutes'")  # touched just now
    assert client.get("/").status_code == 200
    sql("UPDATE sessions SET last_seen_at = now() - interval '6 minutes'")
    assert client.get("/").status_code == 302


def test_sessions_end_after_twelve_hours_whatever_the_activity(client, auth, sql):
    auth.login("lee", "viewer")
    sql("UPDATE sessions SET created_at = now() - interval '12 hours 1 minute'")
    assert client.get("/").status_code == 302
    assert client.get("/api/hosts").status_code == 401


def test_log_out_everywhere_ends_the_other_sessions(client, auth, sql, audited):
    auth.login("mia", "viewer")
    laptop = auth.other_client()
    auth.login("mia", client=laptop)
    assert sql("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL") == [(2,)]
    assert laptop.get("/").status_code == 200
    response = auth.post("/account/logout-everywhere", token_from="/account")
    assert response.status_code == 302
    assert "Signed out of 2 sessions" in client.get("/login").get_data(as_text=True)
    assert laptop.get("/").status_code == 302
    assert client.get("/").status_code == 302
    assert sql("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL") == [(0,)]
    assert any(e["action"] == "auth.logout_everywhere" for e in audited)


def test_logout_needs_a_post_with_the_csrf_token(client, auth):
    auth.login("nick", "viewer")
    assert client.get("/logout").status_code == 405
    refused = client.post("/logout")
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 200
    auth.logout()
    assert client.get("/").status_code == 302


def test_the_account_page_lists_sessions(client, auth):
    auth.login("olga", "viewer")
    page = client.get("/account", headers={"User-Agent": "TestBrowser/1.0"}).get_data(as_text=True)
    assert "this one" in page and "Log out everywhere" in page


def test_a_disabled_user_is_signed_out_and_cannot_sign_in(client, auth, sql):
    auth.login("pat", "viewer")
    sql("UPDATE users SET disabled = true WHERE username = 'pat'")
    assert client.get("/").status_code == 302
    response = auth.password_step("pat")
    assert response.status_code == 401 and "Wrong username or password" in response.get_data(as_text=True)


# -- next, CSRF, headers --------------------------------------------------------------------------


@pytest.mark.parametrize("target, lands_on", [
    ("/hosts/pool-1?tab=disk", "/hosts/pool-1?tab=disk"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("", "/"),
])
def test_sign_in_redirects_only_to_local_next_targets(client, auth, target, lands_on):
    auth.login("quinn", "viewer")
    auth.logout()
    auth.password_step("quinn", next_url=target)
    response = code_step(auth, auth.code("quinn"))
    assert response.status_code == 302
    assert response.headers["Location"] == lands_on


def test_a_protected_page_sends_to_login_with_next(client, auth):
    response = client.get("/hosts/pool-1?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/hosts/pool-1?x%3D1"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'name="next" type="hidden" value="/hosts/pool-1?x=1"' in page


@pytest.mark.parametrize("path, data", [
    ("/login", {"username": "x", "password": "y"}),
    ("/logout", {}),
    ("/account/logout-everywhere", {}),
    ("/admin/users/invite", {"username": "zed", "role": "admin"}),
    ("/admin/allowlist", {"entries": "10.0.0.0/8"}),
])
def test_posts_without_the_csrf_token_are_refused(client, auth, sql, path, data):
    assert client.application.config.get("WTF_CSRF_ENABLED", True) is True
    auth.login("root", "admin")
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "CSRF token is missing" in response.get_data(as_text=True)
    forged = client.post(path, data={**data, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert sql("SELECT count(*) FROM users WHERE username = 'zed'") == [(0,)]
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


def test_the_csrf_token_of_one_session_does_not_work_in_another(client, auth):
    auth.login("ruth", "admin")
    mine = csrf_token(client.get("/account").get_data(as_text=True))
    intruder = auth.other_client()
    auth.login("sam", "admin", client=intruder)
    response = intruder.post("/account/logout-everywhere", data={"csrf_token": mine})
    assert response.status_code == 400


def test_security_headers(client, auth):
    auth.login("tess", "viewer")
    headers = client.get("/").headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    login_headers = auth.other_client().get("/login").headers
    assert "frame-ancestors 'none'" in login_headers["Content-Security-Policy"]


def test_sign_in_pages_have_no_inline_script_or_style(client, auth):
    auth.create("uma", "viewer")
    for page in (client.get("/login"), auth.password_step("uma"), client.get("/login/enrol")):
        html = page.get_data(as_text=True)
        if page.status_code == 302:
            continue
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/panel.js" defer>']
        assert "<style" not in html and "style=" not in html


# -- invited users ---------------------------------------------------------------------------------


def test_an_invited_user_replaces_the_temporary_password_then_enrols(client, auth, sql):
    auth.login("root", "admin")
    page = client.get("/admin/users").get_data(as_text=True)
    response = client.post("/admin/users/invite", data={"csrf_token": csrf_token(page), "username": "newbie",
                                                        "role": "operator"})
    temporary = re.search(r'id="temporary-password">([^<]+)<', response.get_data(as_text=True))[1]
    newbie = auth.other_client()
    step = auth.password_step("newbie", temporary, client=newbie)
    assert step.headers["Location"] == "/login/password"
    page = newbie.get("/login/password").get_data(as_text=True)
    weak = newbie.post("/login/password", data={"csrf_token": csrf_token(page), "password": "short",
                                                "confirm": "short"})
    assert "at least 12 characters" in weak.get_data(as_text=True)
    same = newbie.post("/login/password", data={"csrf_token": csrf_token(page), "password": temporary,
                                                "confirm": temporary})
    assert "different from the temporary one" in same.get_data(as_text=True)
    done = newbie.post("/login/password", data={"csrf_token": csrf_token(page), "password": "my own long password",
                                                "confirm": "my own long password"})
    assert done.headers["Location"] == "/login/enrol"
    assert newbie.get("/").status_code == 302  # still not signed in: TOTP comes first
    enrol = newbie.get("/login/enrol").get_data(as_text=True)
    secret = totp_secret_of(enrol)
    response = newbie.post("/login/enrol", data={"csrf_token": csrf_token(enrol), "code": pyotp.TOTP(secret).now()})
    assert "recovery-codes" in response.get_data(as_text=True)
    assert newbie.get("/").status_code == 200
    assert sql("SELECT role, must_change_password FROM users WHERE username = 'newbie'") == [("operator", False)]


# -- step-up ---------------------------------------------------------------------------------------


def test_step_up_asks_for_a_fresh_code_and_comes_back(client, auth, sql):
    auth.login("root", "admin")
    auth.create("victim", "viewer")
    victim_id = sql("SELECT id FROM users WHERE username = 'victim'")[0][0]
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")  # the sign-in was > 5 min ago
    users_page = client.get("/admin/users").get_data(as_text=True)
    response = client.post(f"/admin/users/{victim_id}/disable", data={"csrf_token": csrf_token(users_page)},
                           headers={"Referer": "http://localhost/admin/users"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/step-up?next=/admin/users"
    assert sql("SELECT disabled FROM users WHERE id = %s", (victim_id,)) == [(False,)]

    form = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Confirm it is you" in form
    wrong = client.post("/step-up", data={"csrf_token": csrf_token(form), "code": "000000", "next": "/admin/users"})
    assert wrong.status_code == 401
    evil = client.post("/step-up", data={"csrf_token": csrf_token(form), "code": auth.code("root"),
                                         "next": "https://evil.example/"})
    assert evil.headers["Location"] == "/"  # accepted, but only local targets
    again = client.post(f"/admin/users/{victim_id}/disable", data={"csrf_token": csrf_token(users_page)})
    assert again.status_code == 302 and again.headers["Location"] == "/admin/users"
    assert sql("SELECT disabled FROM users WHERE id = %s", (victim_id,)) == [(True,)]


def test_step_up_lasts_five_minutes(client, auth, sql):
    auth.login("root", "admin")
    five_min_ago = time.time() - 301
    sql("UPDATE sessions SET data = jsonb_set(data, '{step_up_at}', %s::jsonb) WHERE user_id IS NOT NULL",
        (str(five_min_ago),))
    page = client.get("/admin/allowlist").get_data(as_text=True)
    response = client.post("/admin/allowlist", data={"csrf_token": csrf_token(page), "entries": ""})
    assert response.headers["Location"].startswith("/step-up")


# -- the console -----------------------------------------------------------------------------------


def test_create_admin_refuses_weak_passwords(runner, sql):
    result = runner.invoke(args=["create-admin", "--username", "boss", "--password-stdin"], input="short\n")
    assert result.exit_code == 1
    assert "at least 12 characters" in result.output
    assert sql("SELECT count(*) FROM users") == [(0,)]


def test_create_admin_then_first_sign_in_enrols(runner, client, auth, sql):
    result = runner.invoke(args=["create-admin", "--username", "boss", "--password-stdin"],
                           input="a sturdy pass phrase\n")
    assert result.exit_code == 0, result.output
    assert "created admin 'boss'" in result.output
    assert sql("SELECT role, totp_enrolled_at IS NULL FROM users") == [("admin", True)]
    again = runner.invoke(args=["create-admin", "--username", "boss", "--password-stdin"],
                          input="a sturdy pass phrase\n")
    assert again.exit_code == 1 and "already exists" in again.output
    response = auth.password_step("boss", "a sturdy pass phrase")
    assert response.headers["Location"] == "/login/enrol"


def test_create_admin_with_an_enrolled_totp_for_the_demo(runner, client, auth, tmp_path, sql):
    out = tmp_path / "demo.totp"
    args = ["create-admin", "--username", "demo", "--password-stdin", "--totp-secret-out", str(out)]
    result = runner.invoke(args=args, input="watch the pool 1\n")
    assert result.exit_code == 0, result.output
    secret = out.read_text().strip()
    assert (out.stat().st_mode & 0o777) == 0o600
    auth.password_step("demo", "watch the pool 1")
    assert code_step(auth, pyotp.TOTP(secret).now()).status_code == 302
    assert client.get("/admin/users").status_code == 200
    replaced = runner.invoke(args=[*args, "--replace"], input="watch the pool 2\n")
    assert replaced.exit_code == 0 and "reset admin 'demo'" in replaced.output
    assert out.read_text().strip() != secret
    assert client.get("/").status_code == 302  # --replace ended the old sessions


def test_reset_totp_from_the_console(runner, client, auth):
    auth.login("root", "admin")
    result = runner.invoke(args=["reset-totp", "root"])
    assert result.exit_code == 0, result.output
    assert client.get("/").status_code == 302
    assert auth.password_step("root").headers["Location"] == "/login/enrol"
