"""alerts.json: reading and checking it, the built-in rules, and writing rules back in the same shape.

The file is the seed's shape, extended: one object per rule under ``alerts``, keyed by the rule's
name, with its type, the common settings and the type's parameters side by side::

    {"alerts": {
        "diskSpace": {"type": "disk_usage", "severity": "warning", "for": "2m",
                      "warningPercent": 80, "criticalPercent": 90, "matchers": ["mount!~\\"/boot.*\\""]},
        "noBlocksFound": {"type": "no_block", "effortPercent": 300, "hoursThreshold": 24}
    }}

A parameter left out takes its type's default. A document is taken whole or not at all: every
problem is reported with the field it concerns (``alerts.diskSpace.warningPercent``) and the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from panel.alerts.durations import DurationError, parse_duration
from panel.alerts.identity import RESERVED_LABELS
from panel.alerts.matchers import MatcherError, parse_matcher
from panel.alerts.rules import Rule
from panel.alerts.types import TYPES
from panel.alerts.types.base import COMMON_KEYS, SEVERITIES, ParamProblem

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ANNOTATION_KEYS = ("summary", "description", "runbook")
MAX_RULES = 1000
MAX_TEXT = 2000
TOP_KEYS = ("alerts", "comment")


class ConfigInvalid(ValueError):
    """The rules were refused; ``problems`` lists (field, reason), the message says it all."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "the rules"):
        self.problems = problems
        self.source = source
        shown = "; ".join(f"{field}: {reason}" for field, reason in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(f"{source} refused, previous rules stay in force: {shown}{more}")

    def as_list(self) -> list[dict[str, str]]:
        return [{"field": field, "reason": reason} for field, reason in self.problems]


def parse_document(document: Any, source: str = "the rules") -> list[Rule]:
    """The rules of an alerts.json document, or ConfigInvalid naming every problem."""
    problems: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        raise ConfigInvalid([("(document)", "must be a JSON object with an \"alerts\" object of rules")], source)
    for key in document:
        if key not in TOP_KEYS:
            problems.append((str(key), f"unknown key; the document has {', '.join(TOP_KEYS)}"))
    alerts = document.get("alerts")
    if not isinstance(alerts, Mapping):
        problems.append(("alerts", "must be an object of rules keyed by rule name"))
        raise ConfigInvalid(problems, source)
    if len(alerts) > MAX_RULES:
        problems.append(("alerts", f"holds {len(alerts)} rules; at most {MAX_RULES}"))
    rules = []
    for name, body in alerts.items():
        rule, found = parse_rule(name, body, f"alerts.{name}")
        problems += found
        if rule is not None:
            rules.append(rule)
    if problems:
        raise ConfigInvalid(problems, source)
    return rules


def parse_rule(name: Any, body: Any, where: str) -> tuple[Rule | None, list[tuple[str, str]]]:
    """One rule from its name and object; (None, problems) when it cannot be used."""
    problems: list[tuple[str, str]] = []
    if not isinstance(name, str) or not NAME.match(name):
        problems.append((where, "a rule name starts with a letter and has up to 64 letters, digits, '_', '.' or "
                                "'-'"))
    if not isinstance(body, Mapping):
        return None, problems + [(where, "must be an object with at least \"type\"")]
    type_name = body.get("type")
    if type_name not in TYPES:
        known = ", ".join(TYPES)
        return None, problems + [(f"{where}.type", f"unknown rule type {type_name!r}; the types are: {known}")]
    kind = TYPES[type_name]
    allowed = set(COMMON_KEYS) | {p.name for p in kind.params}
    for key in body:
        if key not in allowed:
            params = ", ".join(p.name for p in kind.params) or "none"
            problems.append((f"{where}.{key}", f"unknown setting for a {type_name} rule (its parameters: {params}; "
                                               f"common: {', '.join(COMMON_KEYS[1:])})"))
    params: dict[str, Any] = {}
    for param in kind.params:
        if param.name not in body:
            if param.required:
                problems.append((f"{where}.{param.name}", f"is required for a {type_name} rule ({param.help})"))
            else:
                params[param.name] = param.default
            continue
        try:
            params[param.name] = param.check(body[param.name])
        except ParamProblem as exc:
            problems.append((f"{where}.{param.name}", str(exc)))
    if kind.check and len(params) == len(kind.params):
        problems += [(f"{where}.{field}", reason) for field, reason in kind.check(params)]

    severity = body.get("severity", kind.default_severity)
    if severity not in SEVERITIES:
        problems.append((f"{where}.severity", f"must be one of {', '.join(SEVERITIES)}; got {severity!r}"))
    durations = {}
    for key, default in (("for", kind.default_for), ("keepFiringFor", kind.default_keep_firing)):
        try:
            durations[key] = parse_duration(body.get(key, default))
        except DurationError as exc:
            problems.append((f"{where}.{key}", str(exc)))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append((f"{where}.enabled", f"must be true or false, got {enabled!r}"))
    labels = _labels(body.get("labels", {}), f"{where}.labels", problems)
    annotations = _annotations(body.get("annotations", {}), f"{where}.annotations", problems)
    matchers = _matchers(body.get("matchers", []), f"{where}.matchers", problems)
    if problems:
        return None, problems
    return Rule(name=name, type=type_name, params=params, severity=severity, for_seconds=durations["for"],
                keep_firing_seconds=durations["keepFiringFor"], labels=labels, annotations=annotations,
                matchers=matchers, enabled=enabled), []


def _labels(raw: Any, where: str, problems: list[tuple[str, str]]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append((where, "must be an object of label names and text values"))
        return {}
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not LABEL_NAME.match(key):
            problems.append((f"{where}.{key}", "a label name has letters, digits and _ and does not start with a "
                                               "digit"))
        elif key in RESERVED_LABELS:
            problems.append((f"{where}.{key}", f"is set by the rule itself ({', '.join(RESERVED_LABELS)} are)"))
        elif not isinstance(value, str) or len(value) > 200 or "\x00" in value:
            problems.append((f"{where}.{key}", f"must be a text of at most 200 characters, got {value!r}"))
        else:
            out[key] = value
    return out


def _annotations(raw: Any, where: str, problems: list[tuple[str, str]]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append((where, f"must be an object with {', '.join(ANNOTATION_KEYS)}"))
        return {}
    out = {}
    for key, value in raw.items():
        if key not in ANNOTATION_KEYS:
            problems.append((f"{where}.{key}", f"unknown annotation; use {', '.join(ANNOTATION_KEYS)}"))
        elif not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
            problems.append((f"{where}.{key}", f"must be a text of at most {MAX_TEXT} characters"))
        elif value.strip():
            out[key] = value.strip()
    return out


def _matchers(raw: Any, where: str, problems: list[tuple[str, str]]) -> list[str]:
    if not isinstance(raw, list):
        problems.append((where, "must be a list like [\"mount!~/boot.*\", \"host=pool-1\"]"))
        return []
    out = []
    for index, item in enumerate(raw):
        try:
            out.append(str(parse_matcher(item)))
        except MatcherError as exc:
            problems.append((f"{where}[{index}]", str(exc)))
    return out


def export_document(rules: list[Rule]) -> dict[str, Any]:
    """Rules as alerts.json writes them (parse_document reads it back to the same rules)."""
    return {"alerts": {rule.name: rule.as_config() for rule in rules}}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def builtin_rules() -> list[Rule]:
    """The rules every type offers by default: what the panel provisions when no file is configured."""
    document: dict[str, Any] = {"alerts": {}}
    for kind in TYPES.values():
        for default in kind.defaults:
            body = {k: v for k, v in default.items() if k != "name"}
            document["alerts"][default["name"]] = {"type": kind.name, **body}
    return parse_document(document, "the built-in rules")


def read_file(path: str | Path) -> tuple[list[Rule], str]:
    """The rules of a file and its checksum; ConfigInvalid for a file that cannot be used."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigInvalid([("(file)", f"cannot be read: {exc.strerror or exc}")], source) from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigInvalid([("(file)", "is not UTF-8 text")], source) from None
    except json.JSONDecodeError as exc:
        raise ConfigInvalid([(f"(line {exc.lineno}, column {exc.colno})", f"not valid JSON: {exc.msg}")],
                            source) from None
    return parse_document(document, source), hashlib.sha256(raw).hexdigest()
