"""Turning a stream entry into rows the store can write, or a clear reason why not.

This is the hot path of ingest (every sample of every agent passes through it), so it reads the
JSON straight into the columns the store writes, with as little per-sample Python as it can: JSON
objects are decoded as tuples of pairs (labels are then hashable series keys as they stand), the
samples are transposed into columns, and each check runs over a whole column in C (``map``,
``set``, ``max``); only a batch that fails a fast check takes the per-sample path, which finds
what is wrong or drops the non-finite values. Sample times are integer microseconds, what
PostgreSQL stores.

It accepts what ``Batch.from_fields`` / ``Sample.from_wire`` write and refuses, with a reason,
whatever PostgreSQL would refuse later (NUL characters, unencodable text, non-finite numbers in
event data), so that one bad entry does not fail the transaction the engine shares between all
the entries of a read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.contract import CONTRACT_VERSION, Event

MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 200
# Timestamps outside this window are a broken agent clock or a corrupt payload, not data.
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST_TS = datetime(2200, 1, 1, tzinfo=UTC).timestamp()
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A series as the agent named it: (metric name, label pairs in the agent's order). Label values are
# str, or (rarely) other JSON values the store turns into str; hashable either way.
SeriesSig = tuple[str, tuple[tuple[str, Any], ...]]

_DECODER = json.JSONDecoder(object_pairs_hook=tuple)


class MalformedEntry(ValueError):
    """The entry cannot be ingested as it is; retrying will not help."""


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    host: str
    stream_id: str
    batch_id: str
    ts: datetime
    agent_version: str
    sample_count: int  # as sent, non-finite values included
    # The samples to store as columns (non-finite values dropped): series, value, and the time in
    # unix microseconds, or ``times`` None when every sample is at the batch's ts (the usual case).
    series: list[SeriesSig]
    values: list[float]
    times: list[int] | None
    ts_us: int
    oldest_us: int  # the oldest sample time (the batch's ts when there are none)
    # (event_id, kind, ts, data)
    events: list[tuple[str, str, datetime, dict[str, Any]]]

    def rows(self) -> list[tuple[SeriesSig, int, float]]:
        """(series, unix microseconds, value) per sample."""
        times = self.times if self.times is not None else [self.ts_us] * len(self.values)
        return list(zip(self.series, times, self.values, strict=True))


def unix_us(value: Any, what: str) -> int:
    """A unix time in seconds (JSON number) as integer microseconds, if it is plausible."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        raise MalformedEntry(f"{what} {value!r:.40} is not a number") from None
    if not EARLIEST_TS <= seconds < LATEST_TS:  # also false for NaN
        raise MalformedEntry(f"{what} {value!r:.40} is not a plausible unix time")
    return round(seconds * 1_000_000)


def datetime_from_us(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


def parse_entry(host: str, stream_id: str, fields: dict[Any, Any]) -> IncomingBatch:
    """Validate one stream entry. The host comes from the stream key, never from the payload."""
    raw = fields.get("batch", fields.get(b"batch"))
    if raw is None:
        raise MalformedEntry("unreadable batch: stream entry has no 'batch' field")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        body = _DECODER.decode(text)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedEntry(f"unreadable batch: {type(exc).__name__}: {exc}") from None
    if type(body) is not tuple:
        raise MalformedEntry(f"unreadable batch: a JSON object was expected, got {type(body).__name__}")
    body = dict(body)
    if body.get("v") != CONTRACT_VERSION:
        raise MalformedEntry(f"unreadable batch: unsupported batch version {body.get('v')!r:.40}")
    batch_id = _identifier(body.get("id"), "batch id")
    batch_us = unix_us(body.get("ts"), "batch ts")
    agent_version = body.get("agent", "")
    if not isinstance(agent_version, str):
        raise MalformedEntry("agent version must be a string")
    raw_samples, raw_events = body.get("samples", []), body.get("events", [])
    if not isinstance(raw_samples, list) or not isinstance(raw_events, list):
        raise MalformedEntry("samples and events must be lists")
    series, values, times, oldest_us = _samples(raw_samples, batch_us)
    events = [_event(item) for item in raw_events]
    # JSON from the agent is ASCII (json.dumps escapes the rest), so text PostgreSQL cannot hold
    # (NUL, lone surrogates) can only come in as a \u escape: look at every string only then.
    if "\\u" in text:
        _check_text(batch_id, "batch id")
        _check_text(agent_version, "agent version")
        for name, labels in series:
            _check_text(name, "metric name")
            for key, value in labels:
                _check_text(key, f"label of {name}")
                _check_text(value, f"label {key} of {name}")
    return IncomingBatch(
        host=host,
        stream_id=stream_id,
        batch_id=batch_id,
        ts=datetime_from_us(batch_us),
        agent_version=agent_version[:MAX_NAME_LENGTH],
        sample_count=len(raw_samples),
        series=series,
        values=values,
        times=times,
        ts_us=batch_us,
        oldest_us=oldest_us,
        events=events,
    )


def _samples(raw_samples: list[Any], batch_us: int) -> tuple[list[SeriesSig], list[float], list[int] | None, int]:
    """Each ``[name, labels, value, ts]`` into columns: (series, values, times or None, oldest time)."""
    if not raw_samples:
        return [], [], None, batch_us
    try:
        names, labels, values, times = zip(*raw_samples, strict=True)
        values = list(map(float, values))
    except (TypeError, ValueError, OverflowError):
        return _samples_one_by_one(raw_samples, batch_us)
    if (set(map(type, names)) != {str} or not 0 < min(map(len, names)) <= max(map(len, names)) <= MAX_ID_LENGTH
            or set(map(type, labels)) != {tuple} or not all(map(math.isfinite, values)) or any(times)):
        return _samples_one_by_one(raw_samples, batch_us)  # something to refuse, drop, or a sample's own ts
    series = list(zip(names, labels, strict=True))
    try:
        hash(tuple(labels))
    except TypeError:  # a label value that is a list: keep it as text, like str() does
        return _samples_one_by_one(raw_samples, batch_us)
    return series, values, None, batch_us


def _samples_one_by_one(raw_samples: list[Any], batch_us: int,
                        ) -> tuple[list[SeriesSig], list[float], list[int] | None, int]:
    """The slow path: find what is wrong with a sample, drop NaN/inf values, read samples' own ts."""
    series, values, times = [], [], []
    own_ts = False
    for item in raw_samples:
        try:
            name, labels, value, ts = item
            value = float(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedEntry(f"sample {_show(item)} is not [name, labels, value, ts]: {exc}") from None
        if type(name) is not str or not 0 < len(name) <= MAX_ID_LENGTH:
            raise MalformedEntry(f"metric name must be 1-{MAX_ID_LENGTH} characters, got {_show(name)}")
        if type(labels) is not tuple:
            if labels:
                raise MalformedEntry(f"labels of {name} are not an object")
            labels = ()
        try:
            hash(labels)
        except TypeError:
            labels = tuple((k, label_text(v)) for k, v in labels)
        if not math.isfinite(value):
            continue  # NaN/inf means "no value this time"; nothing to store
        if ts:
            own_ts = True
            ts = unix_us(ts, f"ts of {name}")
        series.append((name, labels))
        values.append(value)
        times.append(ts or batch_us)
    return series, values, times if own_ts else None, min(times, default=batch_us)


def _event(item: Any) -> tuple[str, str, datetime, dict[str, Any]]:
    if type(item) is not tuple:
        raise MalformedEntry(f"event {_show(item)} is not an object")
    try:
        event = Event.from_wire(_plain(item))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise MalformedEntry(f"event {_show(item)} is unreadable: {type(exc).__name__}: {exc}") from None
    event_id, kind = _identifier(event.id, "event id"), _identifier(event.kind, "event kind")
    _check_text(event_id, "event id")
    _check_text(kind, "event kind")
    _check_json(event.data, f"data of event {event_id}")
    return event_id, kind, datetime_from_us(unix_us(event.ts, "event ts")), event.data


def label_text(value: Any) -> str:
    """A label value as stored: text as it is, anything else as ``str()`` of it (numbers, true)."""
    return value if isinstance(value, str) else str(_plain(value))


def _plain(value: Any) -> Any:
    """JSON as decoded here (objects as tuples of pairs) back to dicts and lists."""
    if type(value) is tuple:
        return {k: _plain(v) for k, v in value}
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


def _show(value: Any) -> str:
    return repr(_plain(value))[:80]


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise MalformedEntry(f"{what} must be 1-{MAX_ID_LENGTH} characters, got {_show(value)[:40]}")
    return value


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise MalformedEntry(f"{what} contains a NUL character, which PostgreSQL cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedEntry(f"{what} is not valid Unicode (a lone surrogate)") from None


def _check_json(value: Any, what: str, depth: int = 0) -> None:
    """Event data goes into a jsonb column: no NUL, no lone surrogates, no NaN or Infinity."""
    if depth > 100:
        raise MalformedEntry(f"{what} is nested too deeply")
    if isinstance(value, str):
        _check_text(value, what)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedEntry(f"{what} holds {value}, which JSON cannot store")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, what)
            _check_json(item, what, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, what, depth + 1)
