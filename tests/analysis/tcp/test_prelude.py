"""The prelude reader: what comes before TLS in a TCP stream, from the bytes each protocol's RFC
(or de-facto spec) puts on the wire, and never a verdict that depends on segment boundaries."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.tcp.prelude import NONE, PENDING, REFUSED, SWITCHED, PreludeReader, may_start

HELLO = b"\x16\x03\x01\x00\x05hello"
"""Stands for the first TLS bytes after a prelude (the reader never looks at them)."""


def read(turns: list[tuple[bool, bytes]]) -> PreludeReader:
    """Feed (from_client, bytes) turns in order."""
    reader = PreludeReader()
    for from_client, data in turns:
        reader.feed(from_client, data)
    return reader


def switched_at(turns: list[tuple[bool, bytes]]) -> tuple[str | None, int, int]:
    reader = read(turns)
    assert reader.verdict == SWITCHED, (reader.verdict, reader.reason)
    return reader.kind, reader.client_offset, reader.server_offset


CONNECT = b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\nUser-Agent: curl/7.88.1\r\n\r\n"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_http_connect_switches_after_the_request_and_the_2xx_head():
    turns = [(True, CONNECT), (False, ESTABLISHED), (True, HELLO)]
    assert switched_at(turns) == ("http-connect", len(CONNECT), len(ESTABLISHED))
    # A client that sends its ClientHello without waiting for the reply: those bytes are past it.
    reader = read([(True, CONNECT + HELLO), (False, ESTABLISHED)])
    assert reader.leftover(True) == HELLO and reader.leftover(False) == b""


def test_http_connect_skips_interim_replies():
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert switched_at([(True, CONNECT), (False, interim + ESTABLISHED)]) == (
        "http-connect", len(CONNECT), len(interim + ESTABLISHED))


def test_http_connect_407_then_credentials_on_the_same_connection():
    refused = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
    again = CONNECT.replace(b"\r\n\r\n", b"\r\nProxy-Authorization: Basic dTpw\r\n\r\n")
    reader = read([(True, CONNECT), (False, refused)])
    assert (reader.verdict, reader.reason) == (PENDING, "CONNECT refused (407)")
    assert switched_at([(True, CONNECT), (False, refused), (True, again), (False, ESTABLISHED)]) == (
        "http-connect", len(CONNECT + again), len(refused + ESTABLISHED))


def test_http_connect_refused_and_the_client_gives_up():
    reader = read([(True, CONNECT), (False, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
                   (True, b"\x16\x03\x01")])
    assert (reader.verdict, reader.kind, reader.reason) == (REFUSED, "http-connect", "CONNECT refused (403)")


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                                   b"POST /x HTTP/1.1\r\n", b"HEAD / HTTP/1.0\r\n\r\n", b"CONNECTX / HTTP/1.1\r\n"])
def test_plain_http_and_h2c_are_no_prelude(first):
    assert not may_start(True, first) or read([(True, first)]).verdict == NONE


def test_a_connect_line_that_is_not_http_is_no_prelude():
    assert read([(True, b"CONNECT foo\r\nbar\r\n\r\n")]).verdict == NONE


SOCKS4 = bytes([4, 1]) + struct.pack(">H", 443) + bytes([93, 184, 216, 34]) + b"user\x00"
SOCKS4A = bytes([4, 1]) + struct.pack(">H", 443) + bytes([0, 0, 0, 1]) + b"\x00www.example.com\x00"
GRANTED = bytes([0, 90]) + b"\x00" * 6


def test_socks4_and_4a():
    assert switched_at([(True, SOCKS4), (False, GRANTED), (True, HELLO)]) == ("socks4", len(SOCKS4), 8)
    assert switched_at([(True, SOCKS4A), (False, GRANTED)]) == ("socks4a", len(SOCKS4A), 8)


def test_socks4_rejected():
    reader = read([(True, SOCKS4), (False, bytes([0, 91]) + b"\x00" * 6)])
    assert (reader.verdict, reader.reason) == (REFUSED, "request rejected or failed (91)")


def _socks5_connect(atyp: int, address: bytes) -> bytes:
    return bytes([5, 1, 0, atyp]) + address + struct.pack(">H", 443)


DOMAIN = _socks5_connect(3, bytes([15]) + b"www.example.com")
SUCCEEDED = bytes([5, 0, 0, 1, 10, 0, 0, 1]) + struct.pack(">H", 40000)


@pytest.mark.parametrize("request_", [DOMAIN, _socks5_connect(1, bytes([93, 184, 216, 34])),
                                      _socks5_connect(4, bytes(15) + b"\x01")])
def test_socks5_without_authentication(request_):
    turns = [(True, b"\x05\x01\x00"), (False, b"\x05\x00"), (True, request_), (False, SUCCEEDED), (True, HELLO)]
    assert switched_at(turns) == ("socks5", 3 + len(request_), 2 + len(SUCCEEDED))


def test_socks5_with_username_and_password():
    auth = b"\x01\x04user\x04pass"
    turns = [(True, b"\x05\x02\x00\x02"), (False, b"\x05\x02"), (True, auth), (False, b"\x01\x00"),
             (True, DOMAIN), (False, SUCCEEDED)]
    assert switched_at(turns) == ("socks5", 4 + len(auth) + len(DOMAIN), 2 + 2 + len(SUCCEEDED))
    refused = read(turns[:3] + [(False, b"\x01\x01")])
    assert (refused.verdict, refused.reason) == (REFUSED, "username/password refused (status 1)")


def test_socks5_request_sent_before_the_method_reply():
    assert switched_at([(True, b"\x05\x01\x00" + DOMAIN), (False, b"\x05\x00" + SUCCEEDED)]) == (
        "socks5", 3 + len(DOMAIN), 2 + len(SUCCEEDED))


@pytest.mark.parametrize(("reply", "reason"), [
    (b"\x05\xff", "no acceptable authentication method (0xff)"),
    (b"\x05\x00\x05\x05\x00\x01" + bytes(6), "CONNECT failed: connection refused (0x05)"),
])
def test_socks5_refused(reply, reason):
    reader = read([(True, b"\x05\x01\x00" + DOMAIN), (False, reply)])
    assert (reader.verdict, reader.kind, reader.reason) == (REFUSED, "socks5", reason)


SMTP_BANNER = b"220 mail.example.com ESMTP Postfix\r\n"
EHLO = b"EHLO client.example.com\r\n"
EHLO_REPLY = b"250-mail.example.com\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
STARTTLS = b"STARTTLS\r\n"
READY = b"220 2.0.0 Ready to start TLS\r\n"


def test_smtp_starttls_rfc_3207():
    turns = [(False, SMTP_BANNER), (True, EHLO), (False, EHLO_REPLY), (True, STARTTLS), (False, READY),
             (True, HELLO)]
    assert switched_at(turns) == ("starttls-smtp", len(EHLO + STARTTLS), len(SMTP_BANNER + EHLO_REPLY + READY))


def test_smtp_multiline_banner_and_a_refused_starttls():
    banner = b"220-mail.example.com ESMTP\r\n220-no UCE\r\n220 ok\r\n"
    reader = read([(False, banner), (True, EHLO), (False, EHLO_REPLY), (True, STARTTLS),
                   (False, b"454 4.7.0 TLS not available\r\n")])
    assert (reader.verdict, reader.kind, reader.reason) == (REFUSED, "starttls-smtp", "STARTTLS refused (454)")


def test_smtp_in_clear_is_no_tls():
    reader = read([(False, SMTP_BANNER), (True, EHLO), (False, EHLO_REPLY), (True, b"MAIL FROM:<a@b>\r\n"),
                   (False, b"250 ok\r\n"), (True, b"RCPT TO:<c@d>\r\n"), (False, b"250 ok\r\n"), (True, b"DATA\r\n"),
                   (False, b"354 go\r\n")])
    assert (reader.verdict, reader.kind) == (REFUSED, "starttls-smtp")


def test_ftp_auth_tls_rfc_4217():
    banner = b"220 (vsFTPd 3.0.3)\r\n"
    turns = [(False, banner), (True, b"AUTH TLS\r\n"), (False, b"234 Proceed with negotiation.\r\n")]
    assert switched_at(turns) == ("starttls-ftp", 10, len(banner) + 31)


IMAP_GREETING = b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n"


def test_imap_starttls_rfc_3501():
    capability = b"a001 CAPABILITY\r\n"
    capabilities = b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\na001 OK CAPABILITY completed\r\n"
    starttls = b"a002 STARTTLS\r\n"
    begin = b"a002 OK Begin TLS negotiation now\r\n"
    turns = [(False, IMAP_GREETING), (True, capability), (False, capabilities), (True, starttls), (False, begin)]
    assert switched_at(turns) == ("starttls-imap", len(capability + starttls),
                                  len(IMAP_GREETING + capabilities + begin))
    refused = read(turns[:4] + [(False, b"a002 BAD not now\r\n")])
    assert (refused.verdict, refused.reason) == (REFUSED, "STARTTLS refused (BAD)")


def test_pop3_stls_rfc_2595_after_a_multiline_capa():
    greeting = b"+OK POP3 ready\r\n"
    capa = b"+OK Capability list follows\r\nTOP\r\nSTLS\r\nUIDL\r\n.\r\n"
    turns = [(False, greeting), (True, b"CAPA\r\n"), (False, capa), (True, b"STLS\r\n"),
             (False, b"+OK Begin TLS negotiation\r\n")]
    assert switched_at(turns) == ("starttls-pop3", 12, len(greeting + capa) + 27)


def test_xmpp_starttls_rfc_6120():
    header = (b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams'>")
    features = (b"<?xml version='1.0'?><stream:stream from='example.com' id='x' version='1.0' "
                b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features>"
                b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
    starttls = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    proceed = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    turns = [(True, header), (False, features), (True, starttls), (False, proceed)]
    assert switched_at(turns) == ("starttls-xmpp", len(header + starttls), len(features + proceed))
    failed = read(turns[:3] + [(False, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")])
    assert failed.verdict == REFUSED


def _ber(tag: int, content: bytes) -> bytes:
    return bytes([tag, len(content)]) + content


LDAP_STARTTLS = _ber(0x30, _ber(0x02, b"\x01") + _ber(0x77, _ber(0x80, b"1.3.6.1.4.1.1466.20037")))


def _ldap_response(code: int) -> bytes:
    return _ber(0x30, _ber(0x02, b"\x01") + _ber(0x78, _ber(0x0A, bytes([code])) + _ber(0x04, b"") + _ber(0x04, b"")
                                              + _ber(0x8A, b"1.3.6.1.4.1.1466.20037")))


def test_ldap_starttls_rfc_4511():
    assert switched_at([(True, LDAP_STARTTLS), (False, _ldap_response(0))]) == (
        "starttls-ldap", len(LDAP_STARTTLS), len(_ldap_response(0)))
    refused = read([(True, LDAP_STARTTLS), (False, _ldap_response(2))])
    assert (refused.verdict, refused.reason) == (REFUSED, "StartTLS refused (resultCode 2)")


def test_an_ldap_bind_first_is_no_starttls():
    bind = _ber(0x30, _ber(0x02, b"\x01") + _ber(0x60, _ber(0x02, b"\x03") + _ber(0x04, b"") + _ber(0x80, b"")))
    assert read([(True, bind)]).verdict == NONE


def test_a_prelude_that_never_switches_gives_up_within_its_bound():
    reader = read([(False, SMTP_BANNER), (True, EHLO)] + [(False, EHLO_REPLY), (True, b"NOOP\r\n")] * 1000)
    assert reader.verdict == REFUSED and "no switch to TLS" in reader.reason


EXAMPLES = {
    "http-connect": [(True, CONNECT), (False, ESTABLISHED), (True, HELLO), (False, HELLO)],
    "socks4a": [(True, SOCKS4A), (False, GRANTED), (True, HELLO)],
    "socks5": [(True, b"\x05\x02\x00\x02"), (False, b"\x05\x02"), (True, b"\x01\x01u\x01p"), (False, b"\x01\x00"),
               (True, DOMAIN), (False, SUCCEEDED), (True, HELLO)],
    "starttls-smtp": [(False, SMTP_BANNER), (True, EHLO), (False, EHLO_REPLY), (True, STARTTLS), (False, READY),
                      (True, HELLO)],
    "starttls-ldap": [(True, LDAP_STARTTLS), (False, _ldap_response(0)), (True, HELLO)],
}


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(EXAMPLES)), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_split_points_do_not_change_the_verdict(name, cuts):
    """Each turn cut into pieces anywhere: the same verdict, kind and offsets."""
    whole = read(EXAMPLES[name])
    pieces = [(side, piece) for side, data in EXAMPLES[name] for piece in _split(data, cuts)]
    split = read(pieces)
    assert whole.verdict == SWITCHED
    assert (split.verdict, split.kind, split.client_offset, split.server_offset) == (
        whole.verdict, whole.kind, whole.client_offset, whole.server_offset)


@settings(max_examples=150, deadline=None)
@given(turns=st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), max_size=8), cuts=st.lists(st.integers(0, 64)))
def test_arbitrary_bytes_never_raise_and_pieces_agree(turns, cuts):
    whole = read(turns)
    split = read([(side, piece) for side, data in turns for piece in _split(data, cuts)])
    assert whole.verdict in (PENDING, SWITCHED, REFUSED, NONE)
    assert (split.verdict, split.kind, split.client_offset, split.server_offset) == (
        whole.verdict, whole.kind, whole.client_offset, whole.server_offset)


PREFIXES = [b"CONNECT ", b"\x04\x01", b"\x05\x01", b"\x05\x02\x00", b"0", b"<?xml ", b"220 ", b"* OK ", b"+OK "]


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=300), server=st.binary(max_size=300),
       server_first=st.booleans())
def test_prelude_like_garbage_never_raises(prefix, tail, server, server_first):
    turns = [(not server_first, prefix + tail), (server_first, server)]
    assert read(turns).verdict in (PENDING, SWITCHED, REFUSED, NONE)
    assert read([(side, data[i:i + 7]) for side, data in turns for i in range(0, len(data), 7)]).verdict == \
        read(turns).verdict
