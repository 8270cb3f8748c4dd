"""The QUIC + HTTP/3 client: one connection, one ``GET /``, in 0-RTT when its ticket allows."""

from __future__ import annotations

from collections import deque

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.tls import Epoch, SessionTicket

from ._base import TlsError
from .events import EarlyDataResent, Event, HandshakeCompleted, ResponseAssembly, ResponseReceived
from .http1 import USER_AGENT, Upload
from .quic_config import Address, QuicClientConfig, cipher_name, without_early_data

DEFAULT_LOCAL_ADDR: Address = ("198.18.0.1", 0)


class QuicHttpClient:
    """A client connection that fetches ``/`` once over HTTP/3.

    With a ticket that allows early data (aioquic's server issues only such tickets) and
    ``early_data``, the GET leaves in 0-RTT beside the Initial, in the first flight. Without,
    it leaves with the client's Finished, one round trip in.

    Events: ``HandshakeCompleted`` (``early_data`` "accepted", "rejected" or "none"),
    ``EarlyDataResent`` when the server refused the 0-RTT request and it went again in 1-RTT,
    ``ResponseReceived`` once each whole response is in (the first, then any ``fetch``
    asked for).
    """

    def __init__(
        self,
        config: QuicClientConfig,
        session_ticket: SessionTicket | None = None,
        *,
        server_addr: Address,
        early_data: bool = True,
        local_addr: Address = DEFAULT_LOCAL_ADDR,
        eager_resend: bool = True,
        path: str | None = None,
        upload: Upload | None = None,
    ) -> None:
        """``upload``: the first request's body (a POST; QUIC has no Nagle, so how it is
        written changes nothing on the wire). ``eager_resend``: when 0-RTT is rejected, declare
        the 0-RTT packets lost at once so aioquic retransmits the request beside the client Finished, as browsers' stacks do
        (RFC 9001 §4.6.2 has the client resend; aioquic alone waits for its loss detection,
        one more round trip). ``local_addr`` is informational: QUIC does not know its own
        address; the engine binds there."""
        if session_ticket is not None and not early_data:
            session_ticket = without_early_data(session_ticket)
        self.config = config
        self._path = config.path if path is None else path
        """The first request's target."""
        self._upload = upload
        self.server_addr = server_addr
        self.local_addr = local_addr
        self.eager_resend = eager_resend
        self.offered_early_data = (
            session_ticket is not None
            and session_ticket.max_early_data_size is not None
            and session_ticket.is_valid
            and session_ticket.server_name == config.server_name
        )
        self.quic = QuicConnection(
            configuration=config.quic_configuration(session_ticket),
            session_ticket_handler=self._on_session_ticket,
        )
        self._h3: H3Connection | None = None
        self._events: deque[Event] = deque()
        self._streams: dict[int, ResponseAssembly] = {}
        """Responses under way, by request stream."""
        self.response_started = False
        """The first response's HEADERS have come in."""
        self.session_ticket: SessionTicket | None = None
        """The newest ticket the server sent, set the moment its NewSessionTicket is read.

        aioquic's server issues it on reading the client's Finished, so it travels with the
        response of a full handshake (one round trip after the Finished left) but a whole round
        trip after a 0-RTT response, which the server sends in its first flight; keep the
        exchange running until it is here."""
        self.response: ResponseReceived | None = None
        """The first response (to ``config.path``), once it is all in."""
        self.responses: list[ResponseReceived] = []
        """Every response in, in the order they completed."""
        self.handshake_complete = False
        self._closed = False

    @property
    def request_at_start(self) -> bool:
        """The request leaves in the first flight (0-RTT)."""
        return self.offered_early_data

    def start(self, now: float) -> None:
        self.quic.connect(self.server_addr, now)
        self._h3 = H3Connection(self.quic)
        if self.offered_early_data:
            self._send_request()  # 0-RTT: the request rides in the first flight

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        application_space = self.quic._spaces.get(Epoch.ONE_RTT)
        self.quic.receive_datagram(data, addr, now)
        if application_space is not None and self.quic._spaces[Epoch.ONE_RTT] is not application_space:
            # aioquic acted on a Retry: it restarts the handshake with fresh packet spaces and
            # forgets the 0-RTT packets already sent, whose STREAM data would then never be
            # retransmitted (the request would hang until the idle timeout). Declared lost
            # here, their data goes again in the new 0-RTT packets, to the Retry's CID
            # (RFC 9000 §17.2.5.3).
            _declare_early_data_lost(self.quic, now, application_space)
        self._pump(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        datagrams = self.quic.datagrams_to_send(now)
        self._pump(now)
        return datagrams

    def get_timer(self) -> float | None:
        return self.quic.get_timer()

    def handle_timer(self, now: float) -> None:
        timer = self.quic.get_timer()
        if timer is not None and timer <= now:
            self.quic.handle_timer(now)
            self._pump(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def close(self) -> None:
        """Send CONNECTION_CLOSE (in the next ``datagrams_to_send``) so the server can let go
        (after its draining period, three PTOs) instead of after the 60 s idle timeout."""
        self._closed = True
        self.quic.close()

    @property
    def done(self) -> bool:
        """Every response asked for is in."""
        return self.response is not None and not self._streams

    def fetch(self, targets: list[str]) -> None:
        """More GETs, each on a stream of its own, all at once (in the next datagrams)."""
        for target in targets:
            self._send_request(target)

    def _send_request(self, target: str | None = None) -> None:
        """A GET on a new stream; the first request (no ``target``) a POST where there is an upload."""
        assert self._h3 is not None
        upload = self._upload if target is None else None
        target = self._path if target is None else target
        stream_id = self.quic.get_next_available_stream_id()
        self._streams[stream_id] = ResponseAssembly(target, "3")
        authority = self.config.http_authority.encode()
        fields = [] if upload is None else [
            (b"content-type", b"application/octet-stream"), (b"content-length", str(upload.size).encode())]
        self._h3.send_headers(
            stream_id,
            [
                (b":method", b"GET" if upload is None else b"POST"),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", target.encode()),
                (b"user-agent", USER_AGENT.encode()),
                *fields,
            ],
            end_stream=upload is None,
        )
        if upload is not None:
            self._h3.send_data(stream_id, upload.body, end_stream=True)

    def _on_session_ticket(self, ticket: SessionTicket) -> None:
        self.session_ticket = ticket

    def _pump(self, now: float) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.HandshakeCompleted):
                self._on_handshake_completed(event, now)
            elif isinstance(event, quic_events.ConnectionTerminated):
                if not self.done and not self._closed:
                    raise TlsError(
                        f"QUIC connection closed before the response: error 0x{event.error_code:x}"
                        f" {event.reason_phrase}".rstrip()
                    )
            assert self._h3 is not None
            for h3_event in self._h3.handle_event(event):
                if isinstance(h3_event, (HeadersReceived, DataReceived)) and h3_event.stream_id in self._streams:
                    self._on_response_part(h3_event)

    def _on_handshake_completed(self, event: quic_events.HandshakeCompleted, now: float) -> None:
        self.handshake_complete = True
        if not self.offered_early_data:
            early_data = "none"
        else:
            early_data = "accepted" if event.early_data_accepted else "rejected"
        self._events.append(
            HandshakeCompleted(
                tls_version="1.3",
                resumed=event.session_resumed,
                early_data=early_data,
                cipher=cipher_name(self.quic.tls.key_schedule.cipher_suite),
            )
        )
        if not self.offered_early_data:
            self._send_request()
        elif early_data == "rejected":
            # The request is still in aioquic's stream buffers: resending means retransmitting
            # those bytes in 1-RTT, never a second request.
            if self.eager_resend:
                _declare_early_data_lost(self.quic, now)
            self._events.append(EarlyDataResent())

    def _on_response_part(self, event: HeadersReceived | DataReceived) -> None:
        response = self._streams[event.stream_id]
        if isinstance(event, HeadersReceived):
            self.response_started = True
            response.header_fields([(name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers])
        else:
            response.data(event.data)
        if event.stream_ended:
            del self._streams[event.stream_id]
            received = response.complete()
            self.response = self.response or received
            self.responses.append(received)
            self._events.append(received)


def _declare_early_data_lost(quic: QuicConnection, now: float, space: QuicPacketSpace | None = None) -> None:
    """Hand every unacknowledged 0-RTT packet to aioquic's loss recovery, which requeues their
    STREAM frames (RFC 9002 §6.4: rejected 0-RTT packets leave bytes in flight).

    aioquic has no public call for this. On a rejection it otherwise finds them lost only once
    the server acknowledges later packets, a round trip after the handshake; after a Retry,
    never (``space`` is then the application space it dropped).
    """
    if space is None:
        space = quic._spaces[Epoch.ONE_RTT]
    lost = [p for p in space.sent_packets.values() if p.packet_type == QuicPacketType.ZERO_RTT]
    if lost:
        quic._loss._on_packets_lost(congestion_event=False, now=now, packets=lost, space=space)
