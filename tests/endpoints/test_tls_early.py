import gc
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.endpoints import (
    EarlyClientConfig,
    EarlyDataResent,
    EarlyHttpClient,
    EarlyHttpServer,
    EarlyServerConfig,
    HandshakeCompleted,
    RequestReceived,
    ResponseReceived,
    TlsError,
    make_chain,
)
from handshake.endpoints import tls_early

from .drive import exchange, timed_exchange, tls_records

HANDSHAKE, CHANGE_CIPHER_SPEC, APPLICATION_DATA = 0x16, 0x14, 0x17


def configs(keylog_path=None):
    chain = make_chain()
    return EarlyServerConfig(chain, keylog_path=keylog_path), EarlyClientConfig.for_chain(chain)


def connect(server_config, client_config, session=None, *, accept_early_data=True, chunk_bytes=None, **options):
    client = EarlyHttpClient(client_config, session, **options)
    server = EarlyHttpServer(server_config, accept_early_data=accept_early_data)
    transcript = exchange(client, server, chunk_bytes=chunk_bytes)
    client.close()
    server.close()
    return client, transcript


@pytest.fixture
def warm():
    """Configs plus a ticket from a warm-up connection (each ticket is good for one 0-RTT)."""
    server_config, client_config = configs()
    client, _ = connect(server_config, client_config)
    return server_config, client_config, client.session


def test_warm_up_is_a_full_tls13_handshake_and_yields_an_early_data_ticket(warm):
    _, _, session = warm
    assert session.resumable and session.max_early_data == 16384


def test_accepted_early_data_carries_the_request_in_the_first_flight(warm):
    client, transcript = connect(*warm)
    (request,) = transcript.of("server", RequestReceived)
    assert request.in_early_data
    assert transcript.flight_of("server", RequestReceived) == 1
    (done,) = transcript.of("client", HandshakeCompleted)
    assert (done.tls_version, done.resumed, done.early_data) == ("1.3", True, "accepted")
    assert transcript.of("server", HandshakeCompleted)[0].early_data == "accepted"
    assert not transcript.of("client", EarlyDataResent)


def test_first_flight_is_client_hello_then_early_application_data(warm):
    server_config, client_config, session = warm
    client = EarlyHttpClient(client_config, session)
    client.start(0.0)
    first_flight = client.data_to_send()
    records = tls_records(first_flight)
    assert records[0][0] == HANDSHAKE
    types = [kind for kind, _ in records]
    assert APPLICATION_DATA in types[1:]
    client_hello_bytes = 5 + records[0][1]
    assert len(first_flight) > client_hello_bytes
    client.close()


def test_response_comes_back_in_the_servers_first_flight(warm):
    """0.5-RTT: the client needs no second round trip (HTTP answered after 2 flights, not 4)."""
    _, transcript = connect(*warm)
    assert transcript.flight_of("client", ResponseReceived) == 2
    assert transcript.of("client", ResponseReceived)[0].status == 200
    assert [who for who, _ in transcript.flights[:2]] == ["client", "server"]


def test_a_fresh_ticket_arrives_after_0rtt_so_the_next_connection_is_0rtt_again(warm):
    server_config, client_config, session = warm
    first, _ = connect(server_config, client_config, session)
    _, transcript = connect(server_config, client_config, first.session)
    assert transcript.of("server", RequestReceived)[0].in_early_data


def test_a_used_ticket_is_not_offered_again(warm):
    """RFC 8446 §C.4: clients SHOULD NOT reuse a ticket; OpenSSL marks it non-resumable."""
    server_config, client_config, session = warm
    connect(server_config, client_config, session)
    assert not session.resumable
    client, again = connect(server_config, client_config, session)
    done = again.of("client", HandshakeCompleted)[0]
    assert (done.resumed, done.early_data) == (False, "none")
    assert not client.early_data_sent
    assert again.of("client", ResponseReceived)[0].status == 200


def test_rejected_early_data_is_resent_after_a_resumed_handshake(warm):
    _, transcript = connect(*warm, accept_early_data=False)
    (done,) = transcript.of("client", HandshakeCompleted)
    assert (done.resumed, done.early_data) == (True, "rejected")
    assert transcript.of("server", HandshakeCompleted)[0].early_data == "rejected"
    assert len(transcript.of("client", EarlyDataResent)) == 1
    (request,) = transcript.of("server", RequestReceived)
    assert not request.in_early_data
    assert transcript.flight_of("client", ResponseReceived) == 4
    assert transcript.of("client", ResponseReceived)[0].status == 200


def test_a_fresh_server_config_cannot_resume_and_rejects_early_data(warm):
    _, client_config, session = warm
    other_server, _ = configs()
    _, transcript = connect(other_server, client_config, session)
    done = transcript.of("client", HandshakeCompleted)[0]
    assert (done.resumed, done.early_data) == (False, "rejected")
    assert transcript.of("client", ResponseReceived)


def test_without_a_session_no_early_data_is_offered():
    client, transcript = connect(*configs())
    done = transcript.of("client", HandshakeCompleted)[0]
    assert (done.resumed, done.early_data) == (False, "none")
    assert not client.early_data_sent
    assert transcript.flight_of("client", ResponseReceived) == 4


def test_send_early_data_off_is_plain_psk_resumption(warm):
    _, transcript = connect(*warm, send_early_data=False)
    done = transcript.of("client", HandshakeCompleted)[0]
    assert (done.resumed, done.early_data) == (True, "none")
    assert transcript.flight_of("client", ResponseReceived) == 4


@pytest.mark.parametrize("side", ["client", "server"])
def test_key_log_is_owner_only_with_early_and_traffic_secrets(tmp_path, side):
    path = tmp_path / "keys.log"
    chain = make_chain()
    server_config = EarlyServerConfig(chain, keylog_path=path if side == "server" else None)
    client_config = EarlyClientConfig.for_chain(chain, keylog_path=path if side == "client" else None)
    warm_client, _ = connect(server_config, client_config)
    connect(server_config, client_config, warm_client.session)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    labels = {line.split()[0] for line in lines}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0", "CLIENT_EARLY_TRAFFIC_SECRET"} <= labels
    assert all(len(line.split()) == 3 for line in lines)  # NSS: label, client random, secret


@settings(max_examples=10, deadline=None)
@given(chunk_bytes=st.integers(min_value=1, max_value=600))
def test_any_segmentation_still_gets_0rtt(chunk_bytes):
    server_config, client_config = _shared_configs()
    warm_client, _ = connect(server_config, client_config, chunk_bytes=chunk_bytes)
    _, transcript = connect(server_config, client_config, warm_client.session, chunk_bytes=chunk_bytes)
    assert transcript.of("server", RequestReceived)[0].in_early_data
    assert transcript.of("client", ResponseReceived)


def test_many_0rtt_connections_do_not_leak():
    server_config, client_config = configs()
    warm_client, _ = connect(server_config, client_config)
    session = warm_client.session

    def run(count, close):
        nonlocal session
        for _ in range(count):
            client = EarlyHttpClient(client_config, session)
            server = EarlyHttpServer(server_config)
            transcript = exchange(client, server)
            assert transcript.of("server", RequestReceived)[0].in_early_data
            session = client.session
            if close:
                client.close()
                server.close()  # else the finalizers free them

    run(50, close=True)
    gc.collect()
    before = _rss_bytes()
    run(100, close=True)
    run(100, close=False)
    gc.collect()
    assert _rss_bytes() - before < 3_000_000
    assert len(tls_early._TICKETS) <= 1


def _rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_CONFIGS: list = []


def _shared_configs():
    if not _CONFIGS:
        _CONFIGS.extend(configs())
    return _CONFIGS


def test_a_long_rsa_chain_is_sent_whole_and_verifies():
    chain = make_chain("rsa2048", 3)
    client, transcript = connect(EarlyServerConfig(chain), EarlyClientConfig.for_chain(chain))
    assert transcript.of("client", ResponseReceived)
    assert transcript.sent_by("server") > sum(chain.der_sizes)


def test_close_sends_close_notify_and_frees_the_connection(warm):
    server_config, client_config, session = warm
    client = EarlyHttpClient(client_config, session)
    exchange(client, EarlyHttpServer(server_config))
    client.close()
    assert tls_records(client.data_to_send()) == [(APPLICATION_DATA, 19)]  # encrypted alert
    client.close()  # idempotent


def test_bytes_arriving_after_close_are_dropped(warm):
    server_config, client_config, session = warm
    client = EarlyHttpClient(client_config, session)
    server = EarlyHttpServer(server_config)
    exchange(client, server)
    client.close()
    server.receive(client.data_to_send(), 1.0)
    server.close()
    client.receive(server.data_to_send(), 1.0)
    assert client.next_event() is None


@pytest.mark.parametrize("mismatch", ["ca", "name"])
def test_the_client_verifies_the_chain_and_the_name(mismatch):
    chain = make_chain()
    if mismatch == "name":
        client_config = EarlyClientConfig(chain.ca_pem, server_name="elsewhere.test")
    else:
        client_config = EarlyClientConfig(make_chain(server_name="other.test").ca_pem)
    with pytest.raises(TlsError, match="certificate"):
        connect(EarlyServerConfig(chain), client_config)


# -- server time -----------------------------------------------------------------------------------


def _held(warm, server_time_s):
    server_config, client_config, session = warm
    client = EarlyHttpClient(client_config, session)
    server = EarlyHttpServer(server_config, server_time_s=server_time_s)
    wire = timed_exchange(client, server, delay_s=0.05)
    (request,) = [e for _, who, e in wire.events if who == "server" and isinstance(e, RequestReceived)]
    assert request.in_early_data and wire.time_of("server", RequestReceived) == 0.05
    return client, server, wire


def test_an_answer_held_less_than_a_round_trip_leaves_as_half_rtt_data_before_the_clients_finished(warm):
    client, server, wire = _held(warm, 0.05)
    flights = wire.sent_by("server")
    # the handshake flight, the held answer (0.5-RTT, RFC 8446 §2.3), then the ticket on the Finished
    assert [t for t, _ in flights] == pytest.approx([0.05, 0.10, 0.15])
    assert [t for t, who, _ in wire.sent if who == "client"] == pytest.approx([0.0, 0.10])
    assert wire.time_of("client", ResponseReceived) == pytest.approx(0.15)
    assert wire.time_of("server", HandshakeCompleted) == pytest.approx(0.15)
    assert client.session is not None and client.session.max_early_data > 0
    assert server.get_timer() is None


def test_an_answer_held_past_the_clients_finished_leaves_after_the_ticket(warm):
    client, server, wire = _held(warm, 0.25)
    flights = wire.sent_by("server")
    assert [t for t, _ in flights] == pytest.approx([0.05, 0.15, 0.30])  # flight, ticket, answer
    assert wire.time_of("server", HandshakeCompleted) == pytest.approx(0.15)
    assert wire.time_of("client", ResponseReceived) == pytest.approx(0.35)
    assert client.session is not None and client.session.max_early_data > 0


def test_an_answer_due_between_end_of_early_data_and_finished_waits_for_the_finished(warm):
    """The client's EndOfEarlyData arrives alone, the answer falls due, then the Finished: the
    answer cannot be 0.5-RTT data any more nor application data yet, so the handshake's end writes it."""
    server_config, client_config, session = warm
    client = EarlyHttpClient(client_config, session)
    server = EarlyHttpServer(server_config, server_time_s=0.01)
    client.start(0.0)
    server.start(0.0)
    server.receive(client.data_to_send(), 0.0)  # ClientHello + early GET: the answer is due at 0.01
    client.receive(server.data_to_send(), 0.0)
    end_of_early_data, finished = tls_records(second := client.data_to_send())[-2:]
    split = len(second) - (5 + finished[1])
    server.receive(second[:split], 0.005)  # up to EndOfEarlyData: no longer reading early data
    assert server.get_timer() is None  # nothing can be written now, so no timer to spin on
    server.handle_timer(0.02)
    assert server.data_to_send() == b""
    server.receive(second[split:], 0.03)  # the Finished: tickets, and the answer with them
    third = server.data_to_send()
    assert len(tls_records(third)) == 2  # the ticket, then the answer
    client.receive(third, 0.03)
    assert any(isinstance(event, ResponseReceived) for event in iter(client.next_event, None))
    assert server.get_timer() is None
