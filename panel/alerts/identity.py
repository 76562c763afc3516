"""An alert's labels and fingerprint: what makes "one alert per rule and label set".

Every alert carries ``alertname`` (the rule's name), ``rule_type``, ``severity``, ``host`` and
``component`` (pool, node, database, disk, system, container, agent, collector, maintenance), a
``service`` where the component is one (miningcore, ergo_node, postgresql: maintenance silences name
services), the labels specific to what it watches (mount, pool, container, collector, table...)
and the rule's extra labels. The fingerprint hashes all of them but ``severity``, so an alert that
goes from warning to critical stays the same alert.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from panel.alerts.rules import Rule

RESERVED_LABELS = ("alertname", "rule_type", "severity", "host")


def alert_labels(rule: Rule, specific: dict[str, str]) -> dict[str, str]:
    """Every label of the alert but severity (the evaluator adds it)."""
    kind = rule.kind
    labels = {"alertname": rule.name, "rule_type": rule.type, "component": kind.component}
    if kind.service:
        labels["service"] = kind.service
    labels.update(rule.labels)
    labels.update(specific)
    return labels


def fingerprint(labels: dict[str, str]) -> str:
    identity = {k: v for k, v in labels.items() if k != "severity"}
    return hashlib.blake2b(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode(),
                           digest_size=12).hexdigest()
