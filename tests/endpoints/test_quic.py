"""QUIC + HTTP/3 endpoints, driven over an in-memory path with a fixed one-way delay.

Round trips are counted the way the analysis counts them: from the client's first Initial to
the response arriving at the client, in units of the path RTT. With a fixed delay, every wait
for the server is a whole RTT, so a fractional count means a timer (PTO, ack delay) was paid.
"""

import gc
import heapq
import itertools
import os
import stat
import weakref
from dataclasses import dataclass, field

import pytest
from aioquic import tls
from aioquic.buffer import Buffer
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.endpoints import (
    EarlyDataResent,
    HandshakeCompleted,
    RequestReceived,
    ResponseReceived,
    TlsError,
    make_chain,
)
from handshake.endpoints.http1 import response_body
from handshake.endpoints.quic import QuicClientConfig, QuicHttpClient, QuicHttpServer, QuicServerConfig

CLIENT_ADDR = ("198.18.0.1", 50000)
SERVER_ADDR = ("198.19.0.1", 443)
DELAY_S = 0.05
RTT_S = 2 * DELAY_S
CLIENT_INITIAL_BYTES = 1200


@dataclass
class Path:
    """Two datagram endpoints joined by a lossless path with a fixed one-way delay."""

    client: QuicHttpClient
    server: QuicHttpServer
    delay: float = DELAY_S
    now: float = 0.0
    sent: list[tuple[float, str, bytes]] = field(default_factory=list)
    """(time, "client"|"server", datagram) in the order they left."""
    events: list[tuple[float, str, object]] = field(default_factory=list)
    _in_flight: list = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _started: bool = False

    def run(self, until, limit_s: float = 5.0) -> None:
        """Deliver datagrams and fire timers, in time order, until ``until(self)`` holds."""
        if not self._started:
            self._started = True
            self.server.start(self.now)
            self.client.start(self.now)
            self._flush()
        while not until(self):
            due = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
            if self._in_flight:
                due.append(self._in_flight[0][0])
            assert due, "nothing left to happen"
            self.now = max(self.now, min(due))
            assert self.now <= limit_s, f"not done after {limit_s} s"
            while self._in_flight and self._in_flight[0][0] <= self.now:
                _, _, receiver, data, source = heapq.heappop(self._in_flight)
                receiver.receive_datagram(data, source, self.now)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self._flush()

    def _flush(self) -> None:
        for name, sender, receiver, source in (
            ("client", self.client, self.server, CLIENT_ADDR),
            ("server", self.server, self.client, SERVER_ADDR),
        ):
            for data, _ in sender.datagrams_to_send(self.now):
                self.sent.append((self.now, name, data))
                heapq.heappush(self._in_flight, (self.now + self.delay, next(self._seq), receiver, data, source))
            while (event := sender.next_event()) is not None:
                self.events.append((self.now, name, event))

    # -- what happened -------------------------------------------------------------------------

    def of(self, side: str, kind: type) -> list:
        return [event for _, who, event in self.events if who == side and isinstance(event, kind)]

    def time_of(self, side: str, kind: type) -> float:
        return next(t for t, who, event in self.events if who == side and isinstance(event, kind))

    def round_trips_to(self, side: str, kind: type) -> float:
        return (self.time_of(side, kind) - self.sent[0][0]) / (2 * self.delay)

    def datagrams(self, side: str) -> list[bytes]:
        return [data for _, who, data in self.sent if who == side]


def response_arrived(path: Path) -> bool:
    return path.client.response is not None


def response_and_ticket(path: Path) -> bool:
    return path.client.response is not None and path.client.session_ticket is not None


def connect(server, client_config, ticket=None, *, until=response_and_ticket, delay=DELAY_S, **options) -> Path:
    client = QuicHttpClient(client_config, ticket, server_addr=SERVER_ADDR, **options)
    path = Path(client, server, delay=delay)
    path.run(until)
    return path


def configs(chain=None, **server_options):
    chain = chain or make_chain()
    return QuicServerConfig(chain, **server_options), QuicClientConfig.for_chain(chain)


def warm(**server_options):
    """A server, a client config, and a ticket from a warm-up connection."""
    server_config, client_config = configs(**server_options)
    server = QuicHttpServer(server_config)
    ticket = connect(server, client_config).client.session_ticket
    return server, client_config, ticket


def long_header_packets(datagram: bytes) -> list[QuicPacketType]:
    """The packet types of the coalesced long-header packets in a datagram (RFC 9000 §12.2)."""
    buf = Buffer(data=datagram)
    types = []
    while not buf.eof() and datagram[buf.tell()] != 0:  # zeros after the last packet pad the datagram
        start = buf.tell()
        header = pull_quic_header(buf, host_cid_length=8)
        types.append(header.packet_type)
        if header.version is None or header.packet_type == QuicPacketType.RETRY:
            break
        buf.seek(start + header.packet_length)
    return types


# -- full handshake -----------------------------------------------------------------------------


def test_a_full_handshake_brings_the_response_after_two_round_trips():
    server_config, client_config = configs()
    path = connect(QuicHttpServer(server_config), client_config)

    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(2, abs=0.01)
    (response,) = path.of("client", ResponseReceived)
    assert (response.status, response.body) == (200, response_body(server_config.body_bytes))
    (done,) = path.of("client", HandshakeCompleted)
    assert done == HandshakeCompleted(
        tls_version="1.3", resumed=False, early_data="none", cipher="TLS_AES_256_GCM_SHA384"
    )
    assert path.round_trips_to("client", HandshakeCompleted) == pytest.approx(1, abs=0.01)
    assert path.of("server", RequestReceived) == [RequestReceived("GET", "/", in_early_data=False)]
    assert path.of("server", HandshakeCompleted)[0].early_data == "none"


def test_the_client_initial_fills_the_minimum_datagram_and_carries_no_early_data():
    server_config, client_config = configs()
    path = connect(QuicHttpServer(server_config), client_config)
    first = path.datagrams("client")[0]
    assert len(first) == CLIENT_INITIAL_BYTES  # RFC 9000 §14.1
    assert long_header_packets(first) == [QuicPacketType.INITIAL]


def test_after_a_full_handshake_the_ticket_travels_with_the_response():
    server_config, client_config = configs()
    path = connect(QuicHttpServer(server_config), client_config, until=response_arrived)
    ticket = path.client.session_ticket
    assert ticket is not None and ticket.max_early_data_size == 0xFFFFFFFF  # RFC 9001 §4.6.1
    assert len(server_config.tickets) == 1


# -- resumption and 0-RTT -----------------------------------------------------------------------


def test_zero_rtt_brings_the_response_after_one_round_trip():
    server, client_config, ticket = warm()
    path = connect(server, client_config, ticket)

    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(1, abs=0.01)
    assert path.of("server", RequestReceived) == [RequestReceived("GET", "/", in_early_data=True)]
    # the server read the request before the client's Finished reached it
    assert path.time_of("server", RequestReceived) < path.time_of("server", HandshakeCompleted)
    (done,) = path.of("client", HandshakeCompleted)
    assert (done.resumed, done.early_data) == (True, "accepted")
    assert path.of("server", HandshakeCompleted)[0].early_data == "accepted"
    assert not path.of("client", EarlyDataResent)


def test_the_zero_rtt_request_is_coalesced_with_the_initial():
    server, client_config, ticket = warm()
    path = connect(server, client_config, ticket)
    first = path.datagrams("client")[0]
    assert len(first) == CLIENT_INITIAL_BYTES
    assert long_header_packets(first) == [QuicPacketType.INITIAL, QuicPacketType.ZERO_RTT]


def test_after_zero_rtt_the_new_ticket_arrives_a_round_trip_behind_the_response():
    server, client_config, ticket = warm()
    path = connect(server, client_config, ticket, until=response_arrived)
    assert path.client.session_ticket is None
    path.run(response_and_ticket)
    assert (path.now - path.sent[0][0]) / RTT_S == pytest.approx(2, abs=0.01)
    assert path.client.session_ticket.ticket != ticket.ticket


def test_a_ticket_resumes_once():
    server, client_config, ticket = warm()
    connect(server, client_config, ticket)
    path = connect(server, client_config, ticket)
    (done,) = path.of("client", HandshakeCompleted)
    assert (done.resumed, done.early_data) == (False, "rejected")
    assert path.of("client", ResponseReceived)


def test_a_client_may_resume_without_early_data():
    server, client_config, ticket = warm()
    path = connect(server, client_config, ticket, early_data=False)
    assert long_header_packets(path.datagrams("client")[0]) == [QuicPacketType.INITIAL]
    (done,) = path.of("client", HandshakeCompleted)
    assert (done.resumed, done.early_data) == (True, "none")
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(2, abs=0.01)


@pytest.mark.parametrize("eager_resend, round_trips", [(True, 2), (False, 3)])
def test_refused_early_data_resumes_and_the_request_is_sent_again_once(eager_resend, round_trips):
    """A server that refuses 0-RTT still accepts the PSK (RFC 8446 §4.2.10); the client resends.

    aioquic on its own resends only when loss detection gives up on the 0-RTT packets, one
    round trip after the handshake; ``eager_resend`` resends with the client Finished.
    """
    server, client_config, ticket = warm(accept_early_data=False)
    assert ticket.max_early_data_size is not None  # the ticket still invites 0-RTT
    path = connect(server, client_config, ticket, eager_resend=eager_resend)

    assert long_header_packets(path.datagrams("client")[0]) == [QuicPacketType.INITIAL, QuicPacketType.ZERO_RTT]
    (done,) = path.of("client", HandshakeCompleted)
    assert (done.resumed, done.early_data) == (True, "rejected")
    assert path.of("server", HandshakeCompleted)[0] == HandshakeCompleted(
        "1.3", resumed=True, early_data="rejected", cipher="TLS_AES_256_GCM_SHA384"
    )
    assert len(path.of("client", EarlyDataResent)) == 1
    assert path.of("server", RequestReceived) == [RequestReceived("GET", "/", in_early_data=False)]
    assert path.of("client", ResponseReceived)[0].status == 200
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(round_trips, abs=0.05)


# -- Retry --------------------------------------------------------------------------------------


def test_retry_costs_one_round_trip():
    server_config, client_config = configs(retry=True)
    server = QuicHttpServer(server_config)
    path = connect(server, client_config)

    retry = path.datagrams("server")[0]
    assert retry[0] & 0x80 and (retry[0] & 0x30) >> 4 == 3  # long header, type Retry (RFC 9000 §17.2.5)
    assert long_header_packets(retry) == [QuicPacketType.RETRY]
    assert server.retries_sent == 1
    assert path.of("client", HandshakeCompleted) and path.of("server", HandshakeCompleted)
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(3, abs=0.01)


def test_zero_rtt_after_a_retry_is_sent_again_to_the_new_connection_id():
    """aioquic forgets 0-RTT packets sent before a Retry; the client must resend their data."""
    server, client_config, ticket = warm(retry=True)
    path = connect(server, client_config, ticket)
    assert path.of("server", RequestReceived) == [RequestReceived("GET", "/", in_early_data=True)]
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(2, abs=0.01)


def test_a_forged_retry_token_is_answered_with_invalid_token():
    server_config, client_config = configs(retry=True)
    server = QuicHttpServer(server_config)
    quic = QuicConnection(
        configuration=QuicConfiguration(
            is_client=True, alpn_protocols=["h3"], server_name="server.test",
            cadata=client_config.ca_pem, token=b"\x01" * 40,
        )
    )
    quic.connect(SERVER_ADDR, 0.0)
    for data, _ in quic.datagrams_to_send(0.0):
        server.receive_datagram(data, CLIENT_ADDR, 0.05)
    answer = server.datagrams_to_send(0.05)
    assert server.connections == 0 and len(answer) == 1
    quic.receive_datagram(answer[0][0], SERVER_ADDR, 0.1)
    quic.handle_timer(quic.get_timer())
    terminated = [e for e in iter(quic.next_event, None) if isinstance(e, quic_events.ConnectionTerminated)]
    assert terminated[0].error_code == QuicErrorCode.INVALID_TOKEN


# -- anti-amplification -------------------------------------------------------------------------


def test_a_big_chain_stalls_the_server_at_three_times_what_the_client_sent():
    """RFC 9000 §8.1: before the client's address is validated, 3x its bytes at most."""
    chain = make_chain("rsa2048", 4)
    server_config, client_config = configs(chain)
    path = connect(QuicHttpServer(server_config), client_config)

    first_answer = sum(len(data) for t, who, data in path.sent if who == "server" and t < RTT_S)
    assert first_answer == 3 * CLIENT_INITIAL_BYTES
    later = [t for t, who, _ in path.sent if who == "server" and t >= RTT_S]
    assert later and min(later) == pytest.approx(1.5 * RTT_S)  # released by the client's ACK
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(3, abs=0.01)


def test_the_default_chain_fits_in_the_first_flight():
    server_config, client_config = configs()
    path = connect(QuicHttpServer(server_config), client_config)
    first_answer = sum(len(data) for t, who, data in path.sent if who == "server" and t < RTT_S)
    assert first_answer < 3 * CLIENT_INITIAL_BYTES
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(2, abs=0.01)


@settings(max_examples=12, deadline=None)
@given(delay_ms=st.integers(min_value=1, max_value=120), zero_rtt=st.booleans())
def test_round_trips_do_not_depend_on_the_rtt(delay_ms, zero_rtt):
    server, client_config, ticket = warm()
    path = connect(server, client_config, ticket if zero_rtt else None, delay=delay_ms / 1000)
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(1 if zero_rtt else 2, abs=0.01)


def test_flight_sizes_do_not_vary_between_runs():
    """Random CIDs, keys and ECDSA signatures must not move the sizes (a chain at the limit
    would flip between 2 and 3 round trips)."""
    server_config, client_config = configs()
    server = QuicHttpServer(server_config)
    sizes = {
        tuple((who, len(data)) for _, who, data in connect(server, client_config).sent) for _ in range(4)
    }
    assert len(sizes) == 1


# -- the server endpoint ------------------------------------------------------------------------


def test_one_server_routes_interleaved_connections_by_connection_id():
    server_config, client_config = configs()
    server = QuicHttpServer(server_config)
    clients = [QuicHttpClient(client_config, server_addr=SERVER_ADDR) for _ in range(2)]
    in_flight = []
    now = 0.0
    for client in clients:
        client.start(now)
    for _ in range(8):
        for index, client in enumerate(clients):
            in_flight += [(data, ("198.18.0.1", 50000 + index)) for data, _ in client.datagrams_to_send(now)]
        now += DELAY_S
        for data, addr in reversed(in_flight):  # interleaved, newest first
            server.receive_datagram(data, addr, now)
        in_flight = []
        now += DELAY_S
        for data, (_, port) in server.datagrams_to_send(now):
            clients[port - 50000].receive_datagram(data, SERVER_ADDR, now)
    assert all(client.response is not None and client.response.status == 200 for client in clients)
    assert server.connections == 2
    requests = [e for e in iter(server.next_event, None) if isinstance(e, RequestReceived)]
    assert len(requests) == 2


def test_datagrams_that_are_not_quic_are_dropped_and_unknown_versions_negotiated():
    server = QuicHttpServer(configs()[0])
    server.receive_datagram(b"\x00", CLIENT_ADDR, 0.0)
    assert server.datagrams_to_send(0.0) == []
    unknown_version = bytes([0xC0]) + bytes.fromhex("1a2a3a4a") + b"\x08" + b"D" * 8 + b"\x08" + b"S" * 8
    server.receive_datagram(unknown_version + bytes(1200), CLIENT_ADDR, 0.0)
    ((answer, addr),) = server.datagrams_to_send(0.0)
    header = pull_quic_header(Buffer(data=answer), host_cid_length=8)
    assert header.packet_type == QuicPacketType.VERSION_NEGOTIATION and 1 in header.supported_versions
    assert addr == CLIENT_ADDR and server.connections == 0


def test_closed_connections_are_released_and_200_of_them_leak_nothing():
    server_config, client_config = configs()
    server = QuicHttpServer(server_config)
    connections = weakref.WeakSet()

    def one(ticket):
        path = connect(server, client_config, ticket)
        connections.update(c.quic for c in server._live.values())
        connections.add(path.client.quic)
        path.client.close()
        path.run(lambda p: server.connections == 0)
        return path.client.session_ticket

    ticket = one(None)
    for _ in range(10):
        ticket = one(ticket)
    gc.collect()
    objects_before = len(gc.get_objects())
    for _ in range(200):
        ticket = one(ticket)
    gc.collect()
    assert server.connections == 0 and not server._connections
    assert len(connections) == 0  # every QuicConnection, client's and server's, was freed
    assert len(server_config.tickets) == 1  # each resumption used its ticket up
    assert len(gc.get_objects()) - objects_before < 500


def test_a_server_holds_connections_until_they_end():
    server_config, client_config = configs()
    server = QuicHttpServer(server_config)
    for _ in range(3):
        connect(server, client_config)
    assert server.connections == 3  # until the idle timeout, without a CONNECTION_CLOSE


# -- key logs ------------------------------------------------------------------------------------


FULL_LABELS = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
}


def keylog(path) -> list[tuple[str, str, str]]:
    return [tuple(line.split()) for line in path.read_text().splitlines()]


def test_key_logs_are_private_and_hold_every_quic_secret(tmp_path):
    chain = make_chain()
    server_log, client_log = tmp_path / "server.keys", tmp_path / "client.keys"
    server = QuicHttpServer(QuicServerConfig(chain, keylog_path=server_log))
    client_config = QuicClientConfig.for_chain(chain, keylog_path=client_log)
    ticket = connect(server, client_config).client.session_ticket
    connect(server, client_config, ticket)

    for log in (server_log, client_log):
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
        lines = keylog(log)
        assert all(len(client_random) == 64 and len(secret) in (64, 96) for _, client_random, secret in lines)
        randoms = list(dict.fromkeys(client_random for _, client_random, _ in lines))
        assert len(randoms) == 2  # one per connection, read right after the exchange (flushed)
        full = {label for label, client_random, _ in lines if client_random == randoms[0]}
        resumed = {label for label, client_random, _ in lines if client_random == randoms[1]}
        assert full == FULL_LABELS
        assert resumed == FULL_LABELS | {"CLIENT_EARLY_TRAFFIC_SECRET"}


def test_a_key_log_is_appended_to_and_made_private(tmp_path):
    log = tmp_path / "keys"
    log.write_text("EARLIER line\n")
    os.chmod(log, 0o644)
    chain = make_chain()
    connect(QuicHttpServer(QuicServerConfig(chain)), QuicClientConfig.for_chain(chain, keylog_path=log))
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert log.read_text().startswith("EARLIER line\n") and len(keylog(log)) == 5


# -- what aioquic cannot do ----------------------------------------------------------------------


HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167bbb8c5e079e09e2c8a8339c")


def test_aioquic_has_no_hello_retry_request():
    """No HRR state on either side, and its client fails on one (RFC 8446 §4.1.4): QUIC rows
    report HelloRetryRequest as unsupported."""
    assert not [state for state in tls.State if "RETRY" in state.name]
    client = tls.Context(is_client=True, alpn_protocols=["h3"], server_name="server.test")
    buffers = {epoch: Buffer(capacity=4096) for epoch in tls.Epoch}
    client.handle_message(b"", buffers)  # ClientHello
    extensions = bytes.fromhex("002b00020304" "003300020017")  # supported_versions 1.3, key_share: P-256
    body = (
        b"\x03\x03" + HELLO_RETRY_REQUEST_RANDOM + b"\x00" + b"\x13\x01" + b"\x00"
        + len(extensions).to_bytes(2, "big") + extensions
    )
    with pytest.raises(tls.AlertDecodeError):
        client.handle_message(b"\x02" + len(body).to_bytes(3, "big") + body, buffers)


def test_a_client_whose_server_goes_away_reports_it():
    chain = make_chain()
    client = QuicHttpClient(QuicClientConfig.for_chain(chain), server_addr=SERVER_ADDR)
    client.start(0.0)
    with pytest.raises(TlsError, match="closed before the response"):
        while (timer := client.get_timer()) is not None:
            client.handle_timer(timer)
            client.datagrams_to_send(timer)


# -- server time -----------------------------------------------------------------------------------


def test_a_server_time_delays_only_the_answer_not_the_ticket_or_handshake_done():
    server_config, client_config = configs(server_time_s=0.25)
    client = QuicHttpClient(client_config, None, server_addr=SERVER_ADDR)
    path = Path(client, QuicHttpServer(server_config))
    path.run(lambda p: p.client.session_ticket is not None)
    assert client.response is None  # the ticket came first, at once on the client's Finished
    path.run(response_arrived)
    request_at = path.time_of("server", RequestReceived)
    assert path.time_of("client", ResponseReceived) == pytest.approx(request_at + 0.25 + DELAY_S)
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(2 + 0.25 / RTT_S, abs=0.01)
    server_sent = [t for t, who, _ in path.sent if who == "server"]
    assert request_at in server_sent  # HANDSHAKE_DONE, the ticket, ACKs: not held
    assert request_at + 0.25 in server_sent  # the answer


def test_a_zero_rtt_request_is_answered_after_the_server_time():
    server, client_config, ticket = warm(server_time_s=0.25)
    path = connect(server, client_config, ticket, until=response_arrived)
    assert path.of("server", RequestReceived) == [RequestReceived("GET", "/", in_early_data=True)]
    assert path.time_of("server", RequestReceived) == pytest.approx(DELAY_S)
    assert path.round_trips_to("client", ResponseReceived) == pytest.approx(1 + 0.25 / RTT_S, abs=0.01)
