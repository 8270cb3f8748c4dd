"""HTTP/2 over TLS (ALPN "h2"): the sans-IO exchanges on their own, then inside both TLS stacks."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.endpoints import (
    EarlyClientConfig,
    EarlyHttpClient,
    EarlyHttpServer,
    EarlyServerConfig,
    HandshakeCompleted,
    RequestReceived,
    ResponseReceived,
    TlsClientConfig,
    TlsHttpClient,
    TlsHttpServer,
    TlsServerConfig,
    make_chain,
)
from handshake.endpoints.http1 import CLIENT_ALPN, object_target, requested_bytes, response_body
from handshake.endpoints.http2 import CLIENT_STREAM_WINDOW, Http2ClientExchange, Http2ServerExchange

from .drive import exchange, shuttle

H2_DEFAULT_WINDOW = 65535


def _read_by_a_client(data: bytes) -> list[object]:
    """What a client's h2 reads in the server's ``data`` (events)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    return list(client.receive_data(data))


def test_the_server_says_settings_at_once_and_answers_only_the_request():
    server = Http2ServerExchange(body_bytes=64)
    settings_only = server.data_to_send()
    assert any(isinstance(e, h2.events.RemoteSettingsChanged) for e in _read_by_a_client(settings_only))
    client = Http2ClientExchange("server.test", object_target(7, 100))
    (request,) = server.receive(client.request(), now=1.0)
    assert request == RequestReceived("GET", "/object/7?bytes=100", in_early_data=False)
    assert server.due(1.0) and server.respond_at == 1.0
    assert client.receive(settings_only) == [] and not client.response_started
    (response,) = client.receive(server.data_to_send() + server.response())
    assert (response.status, response.http_version, response.target) == (200, "2", "/object/7?bytes=100")
    assert response.body == response_body(100) and dict(response.headers)["content-length"] == "100"


def test_the_server_holds_its_answer_for_the_server_time():
    server = Http2ServerExchange(body_bytes=10, server_time_s=0.25)
    server.receive(Http2ClientExchange("server.test").request(), now=1.0)
    assert not server.due(1.2) and server.due(1.25)


def test_the_client_opens_its_windows_as_chrome_does():
    client = Http2ClientExchange("server.test")
    events = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False)).receive_data(client.request())
    settings_event = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    assert settings_event.changed_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE].new_value == CLIENT_STREAM_WINDOW
    raise_ = next(e for e in events if isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0)
    assert raise_.delta == 15 * 1024 * 1024


@settings(max_examples=30, deadline=None)
@given(body_bytes=st.integers(0, 300_000), chunk=st.integers(1, 20_000))
def test_a_client_with_h2s_default_windows_gets_every_byte_as_it_opens_them(body_bytes, chunk):
    """RFC 9113 §6.9: the server sends no more than the windows allow (65,535 bytes each at first),
    the rest as the client's WINDOW_UPDATEs come, whatever the segmentation."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "s"), (":path", "/")],
                        end_stream=True)
    server = Http2ServerExchange(body_bytes)
    assert server.receive(client.data_to_send(), now=0.0)
    pending = server.data_to_send() + server.response()
    body, ended, window_seen = bytearray(), False, 0
    while pending and not ended:
        unread = 0
        for offset in range(0, len(pending), chunk):
            for event in client.receive_data(pending[offset:offset + chunk]):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    unread += event.flow_controlled_length
                    client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                ended = ended or isinstance(event, h2.events.StreamEnded)
        window_seen = max(window_seen, unread)
        server.receive(client.data_to_send(), now=0.0)
        pending = server.data_to_send()
    assert ended and bytes(body) == response_body(body_bytes)
    assert window_seen <= H2_DEFAULT_WINDOW


def _h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: CLIENT_STREAM_WINDOW})
    client.initiate_connection()
    client.increment_flow_control_window(15 * 1024 * 1024)
    return client


def _get(client: h2.connection.H2Connection, target: str) -> int:
    stream_id = client.get_next_available_stream_id()
    client.send_headers(stream_id, [(":method", "GET"), (":scheme", "https"), (":authority", "s"),
                                    (":path", target)], end_stream=True)
    return stream_id


def test_every_stream_gets_the_body_its_target_asks_for_and_an_unknown_one_404():
    client = _h2_client()
    streams = {_get(client, object_target(i, size)): size for i, size in enumerate((0, 1, 40_000, 100_000))}
    unknown = _get(client, "/favicon.ico")
    server = Http2ServerExchange(body_bytes=64)
    requests = server.receive(client.data_to_send(), now=0.0)
    assert [r.target for r in requests] == [object_target(i, s) for i, s in enumerate((0, 1, 40_000, 100_000))] + [
        "/favicon.ico"]
    bodies: dict[int, bytearray] = {}
    status: dict[int, str] = {}
    for event in client.receive_data(server.data_to_send() + server.response()):
        if isinstance(event, h2.events.ResponseReceived):
            status[event.stream_id] = dict(event.headers)[b":status"].decode()
        elif isinstance(event, h2.events.DataReceived):
            bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
    assert {sid: bytes(bodies.get(sid, b"")) for sid in streams} == {sid: response_body(n) for sid, n in streams.items()}
    assert status[unknown] == "404" and all(status[sid] == "200" for sid in streams)


def test_bodies_under_way_share_the_connection_a_frame_at_a_time():
    """Two 50 KB answers due together: their DATA frames alternate (round robin), so neither
    stream's last byte waits for the other's whole body."""
    client = _h2_client()
    first, second = _get(client, object_target(1, 50_000)), _get(client, object_target(2, 50_000))
    server = Http2ServerExchange(body_bytes=64)
    server.receive(client.data_to_send(), now=0.0)
    order = [e.stream_id for e in client.receive_data(server.data_to_send() + server.response())
             if isinstance(e, h2.events.DataReceived)]
    assert order[:4] == [first, second, first, second] and order.count(first) == order.count(second)


def test_each_request_waits_its_own_server_time():
    client = _h2_client()
    server = Http2ServerExchange(body_bytes=64, server_time_s=0.1)
    _get(client, object_target(1, 10))
    server.receive(client.data_to_send(), now=1.0)
    _get(client, object_target(2, 10))
    server.receive(client.data_to_send(), now=1.05)
    assert server.respond_at == 1.1 and server.due(1.1) and not server.due(1.09)
    server.response()
    assert server.respond_at == pytest.approx(1.15) and not server.due(1.1)


@given(st.integers(0, 1 << 30), st.integers(0, 10_000))
def test_an_object_target_asks_for_its_size(size, index):
    assert requested_bytes(object_target(index, size), default=64) == size
    assert requested_bytes("/", default=64) == 64
    assert requested_bytes(f"/object/{index}?bytes=-1", default=64) is None


# --- inside TLS: ALPN picks the exchange ---------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("http, alpn", [("2", "h2"), ("1.1", "http/1.1")])
def test_alpn_settles_the_http_version_over_stdlib_tls(version, http, alpn):
    chain = make_chain()
    client = TlsHttpClient(TlsClientConfig.for_chain(chain, version=version, alpn=CLIENT_ALPN[http]))
    transcript = exchange(client, TlsHttpServer(TlsServerConfig(chain, version=version), body_bytes=5000))
    (response,) = transcript.of("client", ResponseReceived)
    assert client.alpn == alpn
    assert (response.http_version, response.body) == (http, response_body(5000))


def test_a_client_offering_no_alpn_gets_http1():
    chain = make_chain()
    client = TlsHttpClient(TlsClientConfig.for_chain(chain))
    transcript = exchange(client, TlsHttpServer(TlsServerConfig(chain)))
    assert client.alpn is None and transcript.of("client", ResponseReceived)[0].http_version == "1.1"


def test_http2_costs_tls13_no_round_trip_the_request_rides_with_the_finished():
    """The client's preface, SETTINGS and HEADERS leave with its Finished (flight 3), and the
    answer with the server's next flight: what HTTP/1.1 costs."""
    chain = make_chain()
    transcripts = {}
    for http in ("1.1", "2"):
        client = TlsHttpClient(TlsClientConfig.for_chain(chain, alpn=CLIENT_ALPN[http]))
        transcripts[http] = exchange(client, TlsHttpServer(TlsServerConfig(chain)))
    assert transcripts["2"].flight_of("server", RequestReceived) == transcripts["1.1"].flight_of(
        "server", RequestReceived) == 3
    assert transcripts["2"].flight_of("client", ResponseReceived) == transcripts["1.1"].flight_of(
        "client", ResponseReceived) == 4


def test_early_data_speaks_http2_when_the_ticket_settled_h2():
    """The libssl server picks h2 by its ALPN callback; the 0-RTT request is HTTP/2 (the ticket's
    protocol, RFC 8446 §4.2.10) and its answer comes in the server's first flight."""
    chain = make_chain()
    server_config = EarlyServerConfig(chain)
    client_config = EarlyClientConfig.for_chain(chain, alpn=CLIENT_ALPN["2"])
    warm = EarlyHttpClient(client_config)
    exchange(warm, EarlyHttpServer(server_config))
    assert warm.alpn == "h2"
    client = EarlyHttpClient(client_config, warm.session)
    transcript = exchange(client, EarlyHttpServer(server_config))
    (request,) = transcript.of("server", RequestReceived)
    (response,) = transcript.of("client", ResponseReceived)
    (done,) = transcript.of("client", HandshakeCompleted)
    assert request.in_early_data and done.early_data == "accepted"
    assert response.http_version == "2" and transcript.flight_of("client", ResponseReceived) == 2


def test_the_libssl_server_answers_http1_to_a_client_without_h2():
    chain = make_chain()
    client = EarlyHttpClient(EarlyClientConfig.for_chain(chain, alpn=CLIENT_ALPN["1.1"]))
    transcript = exchange(client, EarlyHttpServer(EarlyServerConfig(chain)))
    assert client.alpn == "http/1.1" and transcript.of("client", ResponseReceived)[0].http_version == "1.1"


# --- a page: more GETs after the first answer -----------------------------------------------------

PAGE = [object_target(i, size) for i, size in enumerate((20_000, 3_000, 0, 70_000), start=1)]


@pytest.mark.parametrize("http", ["2", "1.1"])
def test_a_tls_client_fetches_a_page_after_its_first_answer(http):
    """HTTP/2 asks for every object at once, one stream each, so all answers come in the next
    server flight; HTTP/1.1 asks for them one at a time on the connection, a flight pair each."""
    chain = make_chain()
    client = TlsHttpClient(TlsClientConfig.for_chain(chain, alpn=CLIENT_ALPN[http]))
    server = TlsHttpServer(TlsServerConfig(chain))
    transcript = exchange(client, server)
    first_done = len(transcript.flights)
    client.fetch(PAGE)
    shuttle(client, server, transcript)
    responses = {r.target: len(r.body) for r in transcript.of("client", ResponseReceived)}
    assert responses == {"/": 64, **{target: int(target.split("=")[1]) for target in PAGE}}
    requests = [(n, e.target) for who, n, e in transcript.events if who == "server" and isinstance(e, RequestReceived)]
    assert [target for _, target in requests] == ["/", *PAGE]
    flights = [n for n, target in requests if target != "/"]
    if http == "2":
        assert len(set(flights)) == 1 and flights[0] == first_done + 1  # all in one flight
    else:
        assert flights == sorted(set(flights)) and len(set(flights)) == len(PAGE)  # one at a time


def test_a_quic_client_fetches_a_page_on_streams_of_its_own():
    from handshake.endpoints.quic_client import QuicHttpClient
    from handshake.endpoints.quic_config import QuicClientConfig, QuicServerConfig
    from handshake.endpoints.quic_server import QuicHttpServer

    from .test_quic import SERVER_ADDR, Path as QuicPath

    chain = make_chain()
    client = QuicHttpClient(QuicClientConfig.for_chain(chain), server_addr=SERVER_ADDR)
    path = QuicPath(client, QuicHttpServer(QuicServerConfig(chain)))
    path.run(lambda p: p.client.response is not None)
    client.fetch(PAGE)
    path.run(lambda p: p.client.done)
    assert {r.target: len(r.body) for r in client.responses} == {
        "/": 64, **{target: int(target.split("=")[1]) for target in PAGE}}
