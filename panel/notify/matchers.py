"""Label matchers as Alertmanager has them: ``name = value``, ``!=``, ``=~`` (regex), ``!~``.

A regex must match the whole label value (it is anchored), and a label an alert does not have
counts as the empty string, so ``pool=""`` matches alerts without a pool label. Routes and
silences both use these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

OPS = ("=", "!=", "=~", "!~")
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE_LENGTH = 500
# "name op value" as typed in a form: the value may be quoted; ops longest first.
_LINE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


class MatcherError(ValueError):
    """A matcher is not valid; the message says which part and why."""


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, object]) -> bool:
        actual = labels.get(self.name)
        text = "" if actual is None else str(actual)
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        found = _compiled(self.value).fullmatch(text) is not None
        return found if self.op == "=~" else not found

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matcher_from(raw: object, where: str = "matcher") -> Matcher:
    """A Matcher from ``{"name", "op", "value"}``; MatcherError naming ``where`` otherwise."""
    if not isinstance(raw, Mapping):
        raise MatcherError(f"{where}: must be an object with name, op and value")
    unknown = set(raw) - {"name", "op", "value"}
    if unknown:
        raise MatcherError(f"{where}.{sorted(unknown)[0]}: unknown key (a matcher has name, op, value)")
    name, op, value = raw.get("name"), raw.get("op", "="), raw.get("value")
    if not isinstance(name, str) or not LABEL_NAME.match(name):
        raise MatcherError(f"{where}.name: must be a label name (letters, digits, _; not starting with a digit), "
                           f"got {name!r}")
    if op not in OPS:
        raise MatcherError(f"{where}.op: must be one of {', '.join(OPS)}, got {op!r}")
    if not isinstance(value, str):
        raise MatcherError(f"{where}.value: must be a string, got {value!r}")
    if len(value) > MAX_VALUE_LENGTH:
        raise MatcherError(f"{where}.value: longer than {MAX_VALUE_LENGTH} characters")
    if "\x00" in value:
        raise MatcherError(f"{where}.value: contains a NUL character")
    if op in ("=~", "!~"):
        try:
            _compiled(value)
        except re.error as exc:
            raise MatcherError(f"{where}.value: not a valid regular expression ({exc})") from None
    return Matcher(name, op, value)


def matchers_from(raw: object, where: str = "matchers", *, allow_empty: bool = True) -> list[Matcher]:
    if not isinstance(raw, list):
        raise MatcherError(f"{where}: must be a list of matchers")
    if not raw and not allow_empty:
        raise MatcherError(f"{where}: needs at least one matcher")
    return [matcher_from(item, f"{where}[{n}]") for n, item in enumerate(raw)]


def parse_lines(text: str, *, allow_empty: bool = False) -> list[Matcher]:
    """Matchers typed one per line (or separated by commas), e.g. ``host=pool-1`` or ``alertname=~"Disk.*"``."""
    matchers = []
    items = [part for line in text.splitlines() for part in _split_commas(line)]
    for n, item in enumerate(items, 1):
        if not item.strip():
            continue
        match = _LINE.match(item)
        if not match:
            raise MatcherError(f"matcher {n} ({item.strip()!r}): write it as name=value, name!=value, "
                               "name=~regex or name!~regex")
        value = match[3]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        matchers.append(matcher_from({"name": match[1], "op": match[2], "value": value}, f"matcher {n}"))
    if not matchers and not allow_empty:
        raise MatcherError("give at least one matcher, e.g. host=pool-1")
    return matchers


def _split_commas(line: str) -> list[str]:
    """Split on commas outside quotes (a regex like ``a{1,3}`` keeps its comma when quoted)."""
    parts, current, quote = [], [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, object]) -> bool:
    return all(m.matches(labels) for m in matchers)


def as_text(matchers: Iterable[Matcher | Mapping[str, str]]) -> str:
    out = []
    for m in matchers:
        m = m if isinstance(m, Matcher) else Matcher(m["name"], m["op"], m["value"])
        out.append(str(m))
    return ", ".join(out)
