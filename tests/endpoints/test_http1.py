import h11

from handshake.endpoints import HttpClient, HttpServer, RequestReceived, ResponseReceived
from handshake.endpoints.http1 import ClientExchange, ServerExchange, object_target

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


def test_one_connection_answers_each_request_in_turn_with_the_size_it_asks_for():
    """HTTP/1.1 keep-alive: the next GET on the connection is read once the one before is
    answered; an unknown target gets 404 and the connection goes on."""
    client = h11.Connection(h11.CLIENT)
    server = ServerExchange(body_bytes=64)
    answers = []
    for target in (object_target(0, 3000), "/nowhere", object_target(1, 0), "/"):
        request = client.send(h11.Request(method="GET", target=target, headers=[("Host", "s")]))
        (received,) = server.receive(request + client.send(h11.EndOfMessage()), now=0.0)
        assert received.target == target and server.due(0.0)
        client.receive_data(server.response())
        status, body = 0, bytearray()
        while (event := client.next_event()) is not h11.NEED_DATA:
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        answers.append((status, len(body)))
        client.start_next_cycle()
    assert answers == [(200, 3000), (404, 0), (200, 0), (200, 64)]


def test_a_server_that_closes_after_its_answer_ends_the_exchange_cleanly():
    """``Connection: close`` (openssl s_server -WWW, HTTP/1.0 servers): the answer is complete,
    and the connection takes no more GETs rather than failing."""
    client = ClientExchange("server.test")
    client.request()
    (response,) = client.receive(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
    assert (response.status, response.body) == (200, b"hi") and client.done
