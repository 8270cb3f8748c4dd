import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.endpoints import (
    HandshakeCompleted,
    RequestReceived,
    ResponseReceived,
    TlsClientConfig,
    TlsError,
    TlsHttpClient,
    TlsHttpServer,
    TlsServerConfig,
    make_chain,
)

from .drive import exchange, timed_exchange, tls_records


def configs(version, **server_options):
    chain = make_chain()
    return TlsServerConfig(chain, version=version, **server_options), TlsClientConfig.for_chain(chain, version=version)


def connect(server_config, client_config, session=None, **client_options):
    client = TlsHttpClient(client_config, session, **client_options)
    transcript = exchange(client, TlsHttpServer(server_config))
    return client, transcript


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_full_handshake_negotiates_the_configured_version(version):
    client, transcript = connect(*configs(version))
    (done,) = transcript.of("client", HandshakeCompleted)
    assert (done.tls_version, done.resumed, done.early_data) == (version, False, "none")
    assert transcript.of("server", HandshakeCompleted)[0].tls_version == version
    assert transcript.of("server", RequestReceived)[0].in_early_data is False
    assert transcript.of("client", ResponseReceived)[0].status == 200


def test_tls12_full_handshake_needs_two_round_trips_before_the_request():
    """No False Start: the GET waits for the server's Finished (flight 4), the response is flight 6."""
    _, transcript = connect(*configs("1.2"))
    assert transcript.flight_of("client", HandshakeCompleted) == 4
    assert transcript.flight_of("client", ResponseReceived) == 6


def test_tls13_full_handshake_sends_the_request_with_the_client_finished():
    _, transcript = connect(*configs("1.3"))
    assert transcript.flight_of("client", HandshakeCompleted) == 2
    assert transcript.flight_of("server", RequestReceived) == 3
    assert transcript.flight_of("client", ResponseReceived) == 4


@pytest.mark.parametrize(
    ("version", "tickets"),
    [("1.2", True), ("1.2", False), ("1.3", True)],
    ids=["tls12-ticket", "tls12-session-id", "tls13-psk"],
)
def test_a_session_from_the_same_client_config_resumes(version, tickets):
    server_config, client_config = configs(version, tickets=tickets)
    warm, _ = connect(server_config, client_config)
    assert warm.session is not None
    _, transcript = connect(server_config, client_config, warm.session)
    assert transcript.of("client", HandshakeCompleted)[0].resumed
    assert transcript.of("server", HandshakeCompleted)[0].resumed
    assert transcript.of("client", ResponseReceived)[0].status == 200


def test_tls12_resumption_answers_one_round_trip_sooner():
    server_config, client_config = configs("1.2")
    warm, full = connect(server_config, client_config)
    _, resumed = connect(server_config, client_config, warm.session)
    assert resumed.flight_of("client", ResponseReceived) == full.flight_of("client", ResponseReceived) - 2


def test_tls13_without_tickets_cannot_resume():
    server_config, client_config = configs("1.3", tickets=False)
    warm, _ = connect(server_config, client_config)
    _, transcript = connect(server_config, client_config, warm.session)
    assert not transcript.of("client", HandshakeCompleted)[0].resumed


def test_a_session_is_refused_by_a_fresh_client_config():
    server_config, client_config = configs("1.3")
    warm, _ = connect(server_config, client_config)
    fresh_config = TlsClientConfig.for_chain(make_chain(), version="1.3")
    with pytest.raises(ValueError):  # OpenSSL refuses a session from another context
        connect(server_config, fresh_config, warm.session)


def test_a_fresh_server_config_makes_a_full_handshake():
    server_config, client_config = configs("1.3")
    warm, _ = connect(server_config, client_config)
    _, transcript = connect(TlsServerConfig(make_chain(), version="1.3"), client_config, warm.session)
    assert not transcript.of("client", HandshakeCompleted)[0].resumed


def test_session_is_offered_only_after_the_response():
    server_config, client_config = configs("1.3")
    client = TlsHttpClient(client_config)
    client.start(0.0)
    assert client.session is None


def test_untrusted_server_fails_the_handshake():
    server_config, _ = configs("1.3")
    stranger = TlsClientConfig.for_chain(make_chain(server_name="other.test"), version="1.3")
    stranger = TlsClientConfig(stranger.ca_pem, server_name="server.test", version="1.3")
    with pytest.raises(TlsError, match="certificate verify failed"):
        connect(server_config, stranger)


def test_tls12_key_log_is_owner_only_with_client_random(tmp_path):
    chain = make_chain()
    path = tmp_path / "keys.log"
    client_config = TlsClientConfig.for_chain(chain, version="1.2", keylog_path=path)
    connect(TlsServerConfig(chain, version="1.2"), client_config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines and all(line.startswith("CLIENT_RANDOM ") for line in lines)


def test_tls13_key_log_names_the_handshake_and_traffic_secrets(tmp_path):
    chain = make_chain()
    path = tmp_path / "server-keys.log"
    connect(TlsServerConfig(chain, version="1.3", keylog_path=path), TlsClientConfig.for_chain(chain))
    labels = {line.split()[0] for line in path.read_text().splitlines()}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
            "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels


def test_close_sends_close_notify():
    server_config, client_config = configs("1.3")
    client, _ = connect(server_config, client_config)
    client.close()
    assert client.data_to_send()[:1] == b"\x17"  # the alert, encrypted as application data


@settings(max_examples=15, deadline=None)
@given(
    version=st.sampled_from(["1.2", "1.3"]),
    chunk_bytes=st.integers(min_value=1, max_value=1500),
    body_bytes=st.integers(min_value=0, max_value=40000),
)
def test_any_segmentation_delivers_the_whole_response(version, chunk_bytes, body_bytes):
    server_config, client_config = _cached_configs(version)
    client = TlsHttpClient(client_config)
    transcript = exchange(client, TlsHttpServer(server_config, body_bytes=body_bytes), chunk_bytes=chunk_bytes)
    assert len(transcript.of("client", ResponseReceived)[0].body) == body_bytes


_CONFIGS: dict = {}


def _cached_configs(version):
    if version not in _CONFIGS:
        _CONFIGS[version] = configs(version)
    return _CONFIGS[version]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_long_rsa_chain_is_sent_whole_and_verifies(version):
    chain = make_chain("rsa2048", 3)
    server_config = TlsServerConfig(chain, version=version)
    _, transcript = connect(server_config, TlsClientConfig.for_chain(chain, version=version))
    assert transcript.of("client", ResponseReceived)
    assert transcript.sent_by("server") > sum(chain.der_sizes)


def test_bytes_arriving_after_close_are_dropped():
    server_config, client_config = configs("1.3")
    client = TlsHttpClient(client_config)
    server = TlsHttpServer(server_config)
    exchange(client, server)
    client.close()
    server.receive(client.data_to_send(), 1.0)
    server.close()
    client.receive(server.data_to_send(), 1.0)
    assert client.next_event() is None


# -- server time -----------------------------------------------------------------------------------


def test_tls13_tickets_leave_on_the_finished_and_only_the_answer_waits_for_the_server_time():
    """OpenSSL writes its NewSessionTickets as it reads the client's Finished, which arrives with
    the request: they leave at once, the answer 250 ms later (what makes server time hard to tell
    from a round trip without keys, DESIGN.md §6)."""
    server_config, client_config = configs("1.3")
    client = TlsHttpClient(client_config)
    server = TlsHttpServer(server_config, server_time_s=0.25)
    wire = timed_exchange(client, server, delay_s=0.05)
    request_at = wire.time_of("server", RequestReceived)
    assert request_at == pytest.approx(0.15)  # ClientHello 0 → flight 0.05 → Finished + GET 0.1
    flights = wire.sent_by("server")
    assert [t for t, _ in flights] == pytest.approx([0.05, request_at, request_at + 0.25])
    assert [len(tls_records(data)) for _, data in flights[1:]] == [2, 1]  # two tickets, then the answer
    assert wire.time_of("client", ResponseReceived) == pytest.approx(request_at + 0.25 + 0.05)
    assert client.session is not None and client.session.has_ticket
    assert server.get_timer() is None


def test_tls12_answer_waits_for_the_server_time_and_nothing_leaves_meanwhile():
    server_config, client_config = configs("1.2")
    wire = timed_exchange(TlsHttpClient(client_config), TlsHttpServer(server_config, server_time_s=0.25), delay_s=0.05)
    request_at = wire.time_of("server", RequestReceived)
    assert request_at == pytest.approx(0.25)  # no False Start: the GET follows the server's Finished
    assert [t for t, _ in wire.sent_by("server")] == pytest.approx([0.05, 0.15, request_at + 0.25])
    assert wire.time_of("client", ResponseReceived) == pytest.approx(request_at + 0.30)


def test_a_closed_server_holds_nothing():
    server_config, client_config = configs("1.3")
    client, server = TlsHttpClient(client_config), TlsHttpServer(server_config, server_time_s=0.25)
    server.start(0.0)
    client.start(0.0)
    server.receive(client.data_to_send(), 0.0)  # ClientHello
    client.receive(server.data_to_send(), 0.0)  # the server's flight
    server.receive(client.data_to_send(), 0.0)  # Finished + GET
    assert server.get_timer() == 0.25
    assert len(tls_records(server.data_to_send())) == 2  # the tickets, not the answer
    server.close()
    assert len(tls_records(server.data_to_send())) == 1  # close_notify
    assert server.get_timer() is None
    server.handle_timer(1.0)  # no write on a freed connection
    assert server.data_to_send() == b""
