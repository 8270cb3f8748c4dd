"""Real QUIC + HTTP/3 traffic for the QUIC analysis tests: aioquic client and server on a
virtual clock with a fixed one-way delay, captured at the client's interface.

Client datagrams are recorded when sent, server datagrams when they arrive (a datagram the
link drops on the way to the client is never seen; one dropped on the way to the server was
still captured as sent). The key log is what both endpoints wrote.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ProtocolNegotiated
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import load_pem_x509_certificates

from handshake.endpoints.certs import CertChain, make_chain
from handshake.trace.packet import udp_packet
from handshake.trace.record import TracedPacket

CLIENT = ("10.0.0.1", 50000)
SERVER = ("10.0.0.2", 443)
RESPONSE_BODY = b"hello from h3\n" * 4
LONG_ALPN = tuple(f"x-{i:02d}-" + "p" * 40 for i in range(30))
"""Offered before h3, they make a ClientHello that needs two Initials (as Chrome's post-quantum
key shares do)."""


@dataclass
class QuicRun:
    packets: list[TracedPacket]
    keylog: str
    session_ticket: object | None
    """The ticket the client received (for a resumption run)."""
    response_at: float | None
    """Virtual time the client got the first response body bytes (an independent check)."""
    dropped: int = 0


@dataclass
class _Link:
    one_way_s: float
    drop: Callable[[bool, int, bytes], bool]
    """(from_client, index of the datagram in its direction, payload) → drop it."""
    queue: list = field(default_factory=list)
    sent: dict = field(default_factory=lambda: {True: 0, False: 0})
    seq: int = 0
    dropped: int = 0

    def send(self, now: float, from_client: bool, data: bytes) -> bool:
        index = self.sent[from_client]
        self.sent[from_client] += 1
        if self.drop(from_client, index, data):
            self.dropped += 1
            return False
        self.seq += 1
        heapq.heappush(self.queue, (now + self.one_way_s, self.seq, from_client, data))
        return True


def _server_configuration(chain: CertChain, keylog: io.StringIO) -> QuicConfiguration:
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, secrets_log_file=keylog)
    certificates = load_pem_x509_certificates(chain.chain_pem)
    configuration.certificate = certificates[0]
    configuration.certificate_chain = certificates[1:]
    configuration.private_key = load_pem_private_key(chain.leaf_key_pem, password=None)
    return configuration


def run_quic(
    *,
    chain: CertChain | None = None,
    one_way_s: float = 0.05,
    ticket_store: dict | None = None,
    session_ticket: object | None = None,
    early_request: bool = False,
    retry: bool = False,
    drop: Callable[[bool, int, bytes], bool] = lambda from_client, index, data: False,
    duration_s: float = 2.0,
    start_s: float = 1.0,
    client_port: int = CLIENT[1],
    versions: list[int] | None = None,
    body: bytes = RESPONSE_BODY,
    key_update: bool = False,
    close_error: int | None = None,
    extra_alpn: tuple[str, ...] = (),
    client_spacing_s: float = 0.0,
) -> QuicRun:
    """One HTTP/3 GET over one QUIC connection. ``early_request``: send the request before
    the handshake (0-RTT, needs ``session_ticket``). ``close_error``: once the response is in,
    the client closes with this application error code. ``extra_alpn``: protocols the client
    offers before h3 (a long list makes a ClientHello that needs two Initials, as Chrome's
    post-quantum key shares do). ``client_spacing_s``: the client's datagrams of one flush leave
    this far apart (chromium's two Initials on a busy machine), so the server may answer each alone."""
    chain = chain or make_chain("p256", 1)
    client_addr = (CLIENT[0], client_port)
    keylog = io.StringIO()
    tickets_received: list = []
    client_configuration = QuicConfiguration(
        is_client=True, alpn_protocols=[*extra_alpn, *H3_ALPN], server_name=chain.server_name, secrets_log_file=keylog
    )
    client_configuration.load_verify_locations(cadata=chain.ca_pem)
    if versions is not None:
        client_configuration.supported_versions = list(versions)
    client_configuration.session_ticket = session_ticket
    server_configuration = _server_configuration(chain, keylog)
    store = ticket_store if ticket_store is not None else {}
    retry_handler = QuicRetryTokenHandler() if retry else None

    client = QuicConnection(configuration=client_configuration, session_ticket_handler=tickets_received.append)
    client_h3 = H3Connection(client)
    server: QuicConnection | None = None
    server_h3: H3Connection | None = None
    link = _Link(one_way_s, drop)
    packets: list[TracedPacket] = []
    response_at: float | None = None
    request_sent = False

    def send_request(now: float) -> None:
        nonlocal request_sent
        stream_id = client.get_next_available_stream_id()
        client_h3.send_headers(
            stream_id,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", chain.server_name.encode()),
             (b":path", b"/")],
            end_stream=True,
        )
        request_sent = True

    def flush(now: float) -> None:
        for index, (data, _) in enumerate(client.datagrams_to_send(now)):
            sent_at = now + index * client_spacing_s
            packets.append(TracedPacket(sent_at, udp_packet(CLIENT[0], SERVER[0], client_port, SERVER[1], data)))
            link.send(sent_at, True, data)
        if server is not None:
            for data, _ in server.datagrams_to_send(now):
                link.send(now, False, data)

    def server_receive(data: bytes, now: float) -> None:
        nonlocal server, server_h3
        if server is None:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            if header.version not in server_configuration.supported_versions:
                # RFC 9000 §6.1: a Version Negotiation packet echoes the client's CIDs, swapped.
                link.send(now, False, encode_quic_version_negotiation(
                    source_cid=header.destination_cid, destination_cid=header.source_cid,
                    supported_versions=server_configuration.supported_versions,
                ))
                return
            if header.packet_type != QuicPacketType.INITIAL:
                return
            original_dcid, retry_scid = header.destination_cid, None
            if retry_handler is not None:
                if not header.token:
                    source_cid = os.urandom(8)
                    token = retry_handler.create_token(
                        address=client_addr, original_destination_connection_id=header.destination_cid,
                        retry_source_connection_id=source_cid, now=now,
                    )
                    link.send(now, False, encode_quic_retry(
                        version=header.version, source_cid=source_cid, destination_cid=header.source_cid,
                        original_destination_cid=header.destination_cid, retry_token=token,
                    ))
                    return
                original_dcid = retry_handler.validate_token(
                    address=client_addr, destination_cid=header.destination_cid, token=header.token, now=now
                )
                retry_scid = header.destination_cid
            server = QuicConnection(
                configuration=server_configuration,
                original_destination_connection_id=original_dcid,
                retry_source_connection_id=retry_scid,
                session_ticket_fetcher=lambda label: store.pop(label, None),
                session_ticket_handler=lambda ticket: store.__setitem__(ticket.ticket, ticket),
            )
        server.receive_datagram(data, client_addr, now)
        while (event := server.next_event()) is not None:
            if isinstance(event, ProtocolNegotiated):
                server_h3 = H3Connection(server)
            if server_h3 is not None:
                for h3_event in server_h3.handle_event(event):
                    if isinstance(h3_event, HeadersReceived) and h3_event.stream_ended:
                        server_h3.send_headers(h3_event.stream_id, [(b":status", b"200")])
                        server_h3.send_data(h3_event.stream_id, body, end_stream=True)

    def client_receive(data: bytes, now: float) -> None:
        nonlocal response_at
        packets.append(TracedPacket(now, udp_packet(SERVER[0], CLIENT[0], SERVER[1], client_port, data)))
        client.receive_datagram(data, SERVER, now)
        while (event := client.next_event()) is not None:
            for h3_event in client_h3.handle_event(event):
                if isinstance(h3_event, (HeadersReceived, DataReceived)) and response_at is None:
                    response_at = now
                    if close_error is not None:
                        client.close(error_code=close_error, reason_phrase="enough")
            if type(event).__name__ == "HandshakeCompleted" and not request_sent:
                if key_update:
                    client.request_key_update()
                send_request(now)

    now = start_s
    client.connect(SERVER, now=now)
    if early_request:
        send_request(now)
    flush(now)
    end = start_s + duration_s
    while True:
        candidates = [t for t in (client.get_timer(), server.get_timer() if server else None) if t is not None]
        if link.queue:
            candidates.append(link.queue[0][0])
        if not candidates:
            break
        now = max(now, min(candidates))
        if now > end:
            break
        while link.queue and link.queue[0][0] <= now:
            _, _, from_client, data = heapq.heappop(link.queue)
            if from_client:
                server_receive(data, now)
            else:
                client_receive(data, now)
        for connection in (client, server):
            if connection is not None:
                timer = connection.get_timer()
                if timer is not None and timer <= now:
                    connection.handle_timer(now)
        if server is not None and server_h3 is None:
            while (event := server.next_event()) is not None:
                if isinstance(event, ProtocolNegotiated):
                    server_h3 = H3Connection(server)
        flush(now)
    return QuicRun(packets, keylog.getvalue(), tickets_received[-1] if tickets_received else None,
                   response_at, link.dropped)
