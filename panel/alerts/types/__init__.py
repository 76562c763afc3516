"""The built-in rule types, registered by their modules; ``TYPES`` lists them by component (pool first,
the generic threshold last), the order of the docs, the rules page and the built-in rules."""

from panel.alerts.types import agent, database, disk, generic, node, pool, system  # noqa: F401 - registers
from panel.alerts.types.base import COMPONENTS, TYPES


def _ordered() -> None:
    ranked = sorted(TYPES.values(), key=lambda t: (t.name == "threshold", COMPONENTS.index(t.component)))
    TYPES.clear()
    TYPES.update((t.name, t) for t in ranked)


_ordered()

__all__ = ["TYPES"]
