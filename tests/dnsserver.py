"""A real DNS server on loopback for tests (dnslib's), answering the records a test sets.

Use the `dns_server` fixture: it starts a server on a free UDP port, points
TENANTRY_DNS_NAMESERVERS (settings.DNS_NAMESERVERS) at it, and empties its records for each
test. `dns_server.set(name, "CNAME" | "TXT" | "A", value)` adds a record; `remove(name)` drops
the name's records. A name with no record is NXDOMAIN; a name with records of other types
answers with no record of the type asked (NoAnswer).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSServer

RDATA = {"CNAME": CNAME, "TXT": TXT, "A": A}


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, str]]] = {}
        self.lock = threading.Lock()

    def set(self, name: str, kind: str, value: str) -> None:
        with self.lock:
            self.records.setdefault(name.lower().rstrip("."), []).append((kind, value))

    def remove(self, name: str) -> None:
        with self.lock:
            self.records.pop(name.lower().rstrip("."), None)

    def clear(self) -> None:
        with self.lock:
            self.records.clear()

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        asked = QTYPE[request.q.qtype]
        with self.lock:
            found = self.records.get(name)
        if found is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for kind, value in found:
            if kind == asked:
                reply.add_answer(RR(name, getattr(QTYPE, kind), rdata=RDATA[kind](value), ttl=0))
        return reply


@pytest.fixture(scope="session")
def dns_zone() -> Iterator[tuple[Zone, int]]:
    zone = Zone()
    server = DNSServer(zone, port=0, address="127.0.0.1")
    server.start_thread()
    try:
        yield zone, server.server.server_address[1]
    finally:
        server.stop()


@pytest.fixture
def dns_server(dns_zone: tuple[Zone, int], settings: Any) -> Iterator[Zone]:
    zone, port = dns_zone
    settings.DNS_NAMESERVERS = [f"127.0.0.1:{port}"]
    zone.clear()
    yield zone
    zone.clear()
