"""An HTTP/3 server on qh3 -- a second QUIC stack (aioquic's fork, its TLS in Rust) -- for the probe
tests: ``python3 qh3_origin.py ADDR PORT CERT KEY [--no-tickets]``, run in the server namespace.

Every request gets ``hello`` on its stream. qh3 leaves the session-ticket store to the
application (as aioquic does): with one, a ticket resumes once and its 0-RTT is accepted (qh3
issues tickets that allow early data); ``--no-tickets`` keeps none, so a client's 0-RTT finds no
session and is rejected. The probe's client is aioquic, so the two ends are different stacks.

qh3 is pinned to 1.9.4 (setup.cfg's test extra): 2.1.0's server drops the first flight it builds
for an aioquic Initial ("packet builder capacity exhausted", raised from ``datagrams_to_send``),
which the probe showed as a client Initial resent after 664 ms.
"""

from __future__ import annotations

import asyncio
import sys

from qh3.asyncio import QuicConnectionProtocol, serve
from qh3.h3.connection import H3_ALPN, H3Connection, Setting
from qh3.h3.events import HeadersReceived
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.events import ProtocolNegotiated, QuicEvent

BODY = b"hello\n"


class Http3WithoutDatagrams(H3Connection):
    """qh3's HTTP/3 announces SETTINGS_H3_DATAGRAM=1 whatever its QUIC configuration, and RFC 9297
    §2.1.1 has the peer close with H3_SETTINGS_ERROR unless the transport parameters offer QUIC
    datagrams too: aioquic does (the probe said "error 0x109 H3_DATAGRAM requires
    max_datagram_frame_size"). The setting goes: a plain HTTP/3 server."""

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.pop(Setting.H3_DATAGRAM, None)
        return settings


class HelloServer(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = Http3WithoutDatagrams(self._quic)
        if self._http is None:
            return
        for http_event in self._http.handle_event(event):
            if isinstance(http_event, HeadersReceived):
                self._http.send_headers(http_event.stream_id, [
                    (b":status", b"200"), (b"content-type", b"text/plain"),
                    (b"content-length", str(len(BODY)).encode()),
                ])
                self._http.send_data(http_event.stream_id, BODY, end_stream=True)
        self.transmit()


async def main(addr: str, port: int, cert: str, key: str, tickets: bool) -> None:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    configuration.load_cert_chain(cert, key)
    store: dict[bytes, object] = {}
    await serve(addr, port, configuration=configuration, create_protocol=HelloServer,
                session_ticket_handler=(lambda ticket: store.__setitem__(ticket.ticket, ticket)) if tickets else None,
                session_ticket_fetcher=(lambda label: store.pop(label, None)) if tickets else None)
    await asyncio.Event().wait()  # until the topology's SIGTERM


if __name__ == "__main__":
    address, port_text, cert_path, key_path = sys.argv[1:5]
    asyncio.run(main(address, int(port_text), cert_path, key_path, "--no-tickets" not in sys.argv[5:]))
