from handshake.endpoints import HttpClient, HttpServer, RequestReceived, ResponseReceived
from handshake.endpoints.http1 import ClientExchange

from .drive import exchange, timed_exchange


def test_plain_http_answers_in_one_round_trip():
    transcript = exchange(HttpClient(), HttpServer())
    assert [who for who, _ in transcript.flights] == ["client", "server"]
    (request,) = transcript.of("server", RequestReceived)
    assert (request.method, request.target, request.in_early_data) == ("GET", "/", False)
    (response,) = transcript.of("client", ResponseReceived)
    assert response.status == 200 and len(response.body) == 64
    assert transcript.flight_of("client", ResponseReceived) == 2


def test_request_is_get_with_host_header():
    request = ClientExchange("server.test").request()
    assert request.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nhost: server.test\r\n" in request.lower()


def test_response_body_size_is_configurable_and_has_content_length():
    server = HttpServer(body_bytes=5000)
    transcript = exchange(HttpClient(), server, chunk_bytes=7)
    (response,) = transcript.of("client", ResponseReceived)
    assert len(response.body) == 5000
    assert b"content-length: 5000\r\n" in transcript.flights[1][1].lower()


def test_a_server_time_holds_the_answer_that_long_after_the_request():
    server = HttpServer(server_time_s=0.25)
    assert server.get_timer() is None  # nothing to hold before a request
    wire = timed_exchange(HttpClient(), server, delay_s=0.05)
    request_at = wire.time_of("server", RequestReceived)
    assert request_at == 0.05
    (answer,) = wire.sent_by("server")
    assert answer[0] == request_at + 0.25 and answer[1].startswith(b"HTTP/1.1 200 ")
    assert wire.time_of("client", ResponseReceived) == request_at + 0.25 + 0.05
    assert server.get_timer() is None  # answered: nothing left to hold


def test_without_a_server_time_the_answer_leaves_within_the_receive_call():
    server = HttpServer()
    server.start(0.0)
    server.receive(ClientExchange("server.test").request(), 1.0)
    assert server.data_to_send().startswith(b"HTTP/1.1 200 ")
    assert server.get_timer() is None
