"""SSLv2-format ClientHellos (RFC 5246 appendix E.2; RFC 6101 appendix E.1): old clients open with
one to offer SSL 3.0 or TLS. The session is the client's offer and the server's TLS records, not a
stream of garbage whose ServerHello answers a request."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handshake.analysis.capture import inspect_packets
from handshake.analysis.tls.conversation import TlsConversation
from handshake.analysis.tls.messages import DecodeError, parse_ssl2_client_hello
from handshake.analysis.tls.records import SSL2_CLIENT_HELLO, RecordReader, ssl2_client_hello_start
from handshake.endpoints.certs import make_chain
from handshake.trace.pcap import PcapWriter

from ..written import tcp_conversation

CHALLENGE = bytes(range(16, 48))


def ssl2_client_hello(version: int = 0x0301, specs: bytes = bytes.fromhex("00002f" "010080" "000035" "00000a"),
                      challenge: bytes = CHALLENGE, session_id: bytes = b"") -> bytes:
    """The bytes RFC 5246 appendix E.2 gives: a 2-byte header with the high bit set, msg_type 1,
    version, cipher_spec_length, session_id_length, challenge_length, the specs, id, challenge."""
    body = (bytes([1]) + version.to_bytes(2, "big") + len(specs).to_bytes(2, "big")
            + len(session_id).to_bytes(2, "big") + len(challenge).to_bytes(2, "big") + specs + session_id + challenge)
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def server_answer(hello: bytes, tmp_path) -> bytes:
    """What OpenSSL's TLS server (the stdlib ssl) sends back to ``hello``: ServerHello,
    Certificate, ServerHelloDone."""
    chain = make_chain("rsa2048", 1)
    (tmp_path / "key.pem").write_bytes(chain.leaf_key_pem)
    (tmp_path / "chain.pem").write_bytes(chain.chain_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    context.set_ciphers("AES128-SHA:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return outgoing.read()


def test_the_parser_reads_the_offer():
    hello = parse_ssl2_client_hello(ssl2_client_hello(0x0303)[2:])
    # Specs whose first byte is 0 are TLS suites; 0x010080 is SSLv2's RC4-MD5, which TLS has not.
    assert hello.cipher_suites == (0x002F, 0x0035, 0x000A)
    assert hello.supported_versions == (0x0303,)
    assert hello.random == bytes(32 - len(CHALLENGE)) + CHALLENGE and hello.session_id == b""
    assert hello.server_name is None and hello.alpn_protocols == ()
    short = parse_ssl2_client_hello(ssl2_client_hello(challenge=bytes(16))[2:])
    assert short.random == bytes(32)
    with pytest.raises(DecodeError):
        parse_ssl2_client_hello(ssl2_client_hello(specs=b"\x00\x00")[2:])


@given(st.binary(max_size=80))
def test_the_parser_raises_only_decode_error(body):
    try:
        parse_ssl2_client_hello(b"\x01" + body)
    except DecodeError:
        pass


def test_the_record_reader_frames_it_only_at_the_stream_start():
    hello = ssl2_client_hello()
    assert ssl2_client_hello_start(hello) and not ssl2_client_hello_start(b"\x16\x03\x01\x00\x05")
    assert not ssl2_client_hello_start(bytes([0x80, 0x2E, 0x01, 0x00, 0x02]))  # SSL 2.0 itself: not TLS
    reader = RecordReader()
    # In pieces, as TCP may deliver it.
    records = reader.feed(hello[:3])[0] + reader.feed(hello[3:20])[0] + reader.feed(hello[20:] + b"\x15\x03\x01")[0]
    assert [(r.content_type, r.legacy_version, r.start_offset, r.end_offset) for r in records] == [
        (SSL2_CLIENT_HELLO, 0x0301, 0, len(hello))]
    later = RecordReader()
    later.feed(b"\x17\x03\x03\x00\x01x")
    assert later.feed(hello)[1] is not None  # later in a stream it is no record header


def test_a_session_opened_with_an_sslv2_hello_has_the_offer_and_the_servers_choice(tmp_path):
    hello = ssl2_client_hello(0x0303)
    answer = server_answer(hello, tmp_path)
    conversation = TlsConversation()
    (message,) = conversation.feed("c2s", hello)
    assert (message.kind, message.name, message.end_offset) == ("handshake", "ClientHello (SSLv2 format)", len(hello))
    names = [m.name for m in conversation.feed("s2c", answer)]
    assert names == ["ServerHello", "Certificate", "ServerHelloDone"]
    facts = conversation.facts
    assert (facts.tls_version, facts.cipher_suite, facts.resumed) == ("1.2", "TLS_RSA_WITH_AES_128_CBC_SHA", False)
    assert (facts.sni, facts.alpn_offered, facts.early_data, facts.client_hello_bytes) == (None, (), "none", len(hello))


def test_inspect_reads_a_written_capture_of_it(tmp_path):
    """The TCP connection is TLS from its first byte, and the ServerHello is the handshake, not
    the answer to a request (before, the stream was plain HTTP: 1 round trip to the ServerHello)."""
    hello = ssl2_client_hello(0x0301, specs=bytes.fromhex("00002f000035"))
    answer = server_answer(hello, tmp_path)
    (inspected,) = inspect_packets(tcp_conversation([(True, hello), (False, answer)]))
    report = inspected.report
    assert (report.tls_version, report.cipher) == ("1.0", "TLS_RSA_WITH_AES_128_CBC_SHA")
    assert (report.resumed, report.early_data, report.tfo) == (False, "none", "none")
    assert report.round_trips is None and report.ttfb_s is None
    assert report.setup_round_trips is None


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is the oracle (Debian's tshark package)")
def test_tshark_reads_the_written_capture_alike(tmp_path):
    """The oracle: tshark decodes the same file's SSLv2 hello and the server's choice the same way."""
    hello = ssl2_client_hello(0x0303)
    packets = tcp_conversation([(True, hello), (False, server_answer(hello, tmp_path))])
    path = tmp_path / "ssl2.pcap"
    with PcapWriter(path) as writer:
        for time, data in packets:
            writer.write(time, data)
    fields = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tls.handshake.type == 2", "-T", "fields",
         "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite"],
        check=True, capture_output=True, text=True).stdout.split()
    specs = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tls.handshake.cipher_spec_len", "-T", "fields",
         "-e", "tls.handshake.cipherspec"], check=True, capture_output=True, text=True).stdout.split()
    assert fields == ["0x0303", "0x002f"]
    assert specs == ["0x00002f,0x010080,0x000035,0x00000a"]  # tshark too reads it as an SSLv2 hello
    (inspected,) = inspect_packets(packets)
    assert (inspected.report.tls_version, inspected.report.cipher) == ("1.2", "TLS_RSA_WITH_AES_128_CBC_SHA")
