"""The IP allowlist: checked first for every request, X-Forwarded-For only from trusted proxies,
no saving a list that locks out its author, and the console way back in."""

from __future__ import annotations

import html
import ipaddress

import pytest

from panel.allowlist.policy import client_address
from tests.panel.auth_helpers import csrf_token

OUTSIDE = "203.0.113.5"
INSIDE = "10.1.2.3"
PROXY = "192.0.2.10"


def as_from(address: str, **headers):
    return {"environ_base": {"REMOTE_ADDR": address}, "headers": headers}


@pytest.fixture
def office_only(sql):
    sql("INSERT INTO ip_allowlist (network, note) VALUES ('10.0.0.0/8', 'office'), ('2001:db8::/32', 'v6 office')")


@pytest.mark.parametrize("path", ["/", "/login", "/static/panel.css", "/hosts/pool-1", "/admin/users", "/healthz",
                                  "/api/hosts", "/api/admin/system/disk", "/no-such-page"])
def test_an_address_outside_the_list_is_refused_everywhere(client, office_only, path):
    response = client.get(path, **as_from(OUTSIDE))
    assert response.status_code == 403
    text = html.unescape(response.get_data(as_text=True))
    assert f"Your address ({OUTSIDE}) is not in this panel's IP allowlist" in text
    if path.startswith(("/api/", "/healthz")):
        assert response.is_json


def test_the_allowlist_runs_before_anything_else(app, client, office_only, sql):
    assert app.before_request_funcs[None][0].__name__ == "enforce_allowlist"
    client.get("/login", **as_from(OUTSIDE))
    client.post("/login", data={"username": "x", "password": "y"}, **as_from(OUTSIDE))
    assert sql("SELECT count(*) FROM sessions") == [(0,)]        # no session was opened
    assert sql("SELECT count(*) FROM login_attempts") == [(0,)]  # no login code ran


@pytest.mark.parametrize("address", [INSIDE, "10.255.0.1", "2001:db8::1", "::ffff:10.1.2.3"])
def test_addresses_inside_the_list_get_through(client, office_only, address):
    assert client.get("/login", **as_from(address)).status_code == 200
    assert client.get("/healthz", **as_from(address)).status_code == 200


def test_an_empty_list_allows_every_address(client):
    assert client.get("/login", **as_from(OUTSIDE)).status_code == 200


def test_forwarded_for_is_honoured_from_a_trusted_proxy(app, client, office_only):
    app.config["TRUSTED_PROXIES"] = [f"{PROXY}/32"]
    assert client.get("/healthz", **as_from(PROXY, **{"X-Forwarded-For": INSIDE})).status_code == 200
    assert client.get("/healthz", **as_from(PROXY, **{"X-Forwarded-For": OUTSIDE})).status_code == 403
    # A client cannot slip an allowed address in front of its own: the proxy appends the real one.
    spoofed = client.get("/healthz", **as_from(PROXY, **{"X-Forwarded-For": f"{INSIDE}, {OUTSIDE}"}))
    assert spoofed.status_code == 403
    assert f"({OUTSIDE})" in spoofed.get_data(as_text=True)
    # The proxy itself, without the header, is not in the list.
    assert client.get("/healthz", **as_from(PROXY)).status_code == 403


def test_forwarded_for_from_an_untrusted_peer_is_ignored(app, client, office_only):
    app.config["TRUSTED_PROXIES"] = [f"{PROXY}/32"]
    response = client.get("/healthz", **as_from(OUTSIDE, **{"X-Forwarded-For": INSIDE}))
    assert response.status_code == 403
    assert f"({OUTSIDE})" in response.get_data(as_text=True)


@pytest.mark.parametrize("peer, header, trusted, expected", [
    ("198.51.100.1", None, [], "198.51.100.1"),
    ("198.51.100.1", "10.0.0.1", [], "198.51.100.1"),                                   # no proxies trusted
    ("192.0.2.10", "10.0.0.1", ["192.0.2.0/24"], "10.0.0.1"),
    ("192.0.2.10", "10.0.0.1, 192.0.2.11", ["192.0.2.0/24"], "10.0.0.1"),               # two proxies
    ("192.0.2.10", "6.6.6.6, 10.0.0.1", ["192.0.2.0/24"], "10.0.0.1"),                  # spoofed left part
    ("192.0.2.10", "garbage, 10.0.0.1", ["192.0.2.0/24"], "10.0.0.1"),
    ("192.0.2.10", "10.0.0.1, garbage", ["192.0.2.0/24"], "192.0.2.10"),                # proxy sent junk
    ("::ffff:192.0.2.10", "2001:db8::5", ["192.0.2.0/24"], "2001:db8::5"),
    ("fd00::1", "[2001:db8::7]", ["fd00::/8"], "2001:db8::7"),
])
def test_client_address(peer, header, trusted, expected):
    networks = [ipaddress.ip_network(n) for n in trusted]
    assert str(client_address(peer, header, networks)) == expected


# -- the admin page -------------------------------------------------------------------------------


def save(auth, entries: str, address: str = "127.0.0.1"):
    client = auth.client
    page = client.get("/admin/allowlist", **as_from(address)).get_data(as_text=True)
    return client.post("/admin/allowlist", data={"csrf_token": csrf_token(page), "entries": entries},
                       **as_from(address))


def test_saving_a_list_that_locks_out_its_author_is_refused(auth, sql):
    auth.login("root", "admin")
    response = save(auth, "10.0.0.0/8\n2001:db8::/32")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "your own address, 127.0.0.1, is not in this list, so saving it would lock you out" in text
    assert "Add 127.0.0.1/32" in text and "POOLWARDEN_TRUSTED_PROXIES" in text
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


def test_the_admin_saves_a_list_audited_with_before_and_after(auth, sql, audited):
    auth.login("root", "admin")
    page = auth.client.get("/admin/allowlist").get_data(as_text=True)
    assert "The allowlist is empty" in page and 'id="client-ip">127.0.0.1<' in page
    response = save(auth, "127.0.0.1   # this host\n10.0.0.5/8 # office (normalised)\n\n2001:db8::/32")
    assert response.status_code == 302
    rows = sql("SELECT network::text, note, created_by FROM ip_allowlist ORDER BY network")
    assert rows == [("10.0.0.0/8", "office (normalised)", "root"), ("127.0.0.1/32", "this host", "root"),
                    ("2001:db8::/32", "", "root")]
    event = [e for e in audited if e["action"] == "allowlist.update"][-1]
    assert event["before"] == {"entries": []}
    assert "127.0.0.1/32  # this host" in event["after"]["entries"]
    assert auth.client.get("/", **as_from(OUTSIDE)).status_code == 403
    assert auth.client.get("/").status_code == 200


def test_bad_lines_are_named(auth, sql):
    auth.login("root", "admin")
    response = save(auth, "127.0.0.1\n10.0.0.300/8\nnot-an-address")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "line 2: &#39;10.0.0.300/8&#39; is not an IPv4/IPv6 address or CIDR" in text
    assert "line 3:" in text
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


def test_the_list_can_be_emptied_again(auth, sql):
    auth.login("root", "admin")
    sql("INSERT INTO ip_allowlist (network) VALUES ('127.0.0.0/8')")
    assert save(auth, "").status_code == 302
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


def test_saving_needs_a_step_up(auth, sql):
    auth.login("root", "admin")
    sql("UPDATE sessions SET data = data - 'step_up_at' WHERE user_id IS NOT NULL")
    response = save(auth, "127.0.0.0/8")
    assert response.headers["Location"].startswith("/step-up")
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


# -- the console ----------------------------------------------------------------------------------


def test_allowlist_reset_from_the_console_lets_everyone_back_in(client, runner, office_only, sql):
    assert client.get("/login").status_code == 403  # 127.0.0.1 is locked out
    shown = runner.invoke(args=["allowlist", "show"])
    assert shown.exit_code == 0 and "10.0.0.0/8  # office" in shown.output
    result = runner.invoke(args=["allowlist", "reset"])
    assert result.exit_code == 0, result.output
    assert "allowlist reset: empty, every address may reach the panel" in result.output
    assert client.get("/login").status_code == 200
    assert sql("SELECT count(*) FROM ip_allowlist") == [(0,)]


def test_allowlist_reset_to_given_networks(client, runner, office_only, sql):
    result = runner.invoke(args=["allowlist", "reset", "--allow", "127.0.0.1", "--allow", "192.0.2.0/24"])
    assert result.exit_code == 0, result.output
    assert "allowlist reset to: 127.0.0.1/32, 192.0.2.0/24" in result.output
    assert client.get("/login").status_code == 200
    assert client.get("/login", **as_from(INSIDE)).status_code == 403
    bad = runner.invoke(args=["allowlist", "reset", "--allow", "nope"])
    assert bad.exit_code == 2 and "'nope' is not an IPv4/IPv6 address" in bad.output
