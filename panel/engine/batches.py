"""Turning a stream entry into rows the store can write, or a clear reason why not."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.contract import Batch

MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 200
# Timestamps outside this window are a broken agent clock or a corrupt payload, not data.
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST_TS = datetime(2200, 1, 1, tzinfo=UTC).timestamp()


class MalformedEntry(ValueError):
    """The entry cannot be ingested as it is; retrying will not help."""


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    host: str
    stream_id: str
    batch_id: str
    ts: datetime
    agent_version: str
    sample_count: int
    # (name, labels, ts, value), non-finite values already dropped
    samples: list[tuple[str, dict[str, str], datetime, float]]
    # (event_id, kind, ts, data)
    events: list[tuple[str, str, datetime, dict[str, Any]]]


def parse_entry(host: str, stream_id: str, fields: dict[Any, Any]) -> IncomingBatch:
    """Validate one stream entry. The host comes from the stream key, never from the payload."""
    try:
        batch = Batch.from_fields(fields)
    except MalformedEntry:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedEntry(f"unreadable batch: {type(exc).__name__}: {exc}") from exc
    batch_id = _identifier(batch.id, "batch id")
    batch_ts = _timestamp(batch.ts, "batch ts")
    samples = []
    for sample in batch.samples:
        name = _identifier(sample.name, "metric name")
        if not isinstance(sample.labels, dict):
            raise MalformedEntry(f"labels of {name} are not an object")
        labels = {str(k): str(v) for k, v in sample.labels.items()}
        if not math.isfinite(sample.value):
            continue  # NaN/inf means "no value this time"; nothing to store
        ts = _timestamp(sample.ts, f"ts of {name}") if sample.ts else batch_ts
        samples.append((name, labels, ts, sample.value))
    events = [
        (_identifier(e.id, "event id"), _identifier(e.kind, "event kind"), _timestamp(e.ts, "event ts"), e.data)
        for e in batch.events
    ]
    return IncomingBatch(
        host=host,
        stream_id=stream_id,
        batch_id=batch_id,
        ts=batch_ts,
        agent_version=batch.agent_version[:MAX_NAME_LENGTH],
        sample_count=len(batch.samples),
        samples=samples,
        events=events,
    )


def _identifier(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise MalformedEntry(f"{what} must be 1-{MAX_ID_LENGTH} characters, got {value[:40]!r}")
    return value


def _timestamp(value: float, what: str) -> datetime:
    if not (math.isfinite(value) and EARLIEST_TS <= value < LATEST_TS):
        raise MalformedEntry(f"{what} {value!r} is not a plausible unix time")
    return datetime.fromtimestamp(value, UTC)
