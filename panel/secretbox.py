"""Secrets at rest (TOTP secrets, bot tokens, webhook URLs, SMTP passwords), with a key kept outside the database.

Ciphertexts look like ``v1:<key-id>:<base64url(nonce || AES-256-GCM ciphertext+tag)>``; the
``v1:<key-id>`` prefix is authenticated too. The key id is derived from the key (the first 8 hex
digits of a SHA-256 over it), so a ciphertext names the key that opens it.

Keys come from, in order:

* ``POOLWARDEN_SECRETS_KEY_FILE`` (config ``SECRETS_KEY_FILE``): a file of base64 keys, one a line,
  ``#`` comments allowed. The first key encrypts; every key decrypts (older keys stay there during a
  rotation). Create it with ``poolwarden-panel secrets generate-key --out FILE`` (mode 0600). The file
  is re-read when it changes, so a rotation reaches running panels without a restart. A file that
  other users can read is refused.
* ``POOLWARDEN_SECRETS_KEY`` (config ``SECRETS_KEY``): base64 keys separated by commas, first encrypts.
* In TESTING only, when neither is set: a random key made once per process (secrets then do not
  survive a restart, which is what tests want).

Rotation (``secrets rotate --new-key-file F``) re-encrypts every column registered with
``register_encrypted_column`` in one transaction; see ``rotate``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
MISSING_KEY_HELP = (
    "no secrets key configured: set POOLWARDEN_SECRETS_KEY_FILE to a key file (create one with "
    "'poolwarden-panel secrets generate-key --out /etc/poolwarden/secrets.key') or POOLWARDEN_SECRETS_KEY "
    "to a base64 key of 32 bytes"
)


class SecretboxError(RuntimeError):
    """A secret cannot be encrypted or decrypted; the message says what the operator should fix."""


class SecretsKeyMissing(SecretboxError):
    pass


class WrongSecretsKey(SecretboxError):
    pass


# -- keys -------------------------------------------------------------------------------------------


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"poolwarden-secretbox-key-id\0" + key).hexdigest()[:8]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise SecretboxError(f"{where} is not a base64 key") from None
    if len(key) != KEY_BYTES:
        raise SecretboxError(f"{where} holds a {len(key)}-byte key; a secrets key is {KEY_BYTES} bytes "
                             "('poolwarden-panel secrets generate-key' makes one)")
    return key


@dataclass(frozen=True)
class Keyring:
    """The keys loaded: ``primary`` encrypts, all of ``keys`` (by id) decrypt."""

    primary: bytes
    keys: dict[str, bytes]
    source: str

    @classmethod
    def of(cls, keys: list[bytes], source: str) -> Keyring:
        if not keys:
            raise SecretsKeyMissing(f"{source} holds no key")
        return cls(keys[0], {key_id(k): k for k in keys}, source)

    @property
    def primary_id(self) -> str:
        return key_id(self.primary)

    def encrypt(self, plaintext: str) -> str:
        header = f"{VERSION}:{self.primary_id}"
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.primary).encrypt(nonce, plaintext.encode("utf-8"), header.encode("ascii"))
        return f"{header}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii').rstrip('=')}"

    def decrypt(self, token: str) -> str:
        version, kid, body = parse(token)
        key = self.keys.get(kid)
        if key is None:
            loaded = ", ".join(sorted(self.keys)) or "none"
            raise WrongSecretsKey(
                f"secret was encrypted with key {kid}, which is not loaded (loaded from {self.source}: {loaded}); "
                "point POOLWARDEN_SECRETS_KEY_FILE at the key file that holds it")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{version}:{kid}".encode("ascii"))
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretboxError(f"secret encrypted with key {kid} does not authenticate: "
                                 "it was altered or truncated in the database") from None
        return plain.decode("utf-8")


def parse(token: str) -> tuple[str, str, str]:
    """``(version, key id, body)`` of a ciphertext; SecretboxError if it is not one."""
    parts = token.split(":", 2) if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != VERSION or len(parts[1]) != 8:
        raise SecretboxError("value is not a poolwarden secret (expected v1:<key-id>:...)")
    return parts[0], parts[1], parts[2]


def is_encrypted(value: str | None) -> bool:
    try:
        parse(value or "")
    except SecretboxError:
        return False
    return True


def read_key_file(path: str | os.PathLike) -> list[bytes]:
    """Every key in a key file, first (encrypting) key first."""
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SecretsKeyMissing(f"secrets key file {path} does not exist (POOLWARDEN_SECRETS_KEY_FILE): "
                                f"create it with 'poolwarden-panel secrets generate-key --out {path}'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretboxError(f"cannot read secrets key file {path}: {exc}") from None
    if info.st_mode & stat.S_IRWXO:
        raise SecretboxError(f"secrets key file {path} is readable by other users (mode "
                             f"{stat.S_IMODE(info.st_mode):04o}): chmod 600 {path}")
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [decode_key(line, f"secrets key file {path} line {n}") for n, line in enumerate(lines, 1) if line]


def write_key_file(path: str | os.PathLike, keys: list[bytes], *, replace: bool) -> None:
    """Write keys (mode 0600). ``replace`` swaps an existing file atomically; otherwise it must not exist."""
    path = Path(path)
    body = "".join(f"{encode_key(k)}\n" for k in keys)
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(body)
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- the configured keyring ---------------------------------------------------------------------------

_cache_lock = threading.Lock()
_file_cache: dict[str, tuple[tuple[int, int, int], Keyring]] = {}
_testing_keyring: Keyring | None = None


def _settings() -> Mapping[str, Any]:
    from flask import current_app, has_app_context

    config = current_app.config if has_app_context() else {}
    return {
        "file": config.get("SECRETS_KEY_FILE") or os.environ.get("POOLWARDEN_SECRETS_KEY_FILE") or None,
        "key": config.get("SECRETS_KEY") or os.environ.get("POOLWARDEN_SECRETS_KEY") or None,
        "testing": bool(config.get("TESTING")),
    }


def keyring_from_file(path: str) -> Keyring:
    """The file's keys, re-read only when the file changed (mtime, size or inode)."""
    try:
        info = os.stat(path)
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    except OSError:
        stamp = (0, 0, 0)
    with _cache_lock:
        cached = _file_cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    ring = Keyring.of(read_key_file(path), f"key file {path}")
    with _cache_lock:
        _file_cache[path] = (stamp, ring)
    return ring


def current_keyring() -> Keyring:
    """The keys configured for this process (see the module docstring for where they come from)."""
    global _testing_keyring
    settings = _settings()
    if settings["file"] and settings["key"]:
        raise SecretboxError("both POOLWARDEN_SECRETS_KEY_FILE and POOLWARDEN_SECRETS_KEY are set: keep one")
    if settings["file"]:
        return keyring_from_file(str(settings["file"]))
    if settings["key"]:
        parts = [p for p in str(settings["key"]).split(",") if p.strip()]
        return Keyring.of([decode_key(p, "POOLWARDEN_SECRETS_KEY") for p in parts], "POOLWARDEN_SECRETS_KEY")
    if settings["testing"]:
        with _cache_lock:
            if _testing_keyring is None:
                log.warning("TESTING without a secrets key: using a random per-process key")
                _testing_keyring = Keyring.of([new_key()], "a random per-process test key")
            return _testing_keyring
    raise SecretsKeyMissing(MISSING_KEY_HELP)


def encrypt(plaintext: str) -> str:
    """Encrypt with the current (first) key."""
    if not isinstance(plaintext, str):
        raise TypeError("encrypt() takes a str")
    return current_keyring().encrypt(plaintext)


def decrypt(token: str) -> str:
    """Decrypt with whichever loaded key the ciphertext names."""
    return current_keyring().decrypt(token)


# -- the registry of encrypted columns, and rotation ---------------------------------------------------

ENCRYPTED_COLUMNS: list[tuple[str, str, str]] = []


def register_encrypted_column(table: str, key_column: str, column: str) -> None:
    """Declare a text column holding ``encrypt()`` output, so ``secrets rotate`` re-encrypts it."""
    entry = (table, key_column, column)
    if entry not in ENCRYPTED_COLUMNS:
        ENCRYPTED_COLUMNS.append(entry)


register_encrypted_column("users", "id", "totp_secret_enc")


def rotate(conn, ring: Keyring) -> dict[str, int]:
    """Re-encrypt every registered column under ``ring.primary``, all in one transaction.

    Rows are locked (``FOR UPDATE``) as they are read, and values already under the primary key are
    left alone, so running it again only picks up stragglers. Returns the count per column.
    """
    from psycopg import sql

    counts: dict[str, int] = {}
    with conn.transaction():
        for table, key_column, column in ENCRYPTED_COLUMNS:
            ident = {"t": sql.Identifier(table), "k": sql.Identifier(key_column), "c": sql.Identifier(column)}
            rows = conn.execute(
                sql.SQL("SELECT {k}, {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {k} FOR UPDATE").format(**ident)
            ).fetchall()
            changed = 0
            for key, value in rows:
                try:
                    if parse(value)[1] == ring.primary_id:
                        continue
                    plain = ring.decrypt(value)
                except SecretboxError as exc:
                    raise SecretboxError(f"{table}.{column} of {key_column}={key}: {exc}") from None
                conn.execute(sql.SQL("UPDATE {t} SET {c} = %s WHERE {k} = %s").format(**ident),
                             (ring.encrypt(plain), key))
                changed += 1
            counts[f"{table}.{column}"] = changed
    return counts


def key_usage(conn) -> dict[str, dict[str, int]]:
    """Per registered column: how many values each key id encrypted."""
    from psycopg import sql

    usage: dict[str, dict[str, int]] = {}
    for table, _key_column, column in ENCRYPTED_COLUMNS:
        rows = conn.execute(
            sql.SQL("SELECT split_part({c}, ':', 2), count(*) FROM {t} WHERE {c} IS NOT NULL GROUP BY 1 ORDER BY 1")
            .format(t=sql.Identifier(table), c=sql.Identifier(column))
        ).fetchall()
        usage[f"{table}.{column}"] = {kid: n for kid, n in rows}
    return usage


# -- commands ------------------------------------------------------------------------------------------

def _fail(message: str) -> None:
    click.echo(f"poolwarden-panel: {message}", err=True)
    raise SystemExit(1)


@click.group("secrets", help="The key that encrypts secrets in the database: create it, rotate it.")
def secrets_group() -> None:
    pass


@secrets_group.command("generate-key")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Key file to create (mode 0600); an existing file is never overwritten.")
def generate_key_command(out: str) -> None:
    """Create a new random key file for POOLWARDEN_SECRETS_KEY_FILE or 'secrets rotate'."""
    key = new_key()
    try:
        write_key_file(out, [key], replace=False)
    except FileExistsError:
        _fail(f"{out} already exists: choose another path (keys are never overwritten)")
    except OSError as exc:
        _fail(f"cannot create {out}: {exc.strerror}")
    click.echo(f"wrote key {key_id(key)} to {out} (mode 0600)")


@secrets_group.command("rotate")
@click.option("--new-key-file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Key file made by 'secrets generate-key'; its first key becomes the encrypting key.")
@click.option("--keep-old", is_flag=True, help="Leave the old keys in the key file as decrypt-only keys.")
def rotate_command(new_key_file: str, keep_old: bool) -> None:
    """Re-encrypt every encrypted column with a new key, in one transaction.

    With POOLWARDEN_SECRETS_KEY_FILE, the key file is first rewritten as "new key, then the old
    ones" (so running panels encrypt with the new key and still read the old ciphertexts), then the
    rows are re-encrypted, then the old keys are dropped from the file (unless --keep-old).
    """
    from panel.audit import record_event
    from panel.audit.cli import command_config
    from panel.db import DatabaseUnavailable, connect

    config = command_config("DATABASE_URL")
    settings = _settings()
    try:
        old = current_keyring()
        new = read_key_file(new_key_file)[0]
    except (SecretboxError, IndexError) as exc:
        _fail(str(exc) if isinstance(exc, SecretboxError) else f"{new_key_file} holds no key")
    new_id = key_id(new)
    old_keys = [k for k in old.keys.values() if k != new]
    ring = Keyring.of([new, *old_keys], f"{old.source} + {new_key_file}")
    key_file = settings["file"]
    if key_file:
        write_key_file(key_file, [new, *old_keys], replace=True)
    try:
        with connect(config["DATABASE_URL"]) as conn:
            with conn.transaction():
                counts = rotate(conn, ring)
                record_event("secrets.rotate", "secrets_key", new_id, actor="system", conn=conn,
                             old_keys=sorted(key_id(k) for k in old_keys), reencrypted=counts)
            for _ in range(5):  # a writer that still held the old key during the transaction
                again = rotate(conn, ring)
                if not any(again.values()):
                    break
                counts = {name: counts[name] + again[name] for name in counts}
            leftovers = {name: {k: n for k, n in by_key.items() if k != new_id}
                         for name, by_key in key_usage(conn).items()}
    except DatabaseUnavailable as exc:
        _fail(str(exc))
    except SecretboxError as exc:
        _fail(f"rotation rolled back, nothing changed in the database: {exc}")
    if any(leftovers.values()):
        _fail(f"values under old keys remain after rotation: {leftovers}; the key file keeps the old keys")
    if key_file and not keep_old:
        write_key_file(key_file, [new], replace=True)
    total = sum(counts.values())
    click.echo(f"re-encrypted {total} secrets with key {new_id}: "
               + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if key_file:
        kept = " (old keys kept as decrypt-only)" if keep_old else ""
        click.echo(f"{key_file} now holds key {new_id}{kept}")
    else:
        click.echo(f"POOLWARDEN_SECRETS_KEY is set in the environment, which this command cannot change: set it "
                   f"to the key in {new_key_file} for every panel process and restart them")


@secrets_group.command("status")
def status_command() -> None:
    """Show the loaded keys and how many secrets each key encrypts."""
    from panel.audit.cli import command_config
    from panel.db import DatabaseUnavailable, connect

    config = command_config("DATABASE_URL")
    try:
        ring = current_keyring()
        with connect(config["DATABASE_URL"]) as conn:
            usage = key_usage(conn)
    except (SecretboxError, DatabaseUnavailable) as exc:
        _fail(str(exc))
    click.echo(f"keys from {ring.source}: {ring.primary_id} (encrypts)"
               + "".join(f", {kid}" for kid in ring.keys if kid != ring.primary_id))
    for name, by_key in usage.items():
        parts = ", ".join(f"{n} under {kid}{'' if kid in ring.keys else ' (NOT LOADED)'}"
                          for kid, n in by_key.items()) or "none"
        click.echo(f"{name}: {parts}")


def init_app(app) -> None:
    """The ``secrets`` commands on ``app.cli``. Fails early outside tests when no key is configured."""
    from panel.audit.cli import bound_to_app
    from panel.config import ConfigError

    app.cli.add_command(bound_to_app(secrets_group))
    if not app.testing:
        with app.app_context():
            try:
                current_keyring()
            except SecretboxError as exc:
                raise ConfigError(str(exc)) from None
