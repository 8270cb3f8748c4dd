"""The QUIC + HTTP/3 server: one endpoint for the whole UDP port, many aioquic connections.

What aioquic's asyncio ``QuicServer`` does, without the socket and the loop: read the first
datagram's long header, create a ``QuicConnection`` for a new Initial (keyed by the DCID the
client chose, then by every connection ID the server issues), and, with ``retry``, answer an
Initial that has no token with a stateless Retry (RFC 9000 §8.1.2) and check the token on the
next one. Version negotiation is answered as the asyncio server does.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from aioquic.buffer import Buffer
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY, QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import Direction, Epoch

from .events import Event, HandshakeCompleted, RequestReceived
from .http1 import requested_bytes, response_body
from .quic_config import Address, QuicServerConfig, cipher_name

RETRY_CID_BYTES = 8


class _EarlyDataRefusingConnection(QuicConnection):
    """A server connection that resumes sessions but refuses 0-RTT.

    aioquic has no switch for this: its server accepts early data whenever the PSK is good and
    the ClientHello offers it, and every ticket it issues allows it. The one seam is the
    traffic-key callback, which the TLS engine calls with the 0-RTT read key after deciding to
    accept and before it writes EncryptedExtensions: clearing the decision there leaves the
    early_data extension out (RFC 8446 §4.2.10 rejection), and never installing the key makes
    the client's 0-RTT packets undecryptable, so they are dropped as RFC 9001 §4.6.2 says.
    """

    refused_early_data = False

    def _update_traffic_key(self, direction, epoch, cipher_suite, secret) -> None:
        if direction == Direction.DECRYPT and epoch == Epoch.ZERO_RTT:
            self.tls.early_data_accepted = False
            self.refused_early_data = True
            return
        super()._update_traffic_key(direction, epoch, cipher_suite, secret)


@dataclass(eq=False)
class _Connection:
    """One client's connection and the HTTP/3 exchange on it."""

    quic: QuicConnection
    cids: set[bytes] = field(default_factory=set)
    h3: H3Connection | None = None
    handshake_complete: bool = False
    early_streams: set[int] = field(default_factory=set)
    """Request streams whose first bytes arrived before the handshake completed (0-RTT)."""
    answered: set[int] = field(default_factory=set)
    request_headers: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    held: deque[tuple[float, int, str, str]] = field(default_factory=deque)
    """Requests whose answer waits for the server time: (when it is due, stream id, method,
    target), oldest first (every request waits as long, so that is also the order they fall due)."""

    def timer(self) -> float | None:
        """The earlier of aioquic's timer and the next held answer."""
        timer = self.quic.get_timer()
        if self.held and (timer is None or self.held[0][0] < timer):
            return self.held[0][0]
        return timer


class QuicHttpServer:
    """UDP port 443 of the server: answers ``GET /`` with 200 on every QUIC connection.

    Events: ``RequestReceived`` once a request is complete (``in_early_data`` when it arrived
    in 0-RTT packets, i.e. before this connection's handshake completed: the server installs its
    1-RTT read key only on the client's Finished, so nothing else can be read that early) and
    ``HandshakeCompleted`` when the client's Finished arrives.

    The answer leaves ``config.server_time_s`` after the request is complete, on the timer;
    what aioquic sends of its own (ACKs, HANDSHAKE_DONE, tickets, NEW_CONNECTION_ID) does not wait.
    """

    def __init__(self, config: QuicServerConfig) -> None:
        self.config = config
        self._connections: dict[bytes, _Connection] = {}
        """Routing: every connection ID a live connection answers to."""
        self._live: dict[int, _Connection] = {}
        self._touched: dict[int, _Connection] = {}
        self._timers: dict[int, float] = {}
        """A connection's datagrams and timer change only when it is called (a datagram, a timer,
        a send), so only touched connections are asked for datagrams and timers are cached:
        a server holding hundreds of idle connections costs nothing per call."""
        self._stateless: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._retry = QuicRetryTokenHandler() if config.retry else None
        self._body = response_body(config.body_bytes)
        self.retries_sent = 0

    @property
    def connections(self) -> int:
        """Live connections (each is released when aioquic reports it terminated)."""
        return len(self._live)

    def start(self, now: float) -> None:
        pass

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        configuration = self.config.quic_configuration
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=configuration.connection_id_length)
        except ValueError:
            return  # not QUIC: drop, as a UDP server would
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version not in configuration.supported_versions
        ):
            self._stateless.append(
                (
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=configuration.supported_versions,
                    ),
                    addr,
                )
            )
            return

        connection = self._connections.get(header.destination_cid)
        if (
            connection is None
            and len(data) >= SMALLEST_MAX_DATAGRAM_SIZE  # RFC 9000 §14.1: Initials are padded
            and header.packet_type == QuicPacketType.INITIAL
        ):
            connection = self._accept(header, addr, now)
        if connection is not None:
            connection.quic.receive_datagram(data, addr, now)
            self._pump(connection, now)
            self._touch(connection)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._stateless = self._stateless, []
        touched, self._touched = self._touched, {}
        for connection in touched.values():
            out += connection.quic.datagrams_to_send(now)
            self._pump(connection, now)
            self._touch(connection, send=False)
        return out

    def get_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> None:
        due = [key for key, timer in self._timers.items() if timer <= now]
        for key in due:
            connection = self._live[key]
            quic_timer = connection.quic.get_timer()
            if quic_timer is not None and quic_timer <= now:
                connection.quic.handle_timer(now)
                self._pump(connection, now)
            if key in self._live:
                self._answer_due(connection, now)
            self._touch(connection)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- connections -------------------------------------------------------------------------

    def _accept(self, header, addr: Address, now: float) -> _Connection | None:
        """A new connection for this Initial, or a Retry / close answered statelessly."""
        original_dcid: bytes | None = header.destination_cid
        retry_scid: bytes | None = None
        if self._retry is not None:
            if not header.token:
                retry_scid = os.urandom(RETRY_CID_BYTES)
                token = self._retry.create_token(
                    address=addr,
                    original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=retry_scid,
                    now=now,
                )
                self._stateless.append(
                    (
                        encode_quic_retry(
                            version=header.version,
                            source_cid=retry_scid,
                            destination_cid=header.source_cid,
                            original_destination_cid=header.destination_cid,
                            retry_token=token,
                        ),
                        addr,
                    )
                )
                self.retries_sent += 1
                return None
            try:
                original_dcid = self._retry.validate_token(
                    address=addr, destination_cid=header.destination_cid, token=header.token, now=now
                )
            except ValueError:
                # RFC 9000 §8.1.3: a bad Retry token closes the connection with INVALID_TOKEN.
                self._stateless.append((_invalid_token_close(header), addr))
                return None
            retry_scid = header.destination_cid

        cls = QuicConnection if self.config.accept_early_data else _EarlyDataRefusingConnection
        quic = cls(
            configuration=self.config.quic_configuration,
            original_destination_connection_id=original_dcid,
            retry_source_connection_id=retry_scid,
            session_ticket_fetcher=self.config.fetch_ticket,
            session_ticket_handler=self.config.store_ticket,
        )
        connection = _Connection(quic)
        self._live[id(connection)] = connection
        self._route(connection, header.destination_cid)
        self._route(connection, quic.host_cid)
        return connection

    def _touch(self, connection: _Connection, *, send: bool = True) -> None:
        """Recache the timer of a connection just called; ``send``: ask it for datagrams next time."""
        key = id(connection)
        if key not in self._live:
            return  # terminated meanwhile
        if send:
            self._touched[key] = connection
        timer = connection.timer()
        if timer is None:
            self._timers.pop(key, None)
        else:
            self._timers[key] = timer

    def _route(self, connection: _Connection, cid: bytes) -> None:
        connection.cids.add(cid)
        self._connections[cid] = connection

    def _forget(self, connection: _Connection) -> None:
        self._live.pop(id(connection), None)
        self._touched.pop(id(connection), None)
        self._timers.pop(id(connection), None)
        for cid in connection.cids:
            if self._connections.get(cid) is connection:
                del self._connections[cid]
        connection.cids.clear()

    def _pump(self, connection: _Connection, now: float) -> None:
        """Hand aioquic's events to routing, HTTP/3 and the event queue."""
        quic = connection.quic
        while (event := quic.next_event()) is not None:
            if isinstance(event, quic_events.ConnectionIdIssued):
                self._route(connection, event.connection_id)
            elif isinstance(event, quic_events.ConnectionIdRetired):
                connection.cids.discard(event.connection_id)
                self._connections.pop(event.connection_id, None)
            elif isinstance(event, quic_events.ConnectionTerminated):
                self._forget(connection)
                return
            elif isinstance(event, quic_events.ProtocolNegotiated):
                # The H3 control streams need the connection's ALPN settled (DESIGN §4).
                connection.h3 = H3Connection(quic)
            elif isinstance(event, quic_events.HandshakeCompleted):
                connection.handshake_complete = True
                refused = getattr(quic, "refused_early_data", False)
                early = "accepted" if event.early_data_accepted else "rejected" if refused else "none"
                self._events.append(
                    HandshakeCompleted(
                        tls_version="1.3",
                        resumed=event.session_resumed,
                        early_data=early,
                        cipher=cipher_name(quic.tls.key_schedule.cipher_suite),
                    )
                )
            if connection.h3 is not None:
                for h3_event in connection.h3.handle_event(event):
                    self._on_h3(connection, h3_event, now)

    def _on_h3(self, connection: _Connection, event: H3Event, now: float) -> None:
        if not isinstance(event, (HeadersReceived, DataReceived)):
            return
        stream_id = event.stream_id
        if stream_id in connection.answered:
            return
        if not connection.handshake_complete:
            connection.early_streams.add(stream_id)
        if isinstance(event, HeadersReceived):
            connection.request_headers[stream_id] = dict(event.headers)
        if not event.stream_ended or stream_id not in connection.request_headers:
            return
        headers = connection.request_headers.pop(stream_id)
        connection.answered.add(stream_id)
        method = headers.get(b":method", b"").decode()
        target = headers.get(b":path", b"").decode()
        self._events.append(
            RequestReceived(method=method, target=target, in_early_data=stream_id in connection.early_streams)
        )
        connection.early_streams.discard(stream_id)
        connection.held.append((now + self.config.server_time_s, stream_id, method, target))
        self._answer_due(connection, now)

    def _answer_due(self, connection: _Connection, now: float) -> None:
        """Answer the held requests whose server time is over."""
        held = connection.held
        while held and held[0][0] <= now:
            _, stream_id, method, target = held.popleft()
            self._respond(connection, stream_id, method, target)

    def _respond(self, connection: _Connection, stream_id: int, method: str, target: str) -> None:
        assert connection.h3 is not None
        size = requested_bytes(target, self.config.body_bytes) if method in ("GET", "POST") else None
        status, body = (404, b"") if size is None else (200, self._body if target == "/" else response_body(size))
        connection.h3.send_headers(
            stream_id,
            [
                (b":status", str(status).encode()),
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                (b"server", b"handshake/0.1"),
            ],
        )
        connection.h3.send_data(stream_id, body, end_stream=True)


def _invalid_token_close(header) -> bytes:
    """A server Initial closing the connection with INVALID_TOKEN (as aioquic's asyncio server
    builds it; its Initial keys come from the DCID the client chose)."""
    crypto = CryptoPair()
    crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
    builder = QuicPacketBuilder(
        host_cid=header.destination_cid,
        is_client=False,
        max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
        peer_cid=header.source_cid,
        version=header.version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY)
    buf.push_uint_var(QuicErrorCode.INVALID_TOKEN)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]
