"""JSON the way Miningcore (System.Text.Json) and the Ergo node (circe) print it.

Python's ``json`` cannot print ``6.011325000000`` (a decimal(28,12) value keeps its 12 decimals
in Miningcore's output), and it prints ``1.0`` where .NET prints ``1``. This small writer does:

- ``Decimal`` as written by PostgreSQL (scale kept: ``0.000000000000``);
- integral floats without ``.0`` (``"difficulty": 1``), others with the shortest round-trip;
- big Python ints as plain JSON numbers (the node's ``difficulty``, ``headersScore``);
- ``datetime`` as ISO-8601 UTC with ``Z`` and the fraction trimmed like .NET (7 digits max);
- ``None`` values dropped from objects when ``omit_none`` (Miningcore), kept otherwise (node).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal


class LiveTime:
    """A live .NET DateTime (7 fractional digits, e.g. ``lastNetworkBlockTime``)."""

    __slots__ = ("dt", "ticks_digit")

    def __init__(self, dt: datetime, ticks_digit: int):
        self.dt = dt
        self.ticks_digit = ticks_digit % 10


def format_datetime(dt: datetime, extra_digit: int = 0) -> str:
    """ISO-8601 in UTC with ``Z``; fraction = up to 7 digits, trailing zeros trimmed (.NET "O" style)."""
    dt = dt.astimezone(UTC)
    frac = f"{dt.microsecond:06d}{extra_digit}".rstrip("0")
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def format_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        # System.Text.Json refuses these; Miningcore never emits them. Keep the output valid JSON.
        return "0"
    if value == int(value) and abs(value) < 1e17:
        return str(int(value))
    return repr(value)


def format_decimal(value: Decimal) -> str:
    text = format(value, "f")
    return "-" + text[1:] if text.startswith("-") else text


def _encode(obj, omit_none: bool, indent: int | None, level: int) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return format_float(obj)
    if isinstance(obj, Decimal):
        return format_decimal(obj)
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, LiveTime):
        return json.dumps(format_datetime(obj.dt, obj.ticks_digit))
    if isinstance(obj, datetime):
        return json.dumps(format_datetime(obj))
    if isinstance(obj, dict):
        items = [(k, v) for k, v in obj.items() if not (omit_none and v is None)]
        if not items:
            return "{}"
        if indent is None:
            return "{" + ",".join(
                json.dumps(str(k), ensure_ascii=False) + ":" + _encode(v, omit_none, indent, level + 1)
                for k, v in items) + "}"
        pad = " " * (indent * (level + 1))
        inner = ",\n".join(
            pad + json.dumps(str(k), ensure_ascii=False) + ": " + _encode(v, omit_none, indent, level + 1)
            for k, v in items)
        return "{\n" + inner + "\n" + " " * (indent * level) + "}"
    if isinstance(obj, list | tuple):
        if not obj:
            return "[]"
        if indent is None:
            return "[" + ",".join(_encode(v, omit_none, indent, level + 1) for v in obj) + "]"
        pad = " " * (indent * (level + 1))
        inner = ",\n".join(pad + _encode(v, omit_none, indent, level + 1) for v in obj)
        return "[\n" + inner + "\n" + " " * (indent * level) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def miningcore_dumps(obj) -> str:
    """Miningcore API style: indented, camelCase given by the caller, nulls omitted."""
    return _encode(obj, omit_none=True, indent=2, level=0)


def node_dumps(obj) -> str:
    """Ergo node style: compact, nulls kept (the caller drops the keys the node drops)."""
    return _encode(obj, omit_none=False, indent=None, level=0)
