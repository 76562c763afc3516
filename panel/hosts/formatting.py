"""Human units for the overview. ``static/panel.js`` formats refreshed numbers the same way."""

from __future__ import annotations

from flask import Blueprint

DASH = "—"


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
HASHRATE_UNITS = ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s")
SI_UNITS = ("", "k", "M", "G", "T", "P", "E")


def _scaled(value: float, units: tuple[str, ...], base: int) -> tuple[float, str]:
    index = 0
    while abs(value) >= base and index < len(units) - 1:
        value /= base
        index += 1
    return value, units[index]


def human_bytes(value: float | None) -> str:
    """Binary units, as ``df -h`` counts: 1536 -> "1.5 KiB"."""
    if value is None:
        return DASH
    scaled, unit = _scaled(value, BYTE_UNITS, 1024)
    return f"{scaled:.0f} B" if unit == "B" else f"{scaled:.1f} {unit}"


def human_hashrate(value: float | None) -> str:
    """Decimal units: 1.25e9 -> "1.25 GH/s"."""
    if value is None:
        return DASH
    scaled, unit = _scaled(value, HASHRATE_UNITS, 1000)
    return f"{scaled:.0f} H/s" if unit == "H/s" else f"{scaled:.2f} {unit}"


def human_si(value: float | None) -> str:
    """Large plain numbers (difficulty): 1.5e15 -> "1.50 P"."""
    if value is None:
        return DASH
    scaled, unit = _scaled(value, SI_UNITS, 1000)
    return f"{scaled:.0f}" if unit == "" else f"{scaled:.2f} {unit}"


def human_percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} %"


def human_count(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def human_decimal(value: float | None) -> str:
    """Load averages and other small fractional numbers: two decimals."""
    return DASH if value is None else f"{value:.2f}"


def human_age(seconds: float | None) -> str:
    """Elapsed time, coarse: "4 s ago", "3 min ago", "2 h ago", "5 d ago"."""
    if seconds is None:
        return "never"
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def human_rate(value: float | None) -> str:
    """Bytes per second: 1536 -> "1.5 KiB/s"."""
    return DASH if value is None else human_bytes(value) + "/s"


def human_ratio(value: float | None) -> str:
    """A ratio shown as a percentage: 0.873 -> "87.3 %" (Miningcore's effort)."""
    return DASH if value is None else f"{value * 100:.1f} %"


def human_seconds(value: float | None) -> str:
    """A duration: "42 s", "15 min", "3.5 h", "2.0 d"."""
    if value is None:
        return DASH
    s = abs(value)
    if s < 120:
        return f"{value:.1f} s" if s < 10 else f"{value:.0f} s"
    if s < 7200:
        return f"{value / 60:.0f} min"
    if s < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


FILTERS = {
    "rate": human_rate,
    "ratio": human_ratio,
    "seconds": human_seconds,
    "bytes": human_bytes,
    "hashrate": human_hashrate,
    "si": human_si,
    "percent": human_percent,
    "count": human_count,
    "age": human_age,
    "decimal": human_decimal,
    "text": lambda value: DASH if value is None else str(value),
}


def formatted(value, kind: str) -> str:
    """``{{ fmt(value, "bytes") }}``: the template side of ``data-format`` in panel.js."""
    return FILTERS[kind](value)


def datetime_utc(value: float | str | None) -> str:
    """Unix seconds (or ISO text) as "2026-11-27 14:03 UTC"."""
    from datetime import UTC, datetime

    if value is None or value == "":
        return DASH
    if isinstance(value, str):
        return value.replace("T", " ")[:16] + " UTC"
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M UTC")


def register_filters(bp: Blueprint) -> None:
    bp.add_app_template_global(formatted, "fmt")
    bp.add_app_template_filter(datetime_utc, "datetime_utc")
