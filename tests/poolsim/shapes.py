"""Recursive comparison of a JSON answer with a reference fixture: same keys, same JSON types."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "fixtures"
if not FIXTURES.exists():  # the repo may live elsewhere: fall back to the shared checkout
    FIXTURES = Path("/work/shared/reference/fixtures")
START = 1749565865  # 2025-06-10T14:31:05Z, the fixtures' "now"


def load_fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


MAP_KEYS = {"ports", "workers", "assets"}  # dictionaries keyed by data (port numbers, worker names)
NULLABLE_ANYWHERE = {"maxDiff", "maxDelta"}  # VarDiffConfig's nullable fields (one per port in the fixture)


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def merge_templates(items: list):
    """One template from the fixture's items; keys missing from some items become optional."""
    if not items or not all(isinstance(i, dict) for i in items):
        return (items[0] if items else None), set()
    template: dict = {}
    for item in items:
        for key, value in item.items():
            if isinstance(value, dict) and isinstance(template.get(key), dict):
                template[key] = {**value, **template[key]}
            else:
                template.setdefault(key, value)
    optional = {k for k in template if not all(k in i for i in items)}
    return template, optional


def check_shape(actual, expected, path: str = "$", optional: frozenset = frozenset(), problems=None) -> list:
    problems = [] if problems is None else problems
    if expected is None:
        return problems
    if json_type(actual) != json_type(expected):
        problems.append(f"{path}: expected {json_type(expected)}, got {json_type(actual)} ({actual!r:.60})")
        return problems
    if isinstance(expected, dict):
        for key, value in expected.items():
            sub = f"{path}.{key}"
            if key not in actual:
                if key not in optional and key not in NULLABLE_ANYWHERE:
                    problems.append(f"{sub}: missing")
                continue
            if key in MAP_KEYS and isinstance(value, dict):
                template, opt = merge_templates(list(value.values()))
                for k, v in actual[key].items():
                    check_shape(v, template, f"{sub}[{k}]", frozenset(opt), problems)
            else:
                check_shape(actual[key], value, sub, frozenset(), problems)
    elif isinstance(expected, list):
        template, opt = merge_templates(expected)
        for i, item in enumerate(actual):
            check_shape(item, template, f"{path}[{i}]", frozenset(opt), problems)
    return problems


def assert_shape(actual, expected, optional=frozenset()):
    problems = check_shape(actual, expected, optional=frozenset(optional))
    assert not problems, "\n".join(problems)
