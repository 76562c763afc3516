"""``integrations.json``: channels and routes imported into the database as provisioned entries.

The file (``POOLWARDEN_INTEGRATIONS_CONFIG``) is read when the dispatcher starts and again whenever
it changes. Strings may use ``${VAR}`` or ``${VAR:-default}`` (secrets usually come that way). A
file that is wrong in any way is refused whole with a message naming the field and the reason,
e.g. ``integrations.json: integrations[1].to: not an e-mail address: 'ops'``, and the channels and
routes imported before stay in force. Provisioned entries are read-only in the UI; an entry that
disappears from the file is removed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from panel.notify.store import (
    DEFAULT_GROUP_BY,
    DEFAULT_TIMINGS,
    RouteSpec,
    StoreError,
    check_name,
    find_integration,
    route_spec,
    rows,
    save_integration,
    save_route,
    validate_integration,
)

log = logging.getLogger(__name__)

CONFIG_ENV = "POOLWARDEN_INTEGRATIONS_CONFIG"
TOP_KEYS = ("integrations", "routes", "defaults")
DEFAULT_KEYS = ("groupBy", "groupWaitSeconds", "groupIntervalSeconds", "repeatIntervalSeconds")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigFileError(ValueError):
    """The file is refused: ``str()`` is ``file: field: reason``."""


@dataclass(frozen=True)
class IntegrationSpec:
    name: str
    kind: str
    enabled: bool
    values: dict[str, Any]


@dataclass(frozen=True)
class Provisioning:
    integrations: tuple[IntegrationSpec, ...]
    routes: tuple[RouteSpec, ...]
    checksum: str


def _interpolate(value: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            found = env.get(name)
            if found:
                return found
            if default is not None:
                return default
            raise ConfigFileError(f"{where}: environment variable {name} is not set (and '${{{name}}}' has no "
                                  "':-default')")
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{n}]", env) for n, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else k, env) for k, v in value.items()}
    return value


def _unknown(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"unknown key (did you mean '{close[0]}'?)" if close else f"unknown key (known: {', '.join(known)})"


def parse(text: str, file: str, env: Mapping[str, str] | None = None) -> Provisioning:
    """Check the whole file; ConfigFileError with ``file: field: reason`` on the first problem."""
    env = os.environ if env is None else env
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{file}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(f"{file}: the top level must be an object with integrations and routes")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigFileError(f"{file}: {key}: {_unknown(key, TOP_KEYS)}")
    try:
        data = _interpolate(raw, "", env)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{file}: {exc}") from None
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigFileError(f"{file}: defaults: must be an object")
    for key in defaults:
        if key not in DEFAULT_KEYS:
            raise ConfigFileError(f"{file}: defaults.{key}: {_unknown(key, DEFAULT_KEYS)}")
    defaults = {"groupBy": list(DEFAULT_GROUP_BY), **DEFAULT_TIMINGS, **defaults}

    integrations: list[IntegrationSpec] = []
    seen: set[str] = set()
    items = data.get("integrations", [])
    if not isinstance(items, list):
        raise ConfigFileError(f"{file}: integrations: must be a list")
    for n, item in enumerate(items):
        where = f"integrations[{n}]"
        if not isinstance(item, dict):
            raise ConfigFileError(f"{file}: {where}: must be an object")
        values = dict(item)
        try:
            name = check_name(values.pop("name", None), "channel")
        except StoreError as exc:
            raise ConfigFileError(f"{file}: {where}.name: {exc}") from None
        if name.lower() in seen:
            raise ConfigFileError(f"{file}: {where}.name: {name!r} is used twice")
        seen.add(name.lower())
        kind = values.pop("type", None)
        enabled = values.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigFileError(f"{file}: {where}.enabled: true or false, got {enabled!r}")
        try:
            validate_integration(str(kind), values)
        except StoreError as exc:
            raise ConfigFileError(f"{file}: {where}.{exc}") from None
        integrations.append(IntegrationSpec(name, str(kind), enabled, values))

    routes: list[RouteSpec] = []
    items = data.get("routes", [])
    if not isinstance(items, list):
        raise ConfigFileError(f"{file}: routes: must be a list")
    route_names: set[str] = set()
    for n, item in enumerate(items):
        where = f"routes[{n}]"
        if not isinstance(item, dict):
            raise ConfigFileError(f"{file}: {where}: must be an object")
        try:
            spec = route_spec(item, defaults, where)
        except StoreError as exc:
            raise ConfigFileError(f"{file}: {exc}") from None
        if spec.name.lower() in route_names:
            raise ConfigFileError(f"{file}: {where}.name: {spec.name!r} is used twice")
        route_names.add(spec.name.lower())
        missing = [i for i in spec.integrations if i.lower() not in seen]
        if missing:
            raise ConfigFileError(f"{file}: {where}.integrations: no channel named {missing[0]!r} in this file")
        routes.append(spec)
    checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()  # of the file as written, without secrets
    return Provisioning(tuple(integrations), tuple(routes), checksum)


def apply(conn, spec: Provisioning, *, by: str = "provisioning") -> dict[str, int]:
    """Make the provisioned rows what the file says, in one transaction (StoreError rolls back)."""
    from panel.audit import record_event

    counts = {"integrations": 0, "routes": 0, "removed": 0}
    with conn.transaction():
        for item in spec.integrations:
            existing = find_integration(conn, item.name)
            if existing is not None and not existing.provisioned:
                raise StoreError(f"channel {item.name!r} was made in the panel; rename one of them")
            save_integration(conn, name=item.name, kind=item.kind, values=item.values, enabled=item.enabled,
                             by=by, integration_id=existing.id if existing else None, provisioned=True, audit=False)
            counts["integrations"] += 1
        names = [i.name.lower() for i in spec.integrations]
        removed = conn.execute("DELETE FROM integrations WHERE provisioned AND NOT (lower(name) = ANY(%s))",
                               (names,)).rowcount
        for position, route in enumerate(spec.routes):
            found = rows(conn, "SELECT id, provisioned FROM notify_routes WHERE lower(name) = lower(%s)", (route.name,))
            route_id, was_provisioned = (found[0]["id"], found[0]["provisioned"]) if found else (None, True)
            if route_id is not None and not was_provisioned:
                raise StoreError(f"route {route.name!r} was made in the panel; rename one of them")
            save_route(conn, route, by=by, route_id=route_id, position=position, provisioned=True, audit=False)
            counts["routes"] += 1
        removed += conn.execute("DELETE FROM notify_routes WHERE provisioned AND NOT (lower(name) = ANY(%s))",
                                ([r.name.lower() for r in spec.routes],)).rowcount
        counts["removed"] = removed
        record_event("integrations.provision", "integrations_config", None, actor="system", conn=conn,
                     checksum=spec.checksum, **counts)
    return counts


@dataclass
class ProvisionResult:
    path: str
    ok: bool
    changed: bool
    error: str | None = None
    counts: dict[str, int] | None = None


def _status(conn) -> dict[str, Any] | None:
    found = rows(conn, "SELECT path, checksum, loaded_at, checked_at, error FROM notify_provisioning WHERE id = 1")
    return found[0] if found else None


def provisioning_status(conn) -> dict[str, Any] | None:
    return _status(conn)


def provision(conn, path: str | os.PathLike, env: Mapping[str, str] | None = None) -> ProvisionResult:
    """Import the file if it is valid; otherwise record why it was refused and keep what is there."""
    path = str(path)
    now = datetime.now(UTC)
    try:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigFileError(f"{path}: file not found ({CONFIG_ENV})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigFileError(f"{path}: cannot read: {exc}") from None
        spec = parse(text, Path(path).name, env)
        try:
            counts = apply(conn, spec)
        except StoreError as exc:
            raise ConfigFileError(f"{Path(path).name}: {exc}") from None
    except ConfigFileError as exc:
        previous = _status(conn)
        _record(conn, path, previous["checksum"] if previous else None,
                previous["loaded_at"] if previous else None, now, str(exc))
        if not previous or previous["error"] != str(exc):
            log.error("integrations config refused, the channels and routes loaded before stay in force: %s", exc)
        return ProvisionResult(path, ok=False, changed=False, error=str(exc))
    _record(conn, path, spec.checksum, now, now, None)
    log.info("integrations config %s loaded: %s", path, counts)
    return ProvisionResult(path, ok=True, changed=True, counts=counts)


def _record(conn, path: str, checksum: str | None, loaded_at, checked_at, error: str | None) -> None:
    conn.execute("INSERT INTO notify_provisioning (id, path, checksum, loaded_at, checked_at, error)"
                 " VALUES (1, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET path = EXCLUDED.path,"
                 " checksum = EXCLUDED.checksum, loaded_at = EXCLUDED.loaded_at, checked_at = EXCLUDED.checked_at,"
                 " error = EXCLUDED.error", (path, checksum, loaded_at, checked_at, error))


_seen_files: dict[str, tuple[int, int, int]] = {}


def provision_if_changed(conn, path: str | None) -> ProvisionResult | None:
    """``provision`` on the first call of this process and whenever the file changes (mtime, size, inode)."""
    if not path:
        return None
    try:
        info = os.stat(path)
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    except OSError:
        stamp = (0, 0, 0)
    if _seen_files.get(path) == stamp:
        return None
    result = provision(conn, path)
    _seen_files[path] = stamp
    return result
