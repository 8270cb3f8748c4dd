"""An HTTP/3 server for the browser tests: aioquic's asyncio server answering every request with
one file, run as a program in the server namespace (``python3 h3_origin.py ADDR PORT CERT KEY
FILE``), so the topology's teardown ends it like any other server.

aioquic is the project's own QUIC library (DESIGN.md §6 names qh3 too, its faster fork; the
browser sends one request, so speed does not matter and nothing more is installed). The page goes
out as one HEADERS frame and one DATA frame on the request stream (RFC 9114 §4.1), the way a
real origin answers; the control and QPACK streams are aioquic's own.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent


class PageServer(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3 once ALPN said h3, the page for every request."""

    page: bytes = b""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = H3Connection(self._quic)
        if self._http is None:
            return
        for http_event in self._http.handle_event(event):
            if isinstance(http_event, HeadersReceived):
                self._http.send_headers(http_event.stream_id, [
                    (b":status", b"200"), (b"content-type", b"text/html"),
                    (b"content-length", str(len(self.page)).encode()), (b"cache-control", b"no-store"),
                ])
                self._http.send_data(http_event.stream_id, self.page, end_stream=True)
        self.transmit()


async def main(addr: str, port: int, cert: str, key: str, page: str) -> None:
    PageServer.page = Path(page).read_bytes()
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    configuration.load_cert_chain(cert, key)
    await serve(addr, port, configuration=configuration, create_protocol=PageServer)
    await asyncio.Event().wait()  # until the topology's SIGTERM


if __name__ == "__main__":
    address, port_text, cert_path, key_path, page_path = sys.argv[1:]
    asyncio.run(main(address, int(port_text), cert_path, key_path, page_path))
