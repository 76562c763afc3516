"""Label matchers of a rule: which label sets it watches (``mount!~"/boot.*"``, ``host=pool-1``).

Written as Prometheus and Alertmanager write them: ``name op value`` with ``=``, ``!=``, ``=~``
(regular expression, anchored: it must match the whole value) and ``!~``; the value may be quoted.
A label the observation does not have counts as the empty string. The JSON form
``{"name": ..., "op": ..., "value": ...}`` (the notifier's silences use it) is accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from panel.notify.matchers import Matcher, _compiled  # one Matcher for rules and silences

OPS = ("=", "!=", "=~", "!~")
_TEXT = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')
MAX_VALUE_LENGTH = 500


class MatcherError(ValueError):
    """The matcher cannot be used; the message says why."""


def parse_matcher(raw: object) -> Matcher:
    """A Matcher from ``'mount!~"/boot.*"'`` or ``{"name", "op", "value"}``; MatcherError otherwise."""
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"name", "op", "value"}
        if unknown:
            raise MatcherError(f"unknown key {sorted(unknown)[0]!r} (a matcher has name, op, value)")
        name, op, value = raw.get("name"), raw.get("op", "="), raw.get("value")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise MatcherError(f"name must be a label name (letters, digits, _), got {name!r}")
        if op not in OPS:
            raise MatcherError(f"op must be one of {', '.join(OPS)}, got {op!r}")
        if not isinstance(value, str):
            raise MatcherError(f"value must be a string, got {value!r}")
    elif isinstance(raw, str):
        found = _TEXT.match(raw)
        if not found:
            raise MatcherError(f"{raw!r} is not 'label op value' with op one of {', '.join(OPS)} "
                               "(e.g. mount!~\"/boot.*\")")
        name, op, value = found[1], found[2], found[3]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
    else:
        raise MatcherError(f"must be a string like 'mount=/data', got {raw!r}")
    if len(value) > MAX_VALUE_LENGTH or "\x00" in value:
        raise MatcherError(f"the value is longer than {MAX_VALUE_LENGTH} characters or holds a NUL")
    if op in ("=~", "!~"):
        try:
            _compiled(value)
        except re.error as exc:
            raise MatcherError(f"{value!r} is not a valid regular expression ({exc})") from None
    return Matcher(name, op, value)


def all_match(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, object]) -> bool:
    return all(m.matches(labels) for m in matchers)
