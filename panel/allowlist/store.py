"""The allowlist in PostgreSQL, and parsing the text an admin types (one CIDR per line, ``# note``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    note: str = ""

    def line(self) -> str:
        return f"{self.network}  # {self.note}" if self.note else str(self.network)


def load_networks(conn) -> list:
    return [row["network"] for row in conn.execute("SELECT network FROM ip_allowlist")]


def load_entries(conn) -> list[Entry]:
    rows = conn.execute("SELECT network, note FROM ip_allowlist ORDER BY family(network), network").fetchall()
    return [Entry(row["network"], row["note"]) for row in rows]


def parse_entries(text: str) -> tuple[list[Entry], list[str]]:
    """Entries and the problems found, line by line ("line 3: 10.0.0.300/8 is not ...")."""
    entries: dict = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        value, _, note = raw.partition("#")
        value = value.strip()
        if not value:
            continue
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            problems.append(f"line {number}: {value!r} is not an IPv4/IPv6 address or CIDR (e.g. 192.0.2.0/24)")
            continue
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
            problems.append(f"line {number}: write {value!r} as an IPv4 network")
            continue
        entries.setdefault(network, Entry(network, note.strip()[:200]))
    return list(entries.values()), problems


def replace_entries(conn, entries: list[Entry], by: str) -> None:
    """Store exactly ``entries`` (in one transaction: the hook never sees a half-saved list)."""
    with conn.transaction():
        conn.execute("DELETE FROM ip_allowlist")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ip_allowlist (network, note, created_by) VALUES (%s, %s, %s)",
                            [(str(e.network), e.note, by) for e in entries])
