"""The client's address (X-Forwarded-For only from trusted proxies) and the allowlist hook.

``enforce_allowlist`` is the panel's first before-request hook: a refused address gets a 403 before
any session, login or route code runs. An empty allowlist allows every address (a fresh install
must be reachable); the admin page and ``poolwarden-panel allowlist`` fill it in.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from flask import current_app, g, request

from panel.allowlist.store import load_networks
from panel.db import get_db

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str | None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address((text or "").strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[IPNetwork]) -> IPAddress | None:
    """The client as the nearest untrusted hop sees it.

    X-Forwarded-For is read from the right (the hop our peer added last): each address that is a
    trusted proxy passes the question one hop further left; the first untrusted one is the client.
    A header sent by an untrusted peer is ignored, so a client cannot choose its own address.
    """
    address = parse_address(peer)
    if address is None or not forwarded_for or not in_networks(address, trusted):
        return address
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        hop_address = parse_address(hop)
        if hop_address is None:  # garbage in the chain: stop at the last address we could trust
            return address
        address = hop_address
        if not in_networks(address, trusted):
            return address
    return address


def trusted_proxies() -> list[IPNetwork]:
    cached = current_app.extensions.get("poolwarden.trusted_proxies")
    if cached is None:
        cached = [ipaddress.ip_network(n) for n in current_app.config.get("TRUSTED_PROXIES") or []]
        current_app.extensions["poolwarden.trusted_proxies"] = cached
    return cached


def enforce_allowlist():
    """Before-request hook, registered first: sets ``g.client_ip`` and refuses addresses not allowed."""
    from panel.errors import error_response

    address = client_address(request.remote_addr, request.headers.get("X-Forwarded-For"), trusted_proxies())
    g.client_ip = str(address) if address else None
    networks = load_networks(get_db())
    if not networks:
        return None
    if address is None or not in_networks(address, networks):
        log.warning("refused %s %s from %s: not in the IP allowlist", request.method, request.path, g.client_ip)
        return error_response(f"Your address ({g.client_ip or 'unknown'}) is not in this panel's IP allowlist.", 403)
    return None
