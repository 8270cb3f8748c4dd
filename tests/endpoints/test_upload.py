"""A request with a body (``--post``), written in one piece or two (``--split-writes``): the bytes
each client writes, and the boundaries a client that keeps them hands its engine."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from handshake.endpoints import RequestReceived, ResponseReceived, TlsClientConfig, TlsHttpClient, TlsHttpServer, \
    TlsServerConfig, make_chain
from handshake.endpoints.events import split_writes
from handshake.endpoints.http1 import CLIENT_ALPN, ClientExchange, HttpClient, HttpServer, ServerExchange, Upload, \
    response_body
from handshake.endpoints.http2 import Http2ClientExchange, Http2ServerExchange

from .drive import exchange

BODY = 200


def test_an_http1_upload_is_a_post_with_its_body_apart_or_together():
    together = ClientExchange("server.test", upload=Upload(BODY)).request_writes()
    head, body = ClientExchange("server.test", upload=Upload(BODY, split=True)).request_writes()
    assert len(together) == 1 and together[0] == head + body
    assert head.startswith(b"POST / HTTP/1.1\r\n") and b"\r\nContent-Length: 200\r\n" in head
    assert head.endswith(b"\r\n\r\n") and body == response_body(BODY)
    server = ServerExchange()
    assert server.receive(head, now=1.0) == []  # the header section alone is no request yet
    assert server.receive(body, now=2.0) == [RequestReceived("POST", "/", in_early_data=False)]
    assert server.respond_at == 2.0


def test_an_http2_upload_ends_its_stream_with_the_body_in_a_write_of_its_own():
    head, body = Http2ClientExchange("server.test", upload=Upload(BODY, split=True)).request_writes()
    reader = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    first = reader.receive_data(head)
    (headers,) = [e for e in first if isinstance(e, h2.events.RequestReceived)]
    assert dict(headers.headers)[b":method"] == b"POST" and not any(
        isinstance(e, h2.events.StreamEnded) for e in first)
    second = reader.receive_data(body)
    assert [type(e) for e in second] == [h2.events.DataReceived, h2.events.StreamEnded]
    assert second[0].data == response_body(BODY)
    server = Http2ServerExchange(body_bytes=64)
    assert server.receive(head, now=1.0) == []
    assert server.receive(body, now=2.0) == [RequestReceived("POST", "/", in_early_data=False)]


@pytest.mark.parametrize("size", [0, 16385])
def test_an_upload_is_one_byte_to_16_kib(size):
    with pytest.raises(ValueError, match="request body"):
        Upload(size)


def test_only_a_split_upload_keeps_its_write_boundaries():
    assert split_writes(HttpClient()) is None
    assert split_writes(HttpClient(upload=Upload(BODY))) is None
    client = HttpClient(upload=Upload(BODY, split=True))
    assert split_writes(client) is client
    client.start(0.0)
    head, body = client.writes_to_send()
    assert head.startswith(b"POST ") and body == response_body(BODY)
    assert client.writes_to_send() == [] and client.data_to_send() == b""


@pytest.mark.parametrize("http", ["1.1", "2"])
def test_a_tls_client_writes_its_request_as_records_of_its_own(http):
    """TLS 1.3: the Finished and the header section in the first write, the body in the second:
    each a record that holds nothing of the other."""
    chain = make_chain()
    client = TlsHttpClient(TlsClientConfig.for_chain(chain, alpn=CLIENT_ALPN[http]), upload=Upload(BODY, split=True))
    server = TlsHttpServer(TlsServerConfig(chain))
    server.start(0.0)
    client.start(0.0)
    server.receive(client.writes_to_send()[0], 0.0)  # the ClientHello
    client.receive(server.data_to_send(), 0.0)
    writes = client.writes_to_send()
    assert len(writes) == 2
    server.receive(writes[0], 1.0)
    assert not [e for e in iter(server.next_event, None) if isinstance(e, RequestReceived)]
    server.receive(writes[1], 2.0)
    requests = [e for e in iter(server.next_event, None) if isinstance(e, RequestReceived)]
    assert requests == [RequestReceived("POST", "/", in_early_data=False)]
    assert writes[1][0] == 0x17 and len(writes[1]) > BODY  # one application-data record: the body


def test_a_plain_post_is_answered_after_its_body():
    transcript = exchange(HttpClient(upload=Upload(BODY, split=True)), HttpServer(body_bytes=10))
    (request,) = transcript.of("server", RequestReceived)
    (response,) = transcript.of("client", ResponseReceived)
    assert request.method == "POST" and response.status == 200 and len(response.body) == 10
