"""Miningcore/.NET number and date formatting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from poolsim.engine import format_quantity
from poolsim.jsonfmt import LiveTime, format_datetime, miningcore_dumps, node_dumps


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("6.011325000000"), "6.011325000000"),
    (Decimal("0E-12"), "0.000000000000"),
    (Decimal("-1.500000000000"), "-1.500000000000"),
    (1.0, "1"),
    (0.5, "0.5"),
    (20036264721749.332, "20036264721749.332"),
    (2404351766609920.0, "2404351766609920"),
    (1892733410221985337219, "1892733410221985337219"),
    (True, "true"),
])
def test_numbers(value, text):
    assert node_dumps(value) == text


def test_dates():
    dt = datetime(2025, 6, 9, 22, 47, 13, 902311, tzinfo=UTC)
    assert format_datetime(dt) == "2025-06-09T22:47:13.902311Z"
    assert format_datetime(dt.replace(microsecond=0)) == "2025-06-09T22:47:13Z"
    assert format_datetime(dt.replace(microsecond=500000)) == "2025-06-09T22:47:13.5Z"
    assert node_dumps(LiveTime(dt, 2)) == '"2025-06-09T22:47:13.9023112Z"'


def test_miningcore_omits_nulls_and_indents():
    assert miningcore_dumps({"a": None, "b": [1], "c": {}}) == '{\n  "b": [\n    1\n  ],\n  "c": {}\n}'
    assert node_dumps({"a": None}) == '{"a":null}'


def test_format_quantity():
    assert format_quantity(999) == "999"
    assert format_quantity(1234) == "1.23K"
    assert format_quantity(2_500_000) == "2.50M"
