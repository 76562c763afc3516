"""A rule as the evaluator, the pages and alerts.json see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from panel.alerts.durations import format_duration
from panel.alerts.matchers import Matcher, parse_matcher
from panel.alerts.types import TYPES
from panel.alerts.types.base import RuleType


@dataclass
class Rule:
    name: str
    type: str
    params: dict[str, Any]
    severity: str
    for_seconds: int = 0
    keep_firing_seconds: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    matchers: list[str] = field(default_factory=list)
    enabled: bool = True
    id: int | None = None
    provisioned: bool = False
    updated_at: datetime | None = None
    updated_by: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def kind(self) -> RuleType:
        return TYPES[self.type]

    @cached_property
    def parsed_matchers(self) -> tuple[Matcher, ...]:
        return tuple(parse_matcher(m) for m in self.matchers)

    def as_config(self) -> dict[str, Any]:
        """This rule as alerts.json writes it (under its name)."""
        body: dict[str, Any] = {"type": self.type, "enabled": self.enabled, "severity": self.severity,
                                "for": format_duration(self.for_seconds),
                                "keepFiringFor": format_duration(self.keep_firing_seconds)}
        for param in self.kind.params:
            value = self.params.get(param.name, param.default)
            body[param.name] = format_duration(value) if param.kind == "duration" and value is not None else value
        if self.matchers:
            body["matchers"] = list(self.matchers)
        if self.labels:
            body["labels"] = dict(self.labels)
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        return body

    def definition(self) -> dict[str, Any]:
        """What identifies the rule's behaviour: equal definitions need no update."""
        return {"type": self.type, "params": self.params, "severity": self.severity, "for": self.for_seconds,
                "keep": self.keep_firing_seconds, "labels": self.labels, "annotations": self.annotations,
                "matchers": self.matchers, "enabled": self.enabled}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Rule:
        return cls(name=row["name"], type=row["type"], params=row["params"], severity=row["severity"],
                   for_seconds=row["for_seconds"], keep_firing_seconds=row["keep_firing_seconds"],
                   labels=row["labels"], annotations=row["annotations"], matchers=row["matchers"],
                   enabled=row["enabled"], id=row["id"], provisioned=row["provisioned"],
                   updated_at=row["updated_at"], updated_by=row["updated_by"], last_error=row["last_error"],
                   last_error_at=row["last_error_at"])
