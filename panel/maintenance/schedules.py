"""Maintenance schedules: cadences, the rows, and provisioning them from a configuration file.

A cadence is one of (times in UTC)::

    daily at 03:00
    weekly on sunday at 04:30
    every 6 hours            (on the hour: the first run at the next full hour, then every 6 h)

Schedules made in the panel live in the database; those in the file named by
``POOLWARDEN_MAINTENANCE_CONFIG`` are *provisioned*: created, updated and removed to match the
file, read-only in the UI. A file that does not validate changes nothing; the error names the
field (``schedules[2].cadence: ...``) and stays on the schedules page until the file is fixed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from agent.contract import ACTIONS, HOST_NAME_RULE, ParamError, valid_host_name, validate_params
from panel import audit

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_EVERY_HOURS = 168
CADENCE_HELP = '"daily at HH:MM", "weekly on <weekday> at HH:MM" (UTC) or "every N hours"'
NAME_RULE = "1-80 characters: letters, digits, '-', '_' or '.', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
_DAILY = re.compile(r"daily\s+at\s+(\d{1,2}):(\d{2})(?:\s*utc)?", re.I)
_WEEKLY = re.compile(r"weekly\s+on\s+([a-z]+)\s+at\s+(\d{1,2}):(\d{2})(?:\s*utc)?", re.I)
_HOURS = re.compile(r"every\s+(\d{1,3})\s+hours?", re.I)
FILE_KEYS = {"name", "host", "action", "params", "cadence", "enabled"}


class ScheduleError(ValueError):
    """A schedule is refused: ``field`` names the bad field, the message says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- cadences ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cadence:
    kind: str                 # "daily" | "weekly" | "hours"
    minute_of_day: int = 0    # daily, weekly
    weekday: int = 0          # weekly: 0 = Monday
    every_hours: int = 0      # hours

    @classmethod
    def parse(cls, text: Any) -> Cadence:
        if not isinstance(text, str):
            raise ValueError(f"must be {CADENCE_HELP}")
        text = " ".join(text.strip().split())
        if m := _DAILY.fullmatch(text):
            return cls("daily", minute_of_day=_minute_of_day(m[1], m[2]))
        if m := _WEEKLY.fullmatch(text):
            return cls("weekly", minute_of_day=_minute_of_day(m[2], m[3]), weekday=_weekday(m[1]))
        if m := _HOURS.fullmatch(text):
            hours = int(m[1])
            if not 1 <= hours <= MAX_EVERY_HOURS:
                raise ValueError(f"every N hours needs N from 1 to {MAX_EVERY_HOURS}, got {hours}")
            return cls("hours", every_hours=hours)
        raise ValueError(f"must be {CADENCE_HELP}; got {text!r}")

    @property
    def text(self) -> str:
        hhmm = f"{self.minute_of_day // 60:02d}:{self.minute_of_day % 60:02d}"
        if self.kind == "daily":
            return f"daily at {hhmm}"
        if self.kind == "weekly":
            return f"weekly on {WEEKDAYS[self.weekday]} at {hhmm}"
        return f"every {self.every_hours} hour{'s' if self.every_hours != 1 else ''}"

    def next_run(self, now: datetime, previous: datetime | None = None) -> datetime:
        """The first run time strictly after ``now``. ``previous`` (the run time just due) keeps an
        "every N hours" schedule on its grid; runs missed while the engine was down are not caught up."""
        now = now.astimezone(UTC)
        if self.kind == "hours":
            step = timedelta(hours=self.every_hours)
            if previous is None:
                return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            nxt = previous.astimezone(UTC) + step
            if nxt <= now:
                nxt += step * ((now - nxt) // step + 1)
            return nxt
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        candidate = midnight + timedelta(minutes=self.minute_of_day)
        if self.kind == "weekly":
            candidate += timedelta(days=(self.weekday - now.weekday()) % 7)
            return candidate if candidate > now else candidate + timedelta(days=7)
        return candidate if candidate > now else candidate + timedelta(days=1)


def _minute_of_day(hours: str, minutes: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"{hours}:{minutes} is not a time of day (00:00 to 23:59, UTC)")
    return h * 60 + m


def _weekday(word: str) -> int:
    word = word.lower()
    for index, day in enumerate(WEEKDAYS):
        if word in (day, day[:3]):
            return index
    raise ValueError(f"{word!r} is not a weekday ({', '.join(WEEKDAYS)})")


# -- validation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    host: str
    action: str
    params: dict[str, Any]
    cadence: Cadence
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "action": self.action, "params": self.params,
                "cadence": self.cadence.text, "enabled": self.enabled}


def check_spec(data: Any, where: str = "") -> ScheduleSpec:
    """A schedule from JSON-like data; ScheduleError names the field (prefixed with ``where``)."""
    def fail(field: str, reason: str) -> ScheduleError:
        return ScheduleError(f"{where}{field}", reason)

    if not isinstance(data, dict):
        raise fail("", "must be an object with name, host, action, params, cadence, enabled") if where else \
            ScheduleError("schedule", "must be a JSON object")
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise fail(unknown[0], f"is not a schedule field (fields: {', '.join(sorted(FILE_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fail("name", f"must be {NAME_RULE}; got {name!r}")
    host = data.get("host")
    if not isinstance(host, str) or not valid_host_name(host):
        raise fail("host", f"must be a host name ({HOST_NAME_RULE}); got {host!r}")
    action_name = data.get("action")
    schedulable = [a.name for a in ACTIONS.values() if a.scheduled]
    if action_name not in ACTIONS:
        raise fail("action", f"unknown action {action_name!r}; schedulable: {', '.join(schedulable)}")
    if not ACTIONS[action_name].scheduled:
        raise fail("action", f"{action_name} cannot be put on a schedule; schedulable: {', '.join(schedulable)}")
    try:
        params = validate_params(action_name, data.get("params") or {})
    except ParamError as exc:
        raise fail(f"params.{exc.field}", exc.reason) from None
    try:
        cadence = Cadence.parse(data.get("cadence"))
    except ValueError as exc:
        raise fail("cadence", str(exc)) from None
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled", f"must be true or false, got {enabled!r}")
    return ScheduleSpec(name, host, action_name, params, cadence, enabled)


def parse_config_file(path: str) -> list[ScheduleSpec]:
    """Every schedule in the file, or ScheduleError naming the first problem (``FILE: field: why``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScheduleError(path, "does not exist (POOLWARDEN_MAINTENANCE_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(path, f"cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleError(path, f"is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict) or set(data) - {"schedules"}:
        raise ScheduleError(path, 'must be a JSON object {"schedules": [...]} (no other keys)')
    items = data.get("schedules", [])
    if not isinstance(items, list):
        raise ScheduleError(f"{path}: schedules", "must be a list")
    specs, seen = [], set()
    for index, item in enumerate(items):
        try:
            spec = check_spec(item, f"schedules[{index}].")
        except ScheduleError as exc:
            raise ScheduleError(f"{path}: {exc.field}", exc.reason) from None
        if spec.name in seen:
            raise ScheduleError(f"{path}: schedules[{index}].name", f"{spec.name!r} is used twice")
        seen.add(spec.name)
        specs.append(spec)
    return specs


# -- rows ----------------------------------------------------------------------------------------------

COLUMNS = ("id, name, host, action, params, cadence, enabled, provisioned, last_run_at, next_run_at, last_job_id,"
           " created_at, created_by, updated_at, updated_by")


def list_schedules(conn: psycopg.Connection, host: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        if host:
            return cur.execute(f"SELECT {COLUMNS} FROM maintenance_schedules WHERE host = %s ORDER BY name",
                               (host,)).fetchall()
        return cur.execute(f"SELECT {COLUMNS} FROM maintenance_schedules ORDER BY host, name").fetchall()


def get_schedule(conn: psycopg.Connection, schedule_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {COLUMNS} FROM maintenance_schedules WHERE id = %s", (schedule_id,)).fetchone()


def public_schedule(row: dict[str, Any]) -> dict[str, Any]:
    from panel.maintenance.store import iso

    return {"id": row["id"], "name": row["name"], "host": row["host"], "action": row["action"],
            "params": row["params"], "cadence": row["cadence"], "enabled": row["enabled"],
            "provisioned": row["provisioned"], "last_run_at": iso(row["last_run_at"]),
            "next_run_at": iso(row["next_run_at"]) if row["enabled"] else None,
            "last_job_id": str(row["last_job_id"]) if row["last_job_id"] else None}


def _now() -> datetime:
    return datetime.now(UTC)


def save_schedule(conn: psycopg.Connection, spec: ScheduleSpec, *, by: str, schedule_id: int | None = None,
                  provisioned: bool = False) -> dict[str, Any]:
    """Create (``schedule_id`` None) or change a schedule made in the panel; audited."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        clash = cur.execute("SELECT id, provisioned FROM maintenance_schedules WHERE name = %s",
                            (spec.name,)).fetchone()
        if clash and clash["id"] != schedule_id:
            raise ScheduleError("name", f"a schedule named {spec.name!r} exists already")
        next_run = spec.cadence.next_run(_now()) if spec.enabled else None
        if schedule_id is None:
            row = cur.execute(
                f"INSERT INTO maintenance_schedules (name, host, action, params, cadence, enabled, provisioned,"
                f" next_run_at, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {COLUMNS}",
                (spec.name, spec.host, spec.action, Jsonb(spec.params), spec.cadence.text, spec.enabled, provisioned,
                 next_run, by, by)).fetchone()
            audit.record_event("maintenance.schedule_create", "maintenance_schedule", str(row["id"]), actor=by,
                               conn=conn, after=spec.public(), provisioned=provisioned)
            return row
        before = cur.execute(f"SELECT {COLUMNS} FROM maintenance_schedules WHERE id = %s FOR UPDATE",
                             (schedule_id,)).fetchone()
        if before is None:
            raise ScheduleError("schedule", f"no schedule {schedule_id}")
        if before["provisioned"] and not provisioned:
            raise ScheduleError("schedule", "this schedule comes from the configuration file: change it there")
        row = cur.execute(
            f"UPDATE maintenance_schedules SET name = %s, host = %s, action = %s, params = %s, cadence = %s,"
            f" enabled = %s, next_run_at = %s, updated_at = now(), updated_by = %s WHERE id = %s RETURNING {COLUMNS}",
            (spec.name, spec.host, spec.action, Jsonb(spec.params), spec.cadence.text, spec.enabled,
             _kept_next_run(before, spec, next_run), by, schedule_id)).fetchone()
        audit.record_event("maintenance.schedule_update", "maintenance_schedule", str(schedule_id), actor=by,
                           conn=conn, before=_spec_view(before), after=spec.public(), provisioned=provisioned)
        return row


def _kept_next_run(before: dict[str, Any], spec: ScheduleSpec, computed: datetime | None) -> datetime | None:
    """An unchanged, enabled cadence keeps its planned time (an every-N-hours grid stays put)."""
    if spec.enabled and before["enabled"] and before["cadence"] == spec.cadence.text and before["next_run_at"]:
        return before["next_run_at"]
    return computed


def _spec_view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "host", "action", "params", "cadence", "enabled")}


def delete_schedule(conn: psycopg.Connection, schedule_id: int, *, by: str) -> dict[str, Any]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {COLUMNS} FROM maintenance_schedules WHERE id = %s FOR UPDATE",
                          (schedule_id,)).fetchone()
        if row is None:
            raise ScheduleError("schedule", f"no schedule {schedule_id}")
        if row["provisioned"]:
            raise ScheduleError("schedule", "this schedule comes from the configuration file: remove it there")
        cur.execute("DELETE FROM maintenance_schedules WHERE id = %s", (schedule_id,))
        audit.record_event("maintenance.schedule_delete", "maintenance_schedule", str(schedule_id), actor=by,
                           conn=conn, before=_spec_view(row))
    return row


# -- provisioning --------------------------------------------------------------------------------------


@dataclass
class ProvisionReport:
    created: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: list[str]

    def line(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.removed)} removed, "
                f"{len(self.unchanged)} unchanged")


def apply_specs(conn: psycopg.Connection, specs: list[ScheduleSpec], *, source: str) -> ProvisionReport:
    """Make the provisioned schedules match ``specs`` in one transaction (audited when anything changed).

    A name already taken by a schedule made in the panel refuses the whole file."""
    by = f"provisioning:{Path(source).name}"
    report = ProvisionReport([], [], [], [])
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        existing = {r["name"]: r for r in cur.execute(
            f"SELECT {COLUMNS} FROM maintenance_schedules FOR UPDATE").fetchall()}
        for index, spec in enumerate(specs):
            row = existing.get(spec.name)
            if row is not None and not row["provisioned"]:
                raise ScheduleError(f"{source}: schedules[{index}].name",
                                    f"{spec.name!r} is the name of a schedule made in the panel: rename one of them")
        wanted = {s.name for s in specs}
        for name, row in existing.items():
            if row["provisioned"] and name not in wanted:
                cur.execute("DELETE FROM maintenance_schedules WHERE id = %s", (row["id"],))
                report.removed.append(name)
        for spec in specs:
            row = existing.get(spec.name)
            if row is None:
                cur.execute(
                    "INSERT INTO maintenance_schedules (name, host, action, params, cadence, enabled, provisioned,"
                    " next_run_at, created_by, updated_by) VALUES (%s, %s, %s, %s, %s, %s, true, %s, %s, %s)",
                    (spec.name, spec.host, spec.action, Jsonb(spec.params), spec.cadence.text, spec.enabled,
                     spec.cadence.next_run(_now()) if spec.enabled else None, by, by))
                report.created.append(spec.name)
            elif _spec_view(row) != {**spec.public()}:
                cur.execute(
                    "UPDATE maintenance_schedules SET host = %s, action = %s, params = %s, cadence = %s, enabled = %s,"
                    " next_run_at = %s, updated_at = now(), updated_by = %s WHERE id = %s",
                    (spec.host, spec.action, Jsonb(spec.params), spec.cadence.text, spec.enabled,
                     _kept_next_run(row, spec, spec.cadence.next_run(_now()) if spec.enabled else None), by,
                     row["id"]))
                report.updated.append(spec.name)
            else:
                report.unchanged.append(spec.name)
        if report.created or report.updated or report.removed:
            audit.record_event("maintenance.schedules_provision", "maintenance_schedule", None, actor=by, conn=conn,
                               file=source, created=report.created, updated=report.updated, removed=report.removed)
    return report


def file_stamp(path: str) -> str:
    try:
        info = Path(path).stat()
    except OSError:
        return "missing"
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


def provisioning_state(conn: psycopg.Connection) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM maintenance_provisioning WHERE id = 1").fetchone()


def _record_state(conn: psycopg.Connection, path: str, stamp: str, error: str | None) -> None:
    conn.execute(
        "INSERT INTO maintenance_provisioning (id, path, file_stamp, applied_at, error, error_at)"
        " VALUES (1, %s, %s, CASE WHEN %s::text IS NULL THEN now() END, %s, CASE WHEN %s::text IS NOT NULL"
        " THEN now() END)"
        " ON CONFLICT (id) DO UPDATE SET path = excluded.path, file_stamp = excluded.file_stamp,"
        " applied_at = COALESCE(excluded.applied_at, maintenance_provisioning.applied_at),"
        " error = excluded.error, error_at = excluded.error_at", (path, stamp, error, error, error))


def provision(conn: psycopg.Connection, path: str, *, force: bool = False) -> ProvisionReport | None:
    """Apply the file if it changed since it was last read (or ``force``); None when it did not.

    Raises ScheduleError for a file that does not validate, after recording the error (the
    schedules stay as they were)."""
    stamp = file_stamp(path)
    state = provisioning_state(conn)
    if not force and state and state["path"] == path and state["file_stamp"] == stamp:
        return None
    try:
        report = apply_specs(conn, parse_config_file(path), source=path)
    except ScheduleError as exc:
        _record_state(conn, path, stamp, str(exc))
        raise
    _record_state(conn, path, stamp, None)
    return report
