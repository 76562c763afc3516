"""Silences: label matchers and a time window during which matching alerts are not notified.

A one-off silence runs from ``starts_at`` to ``ends_at``. A recurring one (a maintenance window)
is in force during weekly windows - weekdays, a start time and a duration, all in UTC - between
``starts_at`` and ``ends_at`` (open-ended when ``ends_at`` is None). Expiring a silence ends it
now. Resolutions are never held back by a silence, and alerts still firing when a silence ends
are notified then (the dispatcher does both).

``create_silence`` and ``expire_silence`` are what the maintenance code calls around a job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from panel.notify.matchers import Matcher, MatcherError, matchers_from
from panel.notify.store import rows, scalar

MAX_SILENCE_DAYS = 366
MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_COMMENT = 500
SOURCES = ("user", "api", "maintenance")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SilenceError(ValueError):
    """A silence cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class Recurrence:
    weekdays: tuple[int, ...]   # Monday = 0
    start: time                 # UTC
    duration: timedelta

    @classmethod
    def from_dict(cls, raw: object, where: str = "recurrence") -> Recurrence:
        if not isinstance(raw, Mapping):
            raise SilenceError(f"{where}: must be an object with weekdays, start and duration_minutes")
        unknown = set(raw) - {"weekdays", "start", "duration_minutes"}
        if unknown:
            raise SilenceError(f"{where}.{sorted(unknown)[0]}: unknown key")
        days = raw.get("weekdays")
        if (not isinstance(days, list) or not days
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in days)):
            raise SilenceError(f"{where}.weekdays: a non-empty list of days 0-6 (Monday = 0), got {days!r}")
        start = raw.get("start")
        match = _HHMM.match(start) if isinstance(start, str) else None
        if not match:
            raise SilenceError(f"{where}.start: a UTC time as HH:MM, got {start!r}")
        minutes = raw.get("duration_minutes")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_WINDOW_MINUTES:
            raise SilenceError(f"{where}.duration_minutes: whole minutes from 1 to {MAX_WINDOW_MINUTES}, "
                               f"got {minutes!r}")
        return cls(tuple(sorted(set(days))), time(int(match[1]), int(match[2])), timedelta(minutes=minutes))

    def as_dict(self) -> dict[str, Any]:
        return {"weekdays": list(self.weekdays), "start": self.start.strftime("%H:%M"),
                "duration_minutes": int(self.duration.total_seconds() // 60)}

    def window_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The window containing ``at``, if any."""
        at = at.astimezone(UTC)
        back = self.duration.days + 1
        for days_ago in range(back + 1):
            day = at.date() - timedelta(days=days_ago)
            if day.weekday() not in self.weekdays:
                continue
            begins = datetime.combine(day, self.start, tzinfo=UTC)
            if begins <= at < begins + self.duration:
                return begins, begins + self.duration
        return None

    def next_window(self, after: datetime) -> tuple[datetime, datetime]:
        """The first window starting after ``after``."""
        after = after.astimezone(UTC)
        for days_ahead in range(8):
            day = after.date() + timedelta(days=days_ahead)
            begins = datetime.combine(day, self.start, tzinfo=UTC)
            if day.weekday() in self.weekdays and begins > after:
                return begins, begins + self.duration
        raise AssertionError("a weekly recurrence always has a window within 8 days")

    def describe(self) -> str:
        days = ", ".join(WEEKDAYS[d] for d in self.weekdays)
        minutes = int(self.duration.total_seconds() // 60)
        length = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
        return f"every {days} at {self.start.strftime('%H:%M')} UTC for {length}"


@dataclass(frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime | None
    recurrence: Recurrence | None
    comment: str
    source: str
    created_by: str
    created_at: datetime
    expired_at: datetime | None
    expired_by: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Silence:
        return cls(
            id=row["id"], matchers=tuple(matchers_from(row["matchers"])), starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            recurrence=Recurrence.from_dict(row["recurrence"]) if row["recurrence"] else None,
            comment=row["comment"], source=row["source"], created_by=row["created_by"],
            created_at=row["created_at"], expired_at=row["expired_at"], expired_by=row["expired_by"])

    def in_force(self, at: datetime) -> bool:
        if self.expired_at is not None and self.expired_at <= at:
            return False
        if at < self.starts_at or (self.ends_at is not None and at >= self.ends_at):
            return False
        return self.recurrence is None or self.recurrence.window_at(at) is not None

    def state(self, at: datetime) -> str:
        """active, pending (starts later), scheduled (recurring, between windows) or expired."""
        if (self.expired_at is not None and self.expired_at <= at) or (self.ends_at is not None and at >= self.ends_at):
            return "expired"
        if at < self.starts_at:
            return "pending"
        return "active" if self.in_force(at) else "scheduled"

    def matches(self, labels: Mapping[str, object]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def as_json(self, at: datetime) -> dict[str, Any]:
        next_window = None
        if self.recurrence is not None and self.state(at) in ("scheduled", "pending", "active"):
            begins, ends = self.recurrence.window_at(at) or self.recurrence.next_window(max(at, self.starts_at))
            next_window = {"startsAt": _iso(begins), "endsAt": _iso(ends)}
        return {
            "id": self.id, "matchers": [m.as_dict() for m in self.matchers],
            "startsAt": _iso(self.starts_at), "endsAt": _iso(self.ends_at),
            "recurrence": self.recurrence.as_dict() if self.recurrence else None,
            "window": next_window, "comment": self.comment, "source": self.source, "createdBy": self.created_by,
            "createdAt": _iso(self.created_at), "expiredAt": _iso(self.expired_at), "expiredBy": self.expired_by,
            "state": self.state(at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _aware(value: datetime | None, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise SilenceError(f"{where}: must be a date and time, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def validate(*, matchers: object, starts_at: datetime | None, ends_at: datetime | None, comment: str,
             source: str, recurrence: object = None, now: datetime | None = None):
    """Checked and normalised silence fields; SilenceError names the field and the reason."""
    now = now or datetime.now(UTC)
    try:
        parsed = matchers_from(matchers, "matchers", allow_empty=False)
    except MatcherError as exc:
        raise SilenceError(str(exc)) from None
    if all(m.matches({}) for m in parsed):
        raise SilenceError("matchers: at least one matcher must need a label value (these would silence every "
                           "alert); e.g. host=pool-1")
    starts = _aware(starts_at, "starts_at") or now
    ends = _aware(ends_at, "ends_at")
    rec = Recurrence.from_dict(recurrence) if recurrence is not None else None
    if rec is None and ends is None:
        raise SilenceError("ends_at: a one-off silence needs an end")
    if ends is not None and ends <= starts:
        raise SilenceError("ends_at: must be after starts_at")
    if ends is not None and ends <= now:
        raise SilenceError("ends_at: is in the past")
    if ends is not None and rec is None and ends - starts > timedelta(days=MAX_SILENCE_DAYS):
        raise SilenceError(f"ends_at: a one-off silence lasts at most {MAX_SILENCE_DAYS} days; use a recurring one")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise SilenceError(f"comment: text of at most {MAX_COMMENT} characters")
    if source not in SOURCES:
        raise SilenceError(f"source: one of {', '.join(SOURCES)}, got {source!r}")
    return parsed, starts, ends, rec


def create_silence(conn, *, matchers: list[dict], starts_at: datetime | None, ends_at: datetime | None,
                   created_by: str, comment: str = "", source: str = "user",
                   recurrence: dict | None = None) -> int:
    """Store a silence (one-off, or recurring with ``recurrence``) and audit it; returns its id.

    ``matchers``: ``[{"name": "host", "op": "=", "value": "pool-1"}, ...]`` (ops ``=``, ``!=``,
    ``=~``, ``!~``); ``starts_at`` None means now. Raises SilenceError for invalid input.
    """
    from panel.audit import record_event

    parsed, starts, ends, rec = validate(matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                                         comment=comment, source=source, recurrence=recurrence)
    if not created_by:
        raise SilenceError("created_by: say who creates the silence")
    with conn.transaction():
        silence_id = scalar(
            conn, "INSERT INTO silences (matchers, starts_at, ends_at, recurrence, comment, source, created_by)"
                  " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (Jsonb([m.as_dict() for m in parsed]), starts, ends, Jsonb(rec.as_dict()) if rec else None,
             comment.strip(), source, created_by))
        record_event("silence.create", "silence", str(silence_id), actor=created_by, conn=conn,
                     after={"matchers": [m.as_dict() for m in parsed], "starts_at": _iso(starts),
                            "ends_at": _iso(ends), "recurrence": rec.as_dict() if rec else None,
                            "comment": comment.strip(), "source": source})
    return silence_id


def expire_silence(conn, silence_id: int, by: str) -> bool:
    """End a silence now. True if it was live and is now expired, False if it had already ended.

    Raises SilenceError for an unknown id. What it held back and still fires is notified at the
    dispatcher's next turn.
    """
    from panel.audit import record_event

    if not 0 < silence_id < 2**63:
        raise SilenceError(f"no silence {silence_id}")
    with conn.transaction():
        found = rows(conn, "SELECT id, expired_at, ends_at FROM silences WHERE id = %s FOR UPDATE", (silence_id,))
        if not found:
            raise SilenceError(f"no silence {silence_id}")
        values = found[0]
        now = datetime.now(UTC)
        if values["expired_at"] is not None or (values["ends_at"] is not None and values["ends_at"] <= now):
            return False
        conn.execute("UPDATE silences SET expired_at = %s, expired_by = %s WHERE id = %s", (now, by, silence_id))
        record_event("silence.expire", "silence", str(silence_id), actor=by, conn=conn)
    return True


_COLUMNS = ("id, matchers, starts_at, ends_at, recurrence, comment, source, created_by, created_at, expired_at, "
            "expired_by")


def live_silences(conn, now: datetime) -> list[Silence]:
    """Silences that may be in force at ``now`` (the caller checks recurring windows with in_force)."""
    return [Silence.from_row(r) for r in rows(
        conn, f"SELECT {_COLUMNS} FROM silences WHERE (expired_at IS NULL OR expired_at > %s) AND starts_at <= %s"
              " AND (ends_at IS NULL OR ends_at > %s)", (now, now, now))]


def list_silences(conn, now: datetime, *, include_expired: bool = True, limit: int = 200) -> list[Silence]:
    """Live silences first (soonest end first), then the most recently ended."""
    live = [Silence.from_row(r) for r in rows(
        conn, f"SELECT {_COLUMNS} FROM silences WHERE (expired_at IS NULL OR expired_at > %s)"
              " AND (ends_at IS NULL OR ends_at > %s) ORDER BY ends_at NULLS LAST, id", (now, now))]
    if not include_expired:
        return live
    ended = [Silence.from_row(r) for r in rows(
        conn, f"SELECT {_COLUMNS} FROM silences WHERE (expired_at IS NOT NULL AND expired_at <= %s)"
              " OR (ends_at IS NOT NULL AND ends_at <= %s) ORDER BY coalesce(least(expired_at, ends_at), ends_at,"
              " expired_at) DESC, id DESC LIMIT %s", (now, now, limit))]
    return live + ended


def get_silence(conn, silence_id: int) -> Silence | None:
    if not 0 < silence_id < 2**63:
        return None
    found = rows(conn, f"SELECT {_COLUMNS} FROM silences WHERE id = %s", (silence_id,))
    return Silence.from_row(found[0]) if found else None
