"""What a rule type is: its parameters (with defaults, bounds and help), what it watches, and how it
turns the data of one evaluation into observations, one per label set.

An observation says, for one label set, the value the rule judges and two things about it:
``breach`` (the firing threshold is crossed: a new alert starts) and ``held`` (the clear threshold
is not crossed yet: an open alert stays). ``breach`` implies ``held``; between the two thresholds
an open alert stays open and no new one starts (hysteresis). The state machine in
``panel.alerts.evaluator`` does the rest (pending duration, keep-firing, transitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from panel.alerts.data import EvalData
    from panel.alerts.rules import Rule

COMPONENTS = ("pool", "node", "database", "disk", "system", "container", "agent", "collector", "maintenance")
SEVERITIES = ("info", "warning", "critical")
# Which service a component's alerts concern, so that maintenance silences naming a service
# (agent.contract ACTIONS ``silences``) can match them by the ``service`` label.
SERVICES = {"pool": "miningcore", "node": "ergo_node", "database": "postgresql"}
# Keys of a rule in alerts.json that are not parameters of its type.
COMMON_KEYS = ("type", "enabled", "severity", "for", "keepFiringFor", "labels", "annotations", "matchers")


class ParamProblem(ValueError):
    """A parameter value was refused; the message is the reason."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str              # number, integer, duration, bool, choice, choices, text, metric
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None (JSON null) is a valid value: "not used"
    required: bool = False  # no default: a rule must give it
    unit: str = ""

    def check(self, value: Any) -> Any:
        """The normalised value, or ParamProblem saying why not."""
        from panel.alerts.durations import DurationError, parse_duration

        if value is None:
            if self.optional:
                return None
            raise ParamProblem("must be given" + ("" if self.required else f" (default {self.default!r})"))
        if self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ParamProblem(f"must be a number, got {value!r}")
            if self.kind == "integer" and not float(value).is_integer():
                raise ParamProblem(f"must be a whole number, got {value!r}")
            self._bounds(value)
            return int(value) if self.kind == "integer" else (int(value) if float(value).is_integer() else value)
        if self.kind == "duration":
            try:
                seconds = parse_duration(value)
            except DurationError as exc:
                raise ParamProblem(str(exc)) from None
            self._bounds(seconds)
            return seconds
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamProblem(f"must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ParamProblem(f"must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return value
        if self.kind == "choices":
            if not isinstance(value, list) or not value or any(v not in self.choices for v in value):
                raise ParamProblem(f"must be a non-empty list of {', '.join(self.choices)}; got {value!r}")
            return [c for c in self.choices if c in value]
        if self.kind in ("text", "metric"):
            if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 200:
                raise ParamProblem(f"must be a non-empty text of at most 200 characters, got {value!r}")
            if self.kind == "metric" and not _is_metric_name(value):
                raise ParamProblem(f"{value!r} is not a metric name (letters, digits and _, like "
                                   "poolwarden_disk_used_percent)")
            return value.strip()
        raise AssertionError(f"unknown parameter kind {self.kind}")

    def _bounds(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ParamProblem(f"must be at least {_plain(self.minimum)}, got {_plain(value)}")
        if self.maximum is not None and value > self.maximum:
            raise ParamProblem(f"must be at most {_plain(self.maximum)}, got {_plain(value)}")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _is_metric_name(text: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", text) is not None


@dataclass
class Observation:
    labels: dict[str, str]          # host and the specific labels (mount, pool, container...)
    value: float | None
    breach: bool
    held: bool
    severity: str | None = None     # raises (or sets) the rule's severity for this label set
    summary: str = ""
    description: str = ""


@dataclass(frozen=True)
class Graph:
    """What the alert page draws around an alert: metrics of its host, a label filter, a format."""

    names: tuple[str, ...]
    labels: str = ""       # "mount=/data"
    format: str = "decimal"


@dataclass(frozen=True)
class PreviewSeries:
    """One label set's minute values over the preview window, for a replay of the rule."""

    labels: dict[str, str]
    points: list[tuple[Any, float]]   # (bucket, value), time ordered


@dataclass
class RuleType:
    name: str
    title: str
    component: str
    unit: str                      # how the value reads: percent, bytes, seconds, count, ratio, days, hashrate...
    description: str
    params: tuple[Param, ...] = ()
    metrics: tuple[str, ...] = ()  # latest values it reads (loaded once per evaluation for all rules)
    default_severity: str = "warning"
    default_for: int = 0
    default_keep_firing: int = 0
    every_seconds: float = 0       # evaluated at most this often (0: every evaluation)
    defaults: tuple[dict[str, Any], ...] = ()   # the built-in rules of this type: {"name": ..., overrides}
    limits: str = ""               # what the type cannot judge, for the docs and the editor
    observe: Callable[[EvalData, Rule], list[Observation]] | None = None
    check: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None
    latest_for: Callable[[dict[str, Any]], set[str]] | None = None
    graph: Callable[[Rule, dict[str, str]], Graph | None] | None = None
    history: Callable[..., list[PreviewSeries] | int | None] | None = None
    judge: Callable[[float, dict[str, Any], str | None], tuple[bool, bool, str | None]] | None = None
    service: str | None = field(default=None)
    # Judged on panel-side data (the hosts table, maintenance jobs), so also for hosts that went silent.
    judges_silent_hosts: bool = False

    def __post_init__(self) -> None:
        assert self.component in COMPONENTS, self.component
        assert not {p.name for p in self.params} & set(COMMON_KEYS), self.name
        if self.service is None:
            self.service = SERVICES.get(self.component)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def latest_metrics(self, params: dict[str, Any]) -> set[str]:
        return self.latest_for(params) if self.latest_for else set(self.metrics)


TYPES: dict[str, RuleType] = {}


def register(rule_type: RuleType) -> RuleType:
    assert rule_type.name not in TYPES, rule_type.name
    TYPES[rule_type.name] = rule_type
    return rule_type


# -- thresholds -------------------------------------------------------------------------------


def rising(value: float, fire: float, clear: float | None = None) -> tuple[bool, bool]:
    """Fires at or above ``fire``; an open alert stays while the value is above ``clear``."""
    breach = value >= fire
    if clear is None or clear >= fire:
        return breach, breach
    return breach, value > clear


def falling(value: float, fire: float, clear: float | None = None) -> tuple[bool, bool]:
    """Fires below ``fire``; an open alert stays while the value is below ``clear``."""
    breach = value < fire
    if clear is None or clear <= fire:
        return breach, breach
    return breach, value < clear


def order_problem(params: dict[str, Any], low: str, high: str, *, strict: bool = False) -> list[tuple[str, str]]:
    """[(param, reason)] when params[low] is not below params[high] (both given)."""
    a, b = params.get(low), params.get(high)
    if a is None or b is None:
        return []
    if a > b or (strict and a == b):
        relation = "below" if strict else "at most"
        return [(low, f"must be {relation} {high} ({_plain(b)}), got {_plain(a)}")]
    return []


def labels_of(point: Any, *keys: str) -> dict[str, str]:
    """The host and the given labels of a series point: what identifies one alert."""
    out = {"host": point.host}
    for key in keys:
        out[key] = str(point.labels.get(key, ""))
    return out


def simple_judge(direction: str, fire_param: str, clear_param: str | None = None):
    """A ``judge`` for a value against one parameter (and an optional clear parameter)."""
    compare = rising if direction == "rising" else falling

    def judge(value: float, params: dict[str, Any], _severity: str | None) -> tuple[bool, bool, str | None]:
        clear = params.get(clear_param) if clear_param else None
        breach, held = compare(value, params[fire_param], clear)
        return breach, held, None

    return judge


def constant_judge(fires: Callable[[float], bool]):
    """A ``judge`` without parameters (a service up or down)."""

    def judge(value: float, _params: dict[str, Any], _severity: str | None) -> tuple[bool, bool, str | None]:
        result = fires(value)
        return result, result, None

    return judge
