"""A DNS server on 127.0.0.1 and a free UDP port that the test controls: blocklist zones without the Internet.

    with DNSServer(records={"2.0.0.127.bl.test.": {"A": ["127.0.0.2"], "TXT": ["spam seen"]}},
                   zones={"bl.test", "clean.test"}, silent={"slow.test"}) as dns_server:
        dns_server.address   # "127.0.0.1:PORT", for dns_servers

A name under `zones` that is not in `records` is NXDOMAIN; a name under `silent` gets no answer at
all (the client times out); anything else is REFUSED. Every question is recorded in `queries`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DNSServer:
    def __init__(
        self,
        *,
        records: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        zones: Iterable[str] = (),
        silent: Iterable[str] = (),
    ) -> None:
        self.records = {name.lower().rstrip(".") + ".": dict(v) for name, v in (records or {}).items()}
        self.zones = {z.lower().rstrip(".") for z in zones}
        self.silent = {z.lower().rstrip(".") for z in silent}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DNSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(wire)
            if reply is not None:
                self._sock.sendto(reply, client)

    def _answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        if _under(name, self.silent):
            return None
        response = dns.message.make_response(query)
        if name in self.records:
            values = list(self.records[name].get(kind, ()))
            if values:
                text = [f'"{v}"' for v in values] if kind == "TXT" else values
                response.answer.append(dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, kind, text))
        elif _under(name, self.zones):
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()


def _under(name: str, zones: set[str]) -> bool:
    bare = name.rstrip(".")
    return any(bare == z or bare.endswith("." + z) for z in zones)
