"""TLS that starts after a prelude: through an HTTP CONNECT or SOCKS proxy, after STARTTLS (SMTP,
IMAP, POP3, XMPP). The row reports the inner TLS session's facts, counts the HTTPS request inside from the SYN (the
prelude's round trips included, as the user waits for them) and names the prelude as a cause
with its own round trips; a refused prelude gives no HTTPS count and says why.

Captures are written here: real TLS bytes (stdlib ssl, tests/analysis/tls/exchange.py) after the
prelude's bytes, on a wire with a 50 ms round trip (tunnel_wire.py)."""

from __future__ import annotations

import ssl
import struct

import pytest

from handshake.analysis.capture import inspect_packets
from handshake.analysis.keylog import parse_keylog

from ..tls.exchange import HOSTNAME
from .tunnel_wire import Tunnelled, Wire, tls_through

RTT = 0.05
CONNECT = f"CONNECT {HOSTNAME}:443 HTTP/1.1\r\nHost: {HOSTNAME}:443\r\n\r\n".encode()
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
SOCKS5 = [(True, b"\x05\x01\x00"), (False, b"\x05\x00"),
          (True, b"\x05\x01\x00\x03" + bytes([len(HOSTNAME)]) + HOSTNAME.encode() + struct.pack(">H", 443)),
          (False, b"\x05\x00\x00\x01\x0a\x00\x00\x01\x9c\x40")]
SOCKS4 = [(True, b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00" + HOSTNAME.encode() + b"\x00"),
          (False, b"\x00\x5a" + bytes(6))]
SMTP = [(False, b"220 mail.example.test ESMTP\r\n"), (True, b"EHLO client\r\n"),
        (False, b"250-mail.example.test\r\n250 STARTTLS\r\n"), (True, b"STARTTLS\r\n"),
        (False, b"220 2.0.0 Ready to start TLS\r\n")]
IMAP = [(False, b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"), (True, b"a001 STARTTLS\r\n"),
        (False, b"a001 OK Begin TLS negotiation now\r\n")]
POP3 = [(False, b"+OK POP3 ready\r\n"), (True, b"STLS\r\n"), (False, b"+OK Begin TLS negotiation\r\n")]
XMPP = [(True, b"<?xml version='1.0'?><stream:stream to='example.test' version='1.0' xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams'>"),
        (False, b"<?xml version='1.0'?><stream:stream from='example.test' id='1' version='1.0' xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams'><stream:features><starttls "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
        (True, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        (False, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")]

TLS_ROUNDS = {ssl.TLSVersion.TLSv1_3: 1, ssl.TLSVersion.TLSv1_2: 2}
CASES = {
    # name: (prelude turns, port, prelude value, its round trips, cause)
    "connect": ([(True, CONNECT), (False, ESTABLISHED)], 3128, "http-connect", 1,
                "through an HTTP proxy: CONNECT cost 1 round trip"),
    "socks4a": (SOCKS4, 1080, "socks4a", 1, "through a SOCKS4a proxy: 1 round trip"),
    "socks5": (SOCKS5, 1080, "socks5", 2, "through a SOCKS5 proxy: 2 round trips"),
    # The greeting waits for the handshake's last ACK (its echo shows it), then EHLO, STARTTLS.
    "smtp": (SMTP, 587, "starttls-smtp", 3, "STARTTLS (SMTP): 3 round trips before the ClientHello"),
    "imap": (IMAP, 143, "starttls-imap", 2, "STARTTLS (IMAP): 2 round trips before the ClientHello"),
    "pop3": (POP3, 110, "starttls-pop3", 2, "STLS (POP3): 2 round trips before the ClientHello"),
    "xmpp": (XMPP, 5222, "starttls-xmpp", 2, "STARTTLS (XMPP): 2 round trips before the ClientHello"),
}


def _inspected(run: Tunnelled, keys: bool):
    keylog = parse_keylog(run.keylog) if keys else None
    (inspected,) = inspect_packets(run.wire.packets, keylog, steps=True)
    return inspected.report


@pytest.mark.parametrize("keys", [True, False], ids=["with-keys", "without-keys"])
@pytest.mark.parametrize("version", list(TLS_ROUNDS), ids=["tls13", "tls12"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_tls_inside_is_read_and_counted_from_the_syn(tmp_path, name, version, keys):
    prelude, port, value, prelude_rounds, cause = CASES[name]
    run = tls_through(tmp_path, prelude, port=port, version=version, rtt_s=RTT)
    report = _inspected(run, keys)
    # TCP's round trip, the prelude's, TLS's, then the request's own.
    round_trips = 1 + prelude_rounds + TLS_ROUNDS[version] + 1
    assert (report.prelude, report.tls_version, report.sni, report.alpn_offered) == (
        value, run.version.removeprefix("TLSv"), HOSTNAME, ["h2", "http/1.1"])
    assert report.round_trips == round_trips
    assert report.setup_round_trips == round_trips - 1
    assert report.round_trips_basis == ("decrypted" if keys else "inferred")
    # Without keys, TLS 1.3's tickets (sent with the response, a few µs before it) may be taken
    # for it: the same round trip, within a millisecond.
    assert report.ttfb_s == pytest.approx(run.response_time, abs=1e-6 if keys else 1e-3)
    assert report.ttfb_s == pytest.approx(round_trips * RTT, abs=0.005)
    assert report.causes[0] == cause
    if keys:
        assert report.causes == [cause]
    assert not any("retransmitted" in note for note in report.notes + report.causes)


def test_the_prelude_is_in_the_json_row(tmp_path):
    run = tls_through(tmp_path, CASES["socks5"][0], port=1080)
    conn = _inspected(run, True).as_dict()
    assert (conn["prelude"], conn["tls_version"], conn["round_trips"]) == ("socks5", "1.3", 5)


def test_a_direct_connection_has_no_prelude(tmp_path):
    run = tls_through(tmp_path, [])
    report = _inspected(run, True)
    assert (report.prelude, report.round_trips, report.causes) == (None, 3, [])


def _refused(turns: list[tuple[bool, bytes]], port: int):
    wire = Wire(RTT, ("10.1.0.2", port))
    wire.open()
    for from_client, data in turns:
        wire.send(from_client, data)
    wire.close()
    (inspected,) = inspect_packets(wire.packets)
    return inspected.report


@pytest.mark.parametrize(("turns", "port", "value", "note"), [
    ([(True, CONNECT), (False, b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")], 3128,
     "http-connect", "through an HTTP proxy: CONNECT refused (407); no TLS in this connection, so no HTTPS count"),
    ([(True, CONNECT), (False, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope\n")], 3128,
     "http-connect", "through an HTTP proxy: CONNECT refused (403); no TLS in this connection, so no HTTPS count"),
    ([SOCKS4[0], (False, b"\x00\x5b" + bytes(6))], 1080, "socks4a",
     "through a SOCKS4a proxy: request rejected or failed (91); no TLS in this connection, so no HTTPS count"),
    (SOCKS5[:3] + [(False, b"\x05\x05\x00\x01" + bytes(6))], 1080, "socks5",
     "through a SOCKS5 proxy: CONNECT failed: connection refused (0x05); no TLS in this connection, so no HTTPS "
     "count"),
    (SMTP[:4] + [(False, b"454 4.7.0 TLS not available due to local problem\r\n")], 25, "starttls-smtp",
     "STARTTLS (SMTP): STARTTLS refused (454); no TLS in this connection, so no HTTPS count"),
])
def test_a_refused_prelude_gives_no_https_count(turns, port, value, note):
    report = _refused(turns, port)
    assert (report.prelude, report.tls_version, report.round_trips, report.ttfb_s) == (value, None, None, None)
    assert note in report.notes


def test_plain_http_through_a_proxy_without_connect_stays_plain_http():
    """A forward proxy's absolute-form GET (RFC 9112 §3.2.2) is plain HTTP, read as before."""
    report = _refused([(True, b"GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n"),
                       (False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")], 3128)
    assert (report.prelude, report.round_trips, report.round_trips_basis) == (None, 2, "clear")


def test_http_in_clear_inside_a_connect_tunnel_is_counted_in_clear():
    report = _refused([(True, CONNECT), (False, ESTABLISHED),
                       (True, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"),
                       (False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")], 3128)
    assert (report.prelude, report.tls_version, report.round_trips, report.round_trips_basis) == (
        "http-connect", None, 3, "clear")
    assert report.causes == ["through an HTTP proxy: CONNECT cost 1 round trip"]


def test_a_request_that_only_began_like_a_prelude_is_plain_http_as_before():
    """WebDAV's COPY (RFC 4918 §9.8) in two segments, the first only "C": the reader waits for
    more, sees no CONNECT, and the bytes it held are read as plain HTTP, as without it."""
    request = b"COPY /a HTTP/1.1\r\nHost: example.test\r\nDestination: /b\r\n\r\n"
    whole = _refused([(True, request), (False, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")], 80)
    wire = Wire(RTT, ("10.1.0.2", 80))
    wire.open()
    wire.send(True, request[:1])
    wire.send(True, request[1:])
    wire.send(False, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    wire.close()
    (split,) = inspect_packets(wire.packets)
    assert (whole.prelude, whole.round_trips, whole.round_trips_basis) == (None, 2, "clear")
    assert (split.report.prelude, split.report.round_trips, split.report.round_trips_basis,
            split.report.setup_round_trips) == (None, 2, "clear", 1)
    assert split.report.ttfb_s == pytest.approx(whole.ttfb_s, abs=1e-4)


def test_the_ladder_shows_the_proxy_exchange_then_the_clienthello(tmp_path):
    run = tls_through(tmp_path, CASES["connect"][0], port=3128)
    (inspected,) = inspect_packets(run.wire.packets, parse_keylog(run.keylog), steps=True)
    data_steps = [(step.from_client, step.round, step.carries, step.marks) for step in inspected.steps
                  if step.carries not in (("SYN",), ("SYN-ACK",), ("ACK",))]
    assert data_steps[:3] == [
        (True, 1, (f"HTTP CONNECT {HOSTNAME}:443",), ()),
        (False, 2, ("proxy: HTTP 200 response",), ("through an HTTP proxy: TLS next",)),
        (True, 2, ("ClientHello",), ()),
    ]
