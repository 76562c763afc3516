"""Secrets at rest: round trip, versioned ciphertexts, key errors an operator can act on, key rotation."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest

from panel import create_app, secretbox
from panel.secretbox import (
    Keyring,
    SecretboxError,
    SecretsKeyMissing,
    WrongSecretsKey,
    encode_key,
    key_id,
    new_key,
    write_key_file,
)
from tests.panel.security_helpers import create_user, secure_app


def ring(*keys):
    return Keyring.of(list(keys), "test")


def test_round_trip_and_format():
    box = ring(new_key())
    token = box.encrypt("JBSWY3DPEHPK3PXP")
    version, kid, body = token.split(":", 2)
    assert (version, kid) == ("v1", box.primary_id)
    assert "JBSWY3DP" not in body
    assert box.decrypt(token) == "JBSWY3DPEHPK3PXP"
    assert box.encrypt("same") != box.encrypt("same")  # a fresh nonce each time
    assert box.decrypt(box.encrypt("")) == ""
    assert box.decrypt(box.encrypt("ünïcödé ✓")) == "ünïcödé ✓"


def test_wrong_key_names_the_key_id():
    old, other = new_key(), new_key()
    token = ring(old).encrypt("secret")
    with pytest.raises(WrongSecretsKey, match=f"secret was encrypted with key {key_id(old)}, which is not loaded"):
        ring(other).decrypt(token)


@pytest.mark.parametrize("tampered", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),   # ciphertext changed
    lambda t: t[:-10],                                              # truncated
])
def test_altered_ciphertext_is_refused(tampered):
    box = ring(new_key())
    with pytest.raises(SecretboxError, match="does not authenticate"):
        box.decrypt(tampered(box.encrypt("a webhook URL with a token in it")))


def test_header_is_authenticated():
    """Relabelling a ciphertext with another loaded key's id does not work either."""
    a, b = new_key(), new_key()
    box = ring(a, b)
    token = box.encrypt("x")
    relabelled = token.replace(key_id(a), key_id(b), 1)
    with pytest.raises(SecretboxError, match="does not authenticate"):
        box.decrypt(relabelled)


@pytest.mark.parametrize("value", ["plain text", "v2:abcdef12:xxx", "v1:short:xxx", ""])
def test_not_a_ciphertext(value):
    with pytest.raises(SecretboxError, match="not a poolwarden secret"):
        ring(new_key()).decrypt(value)


# -- where the key comes from -------------------------------------------------------------------------


def test_missing_key_outside_tests_says_what_to_set(monkeypatch):
    monkeypatch.delenv("POOLWARDEN_SECRETS_KEY_FILE", raising=False)
    monkeypatch.delenv("POOLWARDEN_SECRETS_KEY", raising=False)
    with pytest.raises(SecretsKeyMissing, match="set POOLWARDEN_SECRETS_KEY_FILE"):
        secretbox.encrypt("x")


def test_app_outside_testing_refuses_to_start_without_a_key(monkeypatch, db_url):
    from panel.config import ConfigError

    monkeypatch.delenv("POOLWARDEN_SECRETS_KEY_FILE", raising=False)
    monkeypatch.delenv("POOLWARDEN_SECRETS_KEY", raising=False)
    with pytest.raises(ConfigError, match="POOLWARDEN_SECRETS_KEY_FILE"):
        create_app({"SECRET_KEY": "k" * 32, "DATABASE_URL": db_url})


def test_testing_without_a_key_uses_one_random_key_per_process(app):
    with app.app_context():
        token = secretbox.encrypt("x")
        assert secretbox.decrypt(token) == "x"
        assert secretbox.current_keyring() is secretbox.current_keyring()


def test_key_from_environment(monkeypatch):
    key = new_key()
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY", encode_key(key))
    token = secretbox.encrypt("x")
    assert token.split(":")[1] == key_id(key)
    assert secretbox.decrypt(token) == "x"
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY", "not base64!")
    with pytest.raises(SecretboxError, match="POOLWARDEN_SECRETS_KEY is not a base64 key"):
        secretbox.encrypt("x")
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY", encode_key(b"short"))
    with pytest.raises(SecretboxError, match="5-byte key"):
        secretbox.encrypt("x")


def test_key_file_is_reread_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "secrets.key"
    first, second = new_key(), new_key()
    write_key_file(path, [first], replace=False)
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY_FILE", str(path))
    old_token = secretbox.encrypt("x")
    write_key_file(path, [second, first], replace=True)
    new_token = secretbox.encrypt("y")
    assert new_token.split(":")[1] == key_id(second)
    assert secretbox.decrypt(old_token) == "x"


def test_key_file_readable_by_others_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "secrets.key"
    write_key_file(path, [new_key()], replace=False)
    path.chmod(0o644)
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY_FILE", str(path))
    with pytest.raises(SecretboxError, match="readable by other users .* chmod 600"):
        secretbox.encrypt("x")


def test_missing_key_file_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("POOLWARDEN_SECRETS_KEY_FILE", str(tmp_path / "nope.key"))
    with pytest.raises(SecretsKeyMissing, match="does not exist .* secrets generate-key --out"):
        secretbox.encrypt("x")


# -- commands ----------------------------------------------------------------------------------------


@pytest.fixture
def keyed_app(db_url, redis_url, tmp_path):
    """An app whose secrets key is a key file, with the secretbox commands wired in."""
    path = tmp_path / "secrets.key"
    write_key_file(path, [new_key()], replace=False)
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-not-for-production",
                      "DATABASE_URL": db_url, "REDIS_URL": redis_url, "SECRETS_KEY_FILE": str(path)})
    secure_app(app)
    return app


def test_generate_key_creates_a_0600_file_and_never_overwrites(keyed_app, tmp_path):
    runner = keyed_app.test_cli_runner()
    out = tmp_path / "new.key"
    result = runner.invoke(args=["secrets", "generate-key", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    keys = secretbox.read_key_file(out)
    assert len(keys) == 1 and f"wrote key {key_id(keys[0])}" in result.output
    again = runner.invoke(args=["secrets", "generate-key", "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output
    assert secretbox.read_key_file(out) == keys


def enrol(app, db_url, names):
    """Users with encrypted TOTP secrets, as the login code stores them."""
    with app.app_context():
        for name in names:
            user = create_user(db_url, name, "viewer")
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("UPDATE users SET totp_secret_enc = %s WHERE id = %s",
                             (secretbox.encrypt(f"SECRET-{name}"), user.id))


def stored(db_url):
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT username, totp_secret_enc FROM users ORDER BY id").fetchall())


def test_rotate_reencrypts_every_registered_column(keyed_app, db_url, tmp_path):
    key_file = keyed_app.config["SECRETS_KEY_FILE"]
    (old_key,) = secretbox.read_key_file(key_file)
    enrol(keyed_app, db_url, ["ann", "ben", "cat"])
    before = stored(db_url)
    assert {v.split(":")[1] for v in before.values()} == {key_id(old_key)}

    runner = keyed_app.test_cli_runner()
    new_file = tmp_path / "next.key"
    assert runner.invoke(args=["secrets", "generate-key", "--out", str(new_file)]).exit_code == 0
    (new_key_,) = secretbox.read_key_file(new_file)
    result = runner.invoke(args=["secrets", "rotate", "--new-key-file", str(new_file)])
    assert result.exit_code == 0, result.output
    assert f"re-encrypted 3 secrets with key {key_id(new_key_)}: users.totp_secret_enc 3" in result.output

    after = stored(db_url)
    assert {v.split(":")[1] for v in after.values()} == {key_id(new_key_)}
    assert secretbox.read_key_file(key_file) == [new_key_]  # the old key is gone once nothing needs it
    with keyed_app.app_context():
        assert {n: secretbox.decrypt(v) for n, v in after.items()} == {n: f"SECRET-{n}" for n in after}
        with pytest.raises(WrongSecretsKey, match=f"encrypted with key {key_id(old_key)}, which is not loaded"):
            secretbox.decrypt(before["ann"])
    with psycopg.connect(db_url) as conn:
        (details,) = conn.execute("SELECT details FROM audit_log WHERE action = 'secrets.rotate'").fetchone()
    assert details == {"old_keys": [key_id(old_key)], "reencrypted": {
        "users.totp_secret_enc": 3, "integrations.secrets_enc": 0, "maintenance_host_keys.key_enc": 0}}

    status = runner.invoke(args=["secrets", "status"])
    assert f"users.totp_secret_enc: 3 under {key_id(new_key_)}" in status.output


def test_old_ciphertexts_stay_readable_until_the_rotation_ends(keyed_app, db_url, tmp_path, monkeypatch):
    """While the re-encryption runs, the key file holds the new key first and the old one after it."""
    key_file = keyed_app.config["SECRETS_KEY_FILE"]
    (old_key,) = secretbox.read_key_file(key_file)
    enrol(keyed_app, db_url, ["ann", "ben"])
    before = stored(db_url)
    new_file = tmp_path / "next.key"
    write_key_file(new_file, [(fresh := new_key())], replace=False)
    seen = {}
    real_rotate = secretbox.rotate

    def observing_rotate(conn, ring):
        if not seen:
            seen["file"] = secretbox.read_key_file(key_file)
            with keyed_app.app_context():
                seen["old readable"] = secretbox.decrypt(before["ann"])
                seen["new encrypts with"] = secretbox.encrypt("x").split(":")[1]
        return real_rotate(conn, ring)

    monkeypatch.setattr(secretbox, "rotate", observing_rotate)
    result = keyed_app.test_cli_runner().invoke(args=["secrets", "rotate", "--new-key-file", str(new_file)])
    assert result.exit_code == 0, result.output
    assert seen == {"file": [fresh, old_key], "old readable": "SECRET-ann", "new encrypts with": key_id(fresh)}


def test_failed_rotation_changes_nothing(keyed_app, db_url, tmp_path):
    enrol(keyed_app, db_url, ["ann", "ben"])
    with psycopg.connect(db_url, autocommit=True) as conn:  # a secret under a key nobody has
        conn.execute("UPDATE users SET totp_secret_enc = %s WHERE username = 'ben'", (ring(new_key()).encrypt("x"),))
    before = stored(db_url)
    new_file = tmp_path / "next.key"
    write_key_file(new_file, [new_key()], replace=False)
    result = keyed_app.test_cli_runner().invoke(args=["secrets", "rotate", "--new-key-file", str(new_file)])
    assert result.exit_code == 1
    assert "rotation rolled back, nothing changed" in result.output and "users.totp_secret_enc of id=" in result.output
    assert stored(db_url) == before
    with keyed_app.app_context():
        assert secretbox.decrypt(before["ann"]) == "SECRET-ann"  # the old key is still loaded


def test_rotate_keep_old(keyed_app, db_url, tmp_path):
    key_file = keyed_app.config["SECRETS_KEY_FILE"]
    (old_key,) = secretbox.read_key_file(key_file)
    new_file = tmp_path / "next.key"
    write_key_file(new_file, [(fresh := new_key())], replace=False)
    result = keyed_app.test_cli_runner().invoke(
        args=["secrets", "rotate", "--new-key-file", str(new_file), "--keep-old"])
    assert result.exit_code == 0, result.output
    assert secretbox.read_key_file(key_file) == [fresh, old_key]
