"""Per-host job keys: 32 random bytes that sign a host's maintenance jobs (HMAC-SHA256).

The panel and that host's agent hold the key, nobody else: the panel stores it encrypted with
``panel.secretbox`` (so ``secrets rotate`` re-encrypts it too), the agent reads it as hex from its
``maintenance.jobKeyFile``. ``poolwarden-panel maintenance enrol HOST`` makes (or imports) one.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg

from agent.contract import HOST_NAME_RULE, valid_host_name
from panel import secretbox

KEY_BYTES = 32
MIN_IMPORTED_KEY_BYTES = 16  # what the agent's worker accepts

secretbox.register_encrypted_column("maintenance_host_keys", "host", "key_enc")


class JobKeyError(ValueError):
    """A key cannot be made, imported or found; the message says what to do."""


def check_host_name(host: str) -> str:
    if not valid_host_name(host):
        raise JobKeyError(f"{host!r} is not a host name ({HOST_NAME_RULE})")
    return host


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def parse_hex_key(text: str, where: str) -> bytes:
    """A key written as hex (whitespace ignored), at least 16 bytes."""
    cleaned = "".join(text.split())
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise JobKeyError(f"{where} does not hold a key in hex (0-9, a-f)") from None
    if len(key) < MIN_IMPORTED_KEY_BYTES:
        raise JobKeyError(f"{where} holds a {len(key)}-byte key; a job key has at least {MIN_IMPORTED_KEY_BYTES} bytes "
                        f"({KEY_BYTES} recommended)")
    return key


def read_key_file(path: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        raise JobKeyError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobKeyError(f"cannot read {path}: {exc}") from None
    return parse_hex_key(text, path)


def store_key(conn: psycopg.Connection, host: str, key: bytes, *, by: str, imported: bool, replace: bool) -> None:
    check_host_name(host)
    sealed = secretbox.encrypt(key.hex())
    if replace:
        conn.execute(
            "INSERT INTO maintenance_host_keys (host, key_enc, created_by, imported) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (host) DO UPDATE SET key_enc = excluded.key_enc, created_by = excluded.created_by,"
            " imported = excluded.imported, created_at = now()", (host, sealed, by, imported))
        return
    try:
        with conn.transaction():
            conn.execute("INSERT INTO maintenance_host_keys (host, key_enc, created_by, imported)"
                         " VALUES (%s, %s, %s, %s)", (host, sealed, by, imported))
    except psycopg.errors.UniqueViolation:
        raise JobKeyError(f"{host} already has a job key: 'maintenance key {host}' prints it; --replace makes a new "
                        "one (the agent then needs the new key)") from None


def load_key(conn: psycopg.Connection, host: str) -> bytes | None:
    row = conn.execute("SELECT key_enc FROM maintenance_host_keys WHERE host = %s", (host,)).fetchone()
    if row is None:
        return None
    sealed = row["key_enc"] if isinstance(row, dict) else row[0]
    return bytes.fromhex(secretbox.decrypt(sealed))


def enrolled_hosts(conn: psycopg.Connection) -> set[str]:
    return {r[0] if not isinstance(r, dict) else r["host"]
            for r in conn.execute("SELECT host FROM maintenance_host_keys").fetchall()}


def enrol_hint(host: str) -> str:
    return (f"{host} has no maintenance job key: on the panel host run 'poolwarden-panel maintenance enrol {host}' "
            "and write the key it prints into the agent's maintenance.jobKeyFile (mode 0600), then start "
            "'poolwarden-agent work' there")
