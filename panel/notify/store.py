"""Integrations (channels) and routes in the database.

An integration's secret fields are stored as one ``secretbox.encrypt``-ed JSON object; listing
shows which secrets are set, never their values. Provisioned rows (from integrations.json) are
read-only in the UI. Every change made by a person is audited, with the names of the secrets that
changed but not their values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from panel import secretbox
from panel.notify.channels import REGISTRY, Channel, FieldError, channel_class
from panel.notify.matchers import Matcher, MatcherError, matchers_from

secretbox.register_encrypted_column("integrations", "id", "secrets_enc")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$")
SEVERITIES = ("info", "warning", "critical")
GROUP_ALL = "..."   # group_by ["..."]: one group per label set (no aggregation)
DEFAULT_GROUP_BY = ("alertname", "host")
DEFAULT_TIMINGS = {"groupWaitSeconds": 30, "groupIntervalSeconds": 300, "repeatIntervalSeconds": 4 * 3600}
TIMING_LIMITS = {"groupWaitSeconds": (0, 86400), "groupIntervalSeconds": (1, 86400),
                 "repeatIntervalSeconds": (60, 30 * 86400)}


class StoreError(ValueError):
    """A change cannot be made; ``field`` names the wrong input when there is one."""

    def __init__(self, message: str, field_name: str | None = None):
        super().__init__(message)
        self.field = field_name


def rows(conn, query: str, params: tuple | list = ()) -> list[dict[str, Any]]:
    """All rows as dicts, whatever the connection's row factory."""
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def scalar(conn, query: str, params: tuple | list = ()) -> Any:
    """The first column of the first row (None without a row)."""
    row = conn.cursor(row_factory=tuple_row).execute(query, params).fetchone()
    return None if row is None else row[0]



def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name.strip()):
        raise StoreError(f"a {what} name is 1-64 letters, digits, spaces and . _ : @ - (starting with a letter or "
                         f"digit), got {name!r}", "name")
    return name.strip()


# -- integrations ----------------------------------------------------------------------------------

@dataclass
class Integration:
    id: int
    name: str
    kind: str
    settings: dict[str, Any]
    secrets_enc: str | None
    enabled: bool
    provisioned: bool
    created_at: datetime
    updated_at: datetime
    updated_by: str
    _secrets: dict[str, Any] | None = field(default=None, repr=False)

    def secrets(self) -> dict[str, Any]:
        """The decrypted secrets (SecretboxError when the key that encrypted them is not loaded)."""
        if self._secrets is None:
            self._secrets = json.loads(secretbox.decrypt(self.secrets_enc)) if self.secrets_enc else {}
        return self._secrets

    def channel(self) -> Channel:
        return channel_class(self.kind)(settings=dict(self.settings), secrets=dict(self.secrets()))

    @property
    def title(self) -> str:
        cls = REGISTRY.get(self.kind)
        return cls.title if cls else self.kind

    def view(self) -> dict[str, Any]:
        """What the pages and the API show: settings, which secrets are set, where it sends."""
        try:
            secrets = self.secrets()
            problem = None
            where = self.channel().describe()
        except secretbox.SecretboxError as exc:
            secrets, problem, where = {}, str(exc), "?"
        cls = REGISTRY.get(self.kind)
        secret_keys = [f.key for f in cls.fields if f.secret] if cls else []
        return {"id": self.id, "name": self.name, "type": self.kind, "title": self.title, "enabled": self.enabled,
                "provisioned": self.provisioned, "settings": self.settings, "destination": where,
                "secrets": {key: key in secrets for key in secret_keys}, "secretsProblem": problem,
                "updatedAt": self.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "updatedBy": self.updated_by}


_INTEGRATION_COLUMNS = ("id, name, kind, settings, secrets_enc, enabled, provisioned, created_at, updated_at, "
                        "updated_by")


def list_integrations(conn) -> list[Integration]:
    return [Integration(**r) for r in rows(conn, f"SELECT {_INTEGRATION_COLUMNS} FROM integrations ORDER BY "
                                                  "lower(name)")]


def get_integration(conn, integration_id: int) -> Integration | None:
    if not 0 < integration_id < 2**31:
        return None
    found = rows(conn, f"SELECT {_INTEGRATION_COLUMNS} FROM integrations WHERE id = %s", (integration_id,))
    return Integration(**found[0]) if found else None


def find_integration(conn, name: str) -> Integration | None:
    found = rows(conn, f"SELECT {_INTEGRATION_COLUMNS} FROM integrations WHERE lower(name) = lower(%s)", (name,))
    return Integration(**found[0]) if found else None


def validate_integration(kind: str, values: Mapping[str, Any], existing: Integration | None = None,
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(settings, secrets)``; blank secrets keep those of ``existing``. StoreError names the field."""
    try:
        cls = channel_class(kind)
        return cls.validate(values, existing_secrets=existing.secrets() if existing else None,
                            partial_secrets=existing is not None)
    except FieldError as exc:
        raise StoreError(str(exc), exc.field) from None


def _encrypt(secrets: dict[str, Any]) -> str | None:
    return secretbox.encrypt(json.dumps(secrets, sort_keys=True)) if secrets else None


def save_integration(conn, *, name: str, kind: str, values: Mapping[str, Any], enabled: bool, by: str,
                     integration_id: int | None = None, provisioned: bool = False, audit: bool = True,
                     ) -> Integration:
    """Create (``integration_id`` None) or change an integration; audited unless ``audit`` is False."""
    from panel.audit import record_event

    name = check_name(name, "channel")
    existing = get_integration(conn, integration_id) if integration_id is not None else None
    if integration_id is not None and existing is None:
        raise StoreError(f"no channel {integration_id}")
    if existing is not None and existing.kind != kind:
        raise StoreError("the type of a channel cannot change: make a new one", "type")
    settings, secrets = validate_integration(kind, values, existing)
    clash = find_integration(conn, name)
    if clash is not None and clash.id != integration_id:
        raise StoreError(f"a channel named {clash.name!r} exists already", "name")
    with conn.transaction():
        if existing is None:
            row = rows(conn, "INSERT INTO integrations (name, kind, settings, secrets_enc, enabled, provisioned,"
                              " updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (name, kind, Jsonb(settings), _encrypt(secrets), enabled, provisioned, by))[0]
            integration_id = row["id"]
            changed_secrets = sorted(secrets)
        else:
            old = existing.secrets()
            changed_secrets = sorted(k for k in set(old) | set(secrets) if old.get(k) != secrets.get(k))
            secrets_enc = existing.secrets_enc if not changed_secrets else _encrypt(secrets)
            conn.execute("UPDATE integrations SET name = %s, settings = %s, secrets_enc = %s, enabled = %s,"
                         " provisioned = %s, updated_at = now(), updated_by = %s WHERE id = %s",
                         (name, Jsonb(settings), secrets_enc, enabled, provisioned, by, integration_id))
        if audit:
            before = ({"name": existing.name, "settings": existing.settings, "enabled": existing.enabled}
                      if existing else None)
            record_event("integration.update" if existing else "integration.create", "integration",
                         str(integration_id), before=before, conn=conn, actor=by,
                         after={"name": name, "type": kind, "settings": settings, "enabled": enabled},
                         secrets_changed=changed_secrets)
    return get_integration(conn, integration_id)


def secrets_would_change(existing: Integration | None, kind: str, values: Mapping[str, Any]) -> bool:
    """True when a form submission sets a secret (a new channel with any secret, or a changed one)."""
    cls = channel_class(kind)
    keys = [f.key for f in cls.fields if f.secret]
    given = {k: values.get(k) for k in keys if values.get(k) not in (None, "")}
    if existing is None:
        return bool(given)
    try:
        old = existing.secrets()
    except secretbox.SecretboxError:
        return True
    return any(old.get(k) != v for k, v in given.items())


def set_integration_enabled(conn, integration_id: int, enabled: bool, by: str) -> Integration | None:
    from panel.audit import record_event

    with conn.transaction():
        found = rows(conn, "UPDATE integrations SET enabled = %s, updated_at = now(), updated_by = %s"
                           " WHERE id = %s RETURNING id", (enabled, by, integration_id))
        if found:
            record_event("integration.enable" if enabled else "integration.disable", "integration",
                         str(integration_id), conn=conn, actor=by)
    return get_integration(conn, integration_id) if found else None


def delete_integration(conn, integration_id: int, by: str) -> bool:
    from panel.audit import record_event

    with conn.transaction():
        found = rows(conn, "DELETE FROM integrations WHERE id = %s RETURNING name, kind", (integration_id,))
        if found:
            record_event("integration.delete", "integration", str(integration_id), conn=conn, actor=by,
                         before={"name": found[0]["name"], "type": found[0]["kind"]})
    return bool(found)


# -- routes ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    id: int
    name: str
    position: int
    severities: frozenset[str]
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: int
    group_interval: int
    repeat_interval: int
    continue_matching: bool
    enabled: bool
    provisioned: bool
    integration_ids: tuple[int, ...]
    integration_names: tuple[str, ...]

    def matches(self, labels: Mapping[str, Any], severity: str | None) -> bool:
        sev = severity or labels.get("severity")
        return sev in self.severities and all(m.matches(labels) for m in self.matchers)

    def group_of(self, labels: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        """``(group key, group labels)`` of an alert with ``labels`` on this route."""
        if GROUP_ALL in self.group_by:
            chosen = {k: str(v) for k, v in labels.items()}
        else:
            chosen = {k: str(labels.get(k, "")) for k in self.group_by}
        key = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return key, chosen

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "position": self.position,
                "severities": [s for s in SEVERITIES if s in self.severities],
                "matchers": [m.as_dict() for m in self.matchers], "groupBy": list(self.group_by),
                "groupWaitSeconds": self.group_wait, "groupIntervalSeconds": self.group_interval,
                "repeatIntervalSeconds": self.repeat_interval, "continue": self.continue_matching,
                "enabled": self.enabled, "provisioned": self.provisioned, "integrations": list(self.integration_names)}


def load_routes(conn, *, enabled_only: bool = True) -> list[Route]:
    found = rows(conn, """
        SELECT r.id, r.name, r.position, r.severities, r.matchers, r.group_by, r.group_wait_seconds,
               r.group_interval_seconds, r.repeat_interval_seconds, r.continue_matching, r.enabled, r.provisioned,
               coalesce(array_agg(i.id ORDER BY lower(i.name)) FILTER (WHERE i.id IS NOT NULL), '{}') AS ids,
               coalesce(array_agg(i.name ORDER BY lower(i.name)) FILTER (WHERE i.id IS NOT NULL), '{}') AS names
          FROM notify_routes r
          LEFT JOIN notify_route_integrations ri ON ri.route_id = r.id
          LEFT JOIN integrations i ON i.id = ri.integration_id
         WHERE r.enabled OR NOT %s
         GROUP BY r.id ORDER BY r.position, r.id""", (enabled_only,))
    return [Route(id=r["id"], name=r["name"], position=r["position"], severities=frozenset(r["severities"]),
                  matchers=tuple(matchers_from(r["matchers"])), group_by=tuple(r["group_by"]),
                  group_wait=r["group_wait_seconds"], group_interval=r["group_interval_seconds"],
                  repeat_interval=r["repeat_interval_seconds"], continue_matching=r["continue_matching"],
                  enabled=r["enabled"], provisioned=r["provisioned"], integration_ids=tuple(r["ids"]),
                  integration_names=tuple(r["names"])) for r in found]


@dataclass(frozen=True)
class RouteSpec:
    """A route as written in integrations.json or the route form, checked."""

    name: str
    severities: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    integrations: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: int
    group_interval: int
    repeat_interval: int
    continue_matching: bool = False
    enabled: bool = True


ROUTE_KEYS = ("name", "severities", "matchers", "integrations", "groupBy", "groupWaitSeconds",
              "groupIntervalSeconds", "repeatIntervalSeconds", "continue", "enabled")


def route_spec(raw: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, where: str = "route") -> RouteSpec:
    """Check one route object (camelCase keys as in integrations.json); StoreError names the field."""
    defaults = defaults or {}
    unknown = sorted(set(raw) - set(ROUTE_KEYS))
    if unknown:
        raise StoreError(f"{where}.{unknown[0]}: unknown key (a route has {', '.join(ROUTE_KEYS)})", unknown[0])
    try:
        name = check_name(raw.get("name"), "route")
    except StoreError as exc:
        raise StoreError(f"{where}.name: {exc}", "name") from None
    severities = raw.get("severities", list(SEVERITIES))
    if (not isinstance(severities, list) or not severities
            or not all(isinstance(s, str) and s in SEVERITIES for s in severities)):
        raise StoreError(f"{where}.severities: a non-empty list of {', '.join(SEVERITIES)}, got {severities!r}",
                         "severities")
    try:
        matchers = matchers_from(raw.get("matchers", []), f"{where}.matchers")
    except MatcherError as exc:
        raise StoreError(str(exc), "matchers") from None
    integrations = raw.get("integrations", [])
    if not isinstance(integrations, list) or not all(isinstance(i, str) and i.strip() for i in integrations):
        raise StoreError(f"{where}.integrations: a list of channel names, got {integrations!r}", "integrations")
    group_by = raw.get("groupBy", defaults.get("groupBy", list(DEFAULT_GROUP_BY)))
    if (not isinstance(group_by, list)
            or not all(isinstance(g, str) and (g == GROUP_ALL or re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", g))
                       for g in group_by)):
        raise StoreError(f"{where}.groupBy: a list of label names (or [\"...\"] for every label), got {group_by!r}",
                         "groupBy")
    timings = {}
    for key, (low, high) in TIMING_LIMITS.items():
        value = raw.get(key, defaults.get(key, DEFAULT_TIMINGS[key]))
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise StoreError(f"{where}.{key}: whole seconds from {low} to {high}, got {value!r}", key)
        timings[key] = value
    flags = {}
    for key, default in (("continue", False), ("enabled", True)):
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise StoreError(f"{where}.{key}: true or false, got {value!r}", key)
        flags[key] = value
    return RouteSpec(name=name, severities=tuple(s for s in SEVERITIES if s in severities), matchers=tuple(matchers),
                     integrations=tuple(i.strip() for i in integrations), group_by=tuple(group_by),
                     group_wait=timings["groupWaitSeconds"], group_interval=timings["groupIntervalSeconds"],
                     repeat_interval=timings["repeatIntervalSeconds"], continue_matching=flags["continue"],
                     enabled=flags["enabled"])


def save_route(conn, spec: RouteSpec, *, by: str, route_id: int | None = None, position: int | None = None,
               provisioned: bool = False, audit: bool = True) -> int:
    """Create or change a route; its channels are named in ``spec.integrations`` (must exist)."""
    from panel.audit import record_event

    ids = []
    for name in spec.integrations:
        found = find_integration(conn, name)
        if found is None:
            raise StoreError(f"route {spec.name}: no channel named {name!r}", "integrations")
        ids.append(found.id)
    clash = rows(conn, "SELECT id FROM notify_routes WHERE lower(name) = lower(%s)", (spec.name,))
    if clash and clash[0]["id"] != route_id:
        raise StoreError(f"a route named {spec.name!r} exists already", "name")
    with conn.transaction():
        if position is None:
            position = (rows(conn, "SELECT coalesce(max(position), 0) + 10 AS p FROM notify_routes")[0]["p"]
                        if route_id is None else
                        rows(conn, "SELECT position AS p FROM notify_routes WHERE id = %s", (route_id,))[0]["p"])
        values = (spec.name, position, list(spec.severities), Jsonb([m.as_dict() for m in spec.matchers]),
                  list(spec.group_by), spec.group_wait, spec.group_interval, spec.repeat_interval,
                  spec.continue_matching, spec.enabled, provisioned, by)
        if route_id is None:
            route_id = rows(conn, """
                INSERT INTO notify_routes (name, position, severities, matchers, group_by, group_wait_seconds,
                    group_interval_seconds, repeat_interval_seconds, continue_matching, enabled, provisioned,
                    updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                RETURNING id""", values)[0]["id"]
            action = "route.create"
        else:
            updated = rows(conn, """
                UPDATE notify_routes SET name = %s, position = %s, severities = %s, matchers = %s, group_by = %s,
                    group_wait_seconds = %s, group_interval_seconds = %s, repeat_interval_seconds = %s,
                    continue_matching = %s, enabled = %s, provisioned = %s, updated_by = %s, updated_at = now()
                 WHERE id = %s RETURNING id""", (*values, route_id))
            if not updated:
                raise StoreError(f"no route {route_id}")
            action = "route.update"
        conn.execute("DELETE FROM notify_route_integrations WHERE route_id = %s", (route_id,))
        for integration_id in ids:
            conn.execute("INSERT INTO notify_route_integrations (route_id, integration_id) VALUES (%s, %s)",
                         (route_id, integration_id))
        if audit:
            record_event(action, "route", str(route_id), conn=conn, actor=by, after=route_audit_view(spec))
    return route_id


def route_audit_view(spec: RouteSpec) -> dict[str, Any]:
    return {"name": spec.name, "severities": list(spec.severities), "matchers": [m.as_dict() for m in spec.matchers],
            "integrations": list(spec.integrations), "groupBy": list(spec.group_by),
            "groupWaitSeconds": spec.group_wait, "groupIntervalSeconds": spec.group_interval,
            "repeatIntervalSeconds": spec.repeat_interval, "continue": spec.continue_matching,
            "enabled": spec.enabled}


def delete_route(conn, route_id: int, by: str) -> bool:
    from panel.audit import record_event

    with conn.transaction():
        found = rows(conn, "DELETE FROM notify_routes WHERE id = %s AND NOT provisioned RETURNING name", (route_id,))
        if found:
            record_event("route.delete", "route", str(route_id), conn=conn, actor=by,
                         before={"name": found[0]["name"]})
    return bool(found)


# -- deliveries ------------------------------------------------------------------------------------

def list_deliveries(conn, *, integration_id: int | None = None, limit: int = 100,
                    before_id: int | None = None) -> list[dict[str, Any]]:
    """Delivery attempts, newest first, with what they carried."""
    return rows(conn, """
        SELECT d.id, d.notification_id, d.integration_id, n.integration_name, d.attempt, d.status, d.response_code,
               d.error, d.duration_ms, d.at, n.kind, n.route_name, n.severity, n.firing, n.resolved,
               n.status AS notification_status, n.idempotency_key
          FROM deliveries d JOIN notifications n ON n.id = d.notification_id
         WHERE (%(integration)s::integer IS NULL OR d.integration_id = %(integration)s)
           AND (%(before)s::bigint IS NULL OR d.id < %(before)s)
         ORDER BY d.id DESC LIMIT %(limit)s""",
                {"integration": integration_id, "before": before_id, "limit": limit})


def delivery_summary(conn) -> dict[int, dict[str, Any]]:
    """Per channel: last attempt, last success, sent and failed in the last 24 hours, queued now."""
    summary: dict[int, dict[str, Any]] = {}
    for row in rows(conn, """
            SELECT integration_id, max(at) AS last_at, max(at) FILTER (WHERE status = 'sent') AS last_sent_at,
                   count(*) FILTER (WHERE status = 'sent' AND at > now() - interval '24 hours') AS sent_24h,
                   count(*) FILTER (WHERE status <> 'sent' AND at > now() - interval '24 hours') AS failed_24h
              FROM deliveries WHERE integration_id IS NOT NULL GROUP BY integration_id"""):
        summary[row["integration_id"]] = {**row, "queued": 0}
    for row in rows(conn, "SELECT integration_id, count(*) AS n FROM notifications WHERE status = 'queued'"
                          " AND integration_id IS NOT NULL GROUP BY integration_id"):
        summary.setdefault(row["integration_id"], {"last_at": None, "last_sent_at": None, "sent_24h": 0,
                                                   "failed_24h": 0})["queued"] = row["n"]
    return summary
