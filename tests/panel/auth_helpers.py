"""Signing in through the panel's real forms, as a browser would (CSRF tokens, TOTP codes via pyotp)."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass

import psycopg
import pyotp
from psycopg.rows import dict_row

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'id="totp-secret">([A-Z2-7 ]+)<')


def csrf_token(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "no CSRF token on the page:\n" + page[:800]
    return html.unescape(match[1] or match[2])


def totp_secret_of(page: str) -> str:
    match = _SECRET.search(page)
    assert match, "no TOTP secret on the enrolment page:\n" + page[:800]
    return match[1].replace(" ", "")


def fresh_code(secret: str, last_step: int | None) -> str:
    """A code the panel will accept: for the current step, or the next one if the current was used."""
    while True:
        step = int(time.time() // 30)
        if last_step is None or step > last_step:
            return pyotp.TOTP(secret).at(step * 30)
        if step + 1 > last_step:
            return pyotp.TOTP(secret).at((step + 1) * 30)
        time.sleep(1)


@dataclass
class Account:
    username: str
    role: str
    password: str
    secret: str | None = None
    user_id: int | None = None


class AuthActions:
    def __init__(self, app, client, db_url: str):
        self.app = app
        self.client = client
        self.db_url = db_url
        self.accounts: dict[str, Account] = {}

    def _db(self):
        return psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row)

    def create(self, username: str, role: str, password: str = PASSWORD) -> Account:
        """A user as ``create_user`` makes it (no TOTP yet: enrolled at the first sign-in)."""
        from panel.auth.users import create_user

        with self._db() as conn:
            row = create_user(conn, username, role, password)
        account = Account(username, role, password, user_id=row["id"])
        self.accounts[username] = account
        return account

    def last_step(self, account: Account) -> int | None:
        with self._db() as conn:
            return conn.execute("SELECT totp_last_step FROM users WHERE id = %s", (account.user_id,)).fetchone()[
                "totp_last_step"]

    def code(self, username: str) -> str:
        account = self.accounts[username]
        return fresh_code(account.secret, self.last_step(account))

    def post(self, path: str, data: dict | None = None, *, client=None, token_from: str | None = None, **kwargs):
        """POST with the CSRF token of the page at ``token_from`` (default: the same path)."""
        client = client or self.client
        page = client.get(token_from or path).get_data(as_text=True)
        return client.post(path, data={"csrf_token": csrf_token(page), **(data or {})}, **kwargs)

    def password_step(self, username: str, password: str | None = None, *, client=None, next_url: str = ""):
        client = client or self.client
        account = self.accounts.get(username)
        password = password if password is not None else account.password
        page = client.get("/login").get_data(as_text=True)
        return client.post("/login", data={"csrf_token": csrf_token(page), "username": username,
                                           "password": password, "next": next_url})

    def login(self, username: str = "admin", role: str = "admin", *, client=None):
        """Create the user if needed, then sign in: password, then enrolment or a TOTP code."""
        client = client or self.client
        account = self.accounts.get(username) or self.create(username, role)
        response = self.password_step(username, client=client)
        assert response.status_code == 302, response.get_data(as_text=True)[:800]
        location = response.headers["Location"]
        if location.endswith("/login/enrol"):
            page = client.get("/login/enrol").get_data(as_text=True)
            account.secret = totp_secret_of(page)
            response = client.post("/login/enrol", data={"csrf_token": csrf_token(page),
                                                         "code": fresh_code(account.secret, None)})
            assert response.status_code == 200 and "recovery-codes" in response.get_data(as_text=True), \
                response.get_data(as_text=True)[:800]
            return response
        assert location.endswith("/login/code"), location
        page = client.get("/login/code").get_data(as_text=True)
        response = client.post("/login/code", data={"csrf_token": csrf_token(page), "code": self.code(username)})
        assert response.status_code == 302, response.get_data(as_text=True)[:800]
        return response

    def logout(self, *, client=None):
        client = client or self.client
        page = client.get("/account").get_data(as_text=True)
        return client.post("/logout", data={"csrf_token": csrf_token(page)})

    def other_client(self):
        return self.app.test_client()
