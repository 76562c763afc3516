"""Dependency suppression (Alertmanager's inhibition): an alert that explains others quiets them.

* ``agent_silent`` firing on host H: every other alert of H (the agent cannot report, so what it
  reported last is stale).
* ``node_down`` firing on H: the other alerts of component ``node`` on H (sync lag, no peers...).
* ``pool_down`` firing for pool P on H: the other alerts of component ``pool`` for P on H.

Only firing alerts suppress, and only firing alerts are suppressed: a resolution is never held
back. The dispatcher calls ``suppressed`` once per turn with every firing alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class _Alert(Protocol):
    fingerprint: str
    labels: Mapping[str, Any]


def suppressed(firing: Iterable[_Alert]) -> dict[str, str]:
    """``{fingerprint of a suppressed alert: why}`` among ``firing``."""
    firing = list(firing)
    agent_silent: dict[str, str] = {}
    node_down: dict[str, str] = {}
    pool_down: dict[tuple[str, str], str] = {}
    for alert in firing:
        labels = alert.labels
        host = labels.get("host")
        if not host:
            continue
        kind = labels.get("rule_type")
        if kind == "agent_silent":
            agent_silent.setdefault(host, alert.fingerprint)
        elif kind == "node_down":
            node_down.setdefault(host, alert.fingerprint)
        elif kind == "pool_down" and labels.get("pool"):
            pool_down.setdefault((host, labels["pool"]), alert.fingerprint)
    out: dict[str, str] = {}
    if not (agent_silent or node_down or pool_down):
        return out
    for alert in firing:
        labels = alert.labels
        host = labels.get("host")
        if not host:
            continue
        source = agent_silent.get(host)
        if source and source != alert.fingerprint:
            out[alert.fingerprint] = f"agent of {host} is silent"
            continue
        component = labels.get("component")
        source = node_down.get(host)
        if component == "node" and source and source != alert.fingerprint:
            out[alert.fingerprint] = f"node on {host} is down"
            continue
        source = pool_down.get((host, labels.get("pool") or ""))
        if component == "pool" and source and source != alert.fingerprint:
            out[alert.fingerprint] = f"pool {labels.get('pool')} on {host} is down"
    return out
