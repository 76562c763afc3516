"""Durations as alerts.json writes them: ``"90s"``, ``"5m"``, ``"2h"``, ``"7d"``, ``"1h30m"`` or seconds."""

from __future__ import annotations

import math
import re

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
MAX_SECONDS = 400 * 86400


class DurationError(ValueError):
    """Not a duration; the message shows the accepted forms."""


def parse_duration(value: object) -> int:
    """Whole seconds from a number of seconds or a text like "1h30m"."""
    if isinstance(value, bool):
        raise DurationError(f"must be a duration like \"5m\" or a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise DurationError(f"must be a duration of 0 seconds or more, got {value!r}")
        seconds = round(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text in ("0", ""):
            if text == "":
                raise DurationError("must be a duration like \"5m\", \"2h\" or \"90s\", got an empty text")
            return 0
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise DurationError(f"must be a duration like \"30s\", \"5m\", \"2h\", \"7d\" or \"1h30m\", got {value!r}")
        seconds = round(sum(float(n) * UNITS[u] for n, u in parts))
    else:
        raise DurationError(f"must be a duration like \"5m\" or a number of seconds, got {value!r}")
    if seconds > MAX_SECONDS:
        raise DurationError(f"must be at most 400 days, got {value!r}")
    return seconds


def format_duration(seconds: int | float | None) -> str:
    """The shortest exact text: 300 -> "5m", 5400 -> "1h30m", 0 -> "0s"."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in UNITS.items():
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            out.append(f"{count}{unit}")
    return "".join(out)
