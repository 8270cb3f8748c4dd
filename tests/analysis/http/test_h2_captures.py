"""HTTP/2 captures, end to end: the first response byte is the answer's HEADERS, not the SETTINGS
the server sends on its own; TLS 1.2 decryption agrees with tshark; and so does the response
found in a browser's capture from the wild.

The conversations are real (OpenSSL through the stdlib ssl, HTTP/2 by the h2 library) on a
modelled 100 ms path (h2_timeline.py), written as the client's capture.
"""

from __future__ import annotations

import json
import shutil
import ssl
import struct
import subprocess
from pathlib import Path

import pytest

from handshake.analysis.http.http2 import Http2Reader
from handshake.analysis.keylog import parse_keylog
from handshake.analysis.tcp.connection import TcpConnectionAnalyzer
from handshake.analysis.tcp.flows import FlowPacket
from handshake.analysis.tls.conversation import TlsConversation
from handshake.cli import main
from handshake.trace.packet import decode

from ...capture_files import pcap_bytes
from ..tls.exchange import make_contexts, write_self_signed_certificate
from .h2_timeline import CLIENT, SERVER_PORT, Timeline, h2_timeline

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
WILD = Path(__file__).resolve().parents[2] / "data" / "wild" / "ja4-http2-with-cookies.pcapng"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return write_self_signed_certificate(tmp_path_factory.mktemp("h2"))


def contexts(certificate, keylog_file: Path, version: ssl.TLSVersion, cipher: str | None = None):
    client, server = make_contexts(*certificate, keylog_file, version)
    server.set_alpn_protocols(["h2"])
    if cipher:
        for context in (client, server):
            context.set_ciphers(cipher)
    return client, server


def inspect(capsys, timeline: Timeline, directory: Path, keylog_file: Path | None) -> dict:
    pcap = directory / "h2.pcap"
    pcap.write_bytes(pcap_bytes(timeline.packets))
    argv = ["inspect", str(pcap), "--format", "json"] + (["--keylog", str(keylog_file)] if keylog_file else [])
    assert main(argv) == 0
    (connection,) = json.loads(capsys.readouterr().out)["connections"]
    return connection


def ladder(timeline: Timeline, keylog_file: Path | None):
    keylog = parse_keylog(keylog_file.read_text()) if keylog_file else None
    analyzer = TcpConnectionAnalyzer(("10.0.0.1", 40000), ("10.0.0.2", SERVER_PORT), keylog, steps=True)
    steps = []
    for time, raw in timeline.packets:
        packet = decode(raw)
        steps.append(analyzer.add(FlowPacket(time, packet.src == CLIENT, packet.transport, len(raw))))
    return steps


def marked(steps):
    (step,) = [s for s in steps if any(m.startswith("first response byte") for m in s.marks)]
    return step


def test_tls12_settings_sent_as_the_handshake_ends_are_not_the_response(capsys, certificate, tmp_path):
    keylog_file = tmp_path / "keys.log"
    timeline = h2_timeline(*contexts(certificate, keylog_file, ssl.TLSVersion.TLSv1_2))
    assert timeline.version == "TLSv1.2"
    # The server's SETTINGS ride with its Finished, a round trip before the answer.
    assert (timeline.server_settings_at, timeline.response_at) == (0.3, 0.4)
    connection = inspect(capsys, timeline, tmp_path, keylog_file)
    assert (connection["round_trips"], connection["ttfb_ms"]) == (4, 400.0)
    assert (connection["round_trips_basis"], connection["alpn"], connection["setup_round_trips"]) == \
        ("decrypted", "h2", 3)
    steps = ladder(timeline, keylog_file)
    settings_step = next(s for s in steps if "HTTP/2 SETTINGS" in s.carries and not s.from_client)
    assert settings_step.time_s == 0.3 and "Finished" in settings_step.carries and not settings_step.marks
    assert "HTTP/2 HEADERS :status 200 (stream 1)" in marked(steps).carries
    assert "HTTP/2 HEADERS GET / (stream 1)" in next(s for s in steps if s.from_client and s.time_s == 0.3).carries


def test_tls13_a_slow_answer_is_found_after_the_tickets_and_settings(capsys, certificate, tmp_path):
    keylog_file = tmp_path / "keys.log"
    timeline = h2_timeline(*contexts(certificate, keylog_file, ssl.TLSVersion.TLSv1_3), server_delay=0.25)
    assert (timeline.server_settings_at, timeline.response_at) == (0.3, 0.55)
    connection = inspect(capsys, timeline, tmp_path, keylog_file)
    assert (connection["ttfb_ms"], connection["round_trips_basis"]) == (550.0, "decrypted")
    # The client's SETTINGS ACK reached the server while it computed: 3 round trips + 250 ms, not 4.
    assert (connection["round_trips"], connection["server_ms"]) == (3, 250.0)
    blind = inspect(capsys, timeline, tmp_path, None)
    assert (blind["round_trips"], blind["ttfb_ms"], blind["server_ms"], blind["round_trips_basis"]) == \
        (3, 550.0, 250.0, "inferred")
    steps = ladder(timeline, keylog_file)
    chatter = next(s for s in steps if not s.from_client and s.time_s == 0.3)
    assert chatter.carries[:3] == ("NewSessionTicket", "NewSessionTicket", "HTTP/2 SETTINGS") and not chatter.marks
    answer = marked(steps)
    assert answer.time_s == 0.55 and answer.carries[0] == "HTTP/2 HEADERS :status 200 (stream 1)"


def test_h2c_prior_knowledge_in_clear_goes_through_the_same_reader(capsys, tmp_path):
    timeline = h2_timeline(None, None, server_delay=0.2)
    assert (timeline.server_settings_at, timeline.response_at) == (0.2, 0.4)
    connection = inspect(capsys, timeline, tmp_path, None)
    assert (connection["ttfb_ms"], connection["round_trips_basis"], connection["tls_version"]) == (400.0, "clear", None)
    assert (connection["round_trips"], connection["server_ms"]) == (2, 200.0)
    steps = ladder(timeline, None)
    assert steps[2].carries == ("HTTP/2 SETTINGS", "HTTP/2 HEADERS GET / (stream 1)")
    assert marked(steps).carries[0] == "HTTP/2 HEADERS :status 200 (stream 1)"


# -- TLS 1.2 decryption against tshark ------------------------------------------------------------

CIPHERS = {
    # OpenSSL name: what it exercises
    "ECDHE-ECDSA-AES128-GCM-SHA256": "AES-GCM (RFC 5288), SHA-256 PRF",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "AES-GCM, SHA-384 PRF",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "ChaCha20-Poly1305 (RFC 7905)",
    "ECDHE-ECDSA-AES128-SHA": "AES-CBC + HMAC-SHA1, encrypt_then_mac (RFC 7366)",
    "ECDHE-ECDSA-AES256-SHA384": "AES-CBC + HMAC-SHA384, encrypt_then_mac",
}
NO_ENCRYPT_THEN_MAC = "ECDHE-ECDSA-AES128-SHA256"
"""CBC with OpenSSL's encrypt_then_mac turned off: MAC-then-encrypt."""


def decrypted_frames(timeline: Timeline, keylog_text: str) -> tuple[dict[str, bytes], dict[str, list[tuple[int, int, int]]]]:
    """Each direction's plaintext (the capture's segments fed in order) and its HTTP/2 frames."""
    conversation = TlsConversation(parse_keylog(keylog_text))
    plaintext = {"c2s": b"", "s2c": b""}
    for _, raw in timeline.packets:
        packet = decode(raw)
        direction = "c2s" if packet.src == CLIENT else "s2c"
        for message in conversation.feed(direction, packet.transport.payload):
            if message.plaintext is not None:
                plaintext[direction] += message.plaintext
    frames = {direction: [(f.frame_type, f.stream_id, f.length)
                          for f in Http2Reader(expect_preface=direction == "c2s").feed(data)]
              for direction, data in plaintext.items()}
    return plaintext, frames


def tshark_frames(pcap: Path, keylog_file: Path) -> dict[tuple[int, str], list[tuple[int, int, int]]]:
    command = ["tshark", "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog_file}", "-Y", "http2.type",
               "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "http2.type", "-e", "http2.streamid",
               "-e", "http2.length", "-E", "occurrence=a", "-E", "aggregator=,"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    view: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    for line in output.splitlines():
        source, destination, types, stream_ids, lengths = line.split("\t")
        key = (int(source), "c2s") if int(destination) == SERVER_PORT else (int(destination), "s2c")
        view.setdefault(key, []).extend(zip(*(map(int, field.split(",")) for field in (types, stream_ids, lengths))))
    return view


@needs_tshark
def test_tls12_decryption_gives_the_http2_frames_tshark_decrypts(certificate, tmp_path):
    connections: dict[int, tuple[Timeline, str, str]] = {}
    keylog_text = ""
    for port, cipher in enumerate([*CIPHERS, NO_ENCRYPT_THEN_MAC], start=41000):
        keylog_file = tmp_path / f"{port}.log"
        client, server = contexts(certificate, keylog_file, ssl.TLSVersion.TLSv1_2, cipher)
        if cipher == NO_ENCRYPT_THEN_MAC:
            server.options |= 0x00080000  # SSL_OP_NO_ENCRYPT_THEN_MAC
        timeline = h2_timeline(client, server, client_port=port)
        assert (timeline.version, timeline.cipher) == ("TLSv1.2", cipher)
        connections[port] = (timeline, keylog_file.read_text(), cipher)
        keylog_text += keylog_file.read_text()
    pcap, keylog_file = tmp_path / "all.pcap", tmp_path / "all.log"
    offset = 0.0
    packets = []
    for timeline, _, _ in connections.values():
        packets += [(time + offset, raw) for time, raw in timeline.packets]
        offset += 1.0
    pcap.write_bytes(pcap_bytes(packets))
    keylog_file.write_text(keylog_text)
    view = tshark_frames(pcap, keylog_file)
    for port, (timeline, keys, cipher) in connections.items():
        plaintext, frames = decrypted_frames(timeline, keys)
        assert plaintext == timeline.written, cipher  # every byte each side gave OpenSSL
        for direction in ("c2s", "s2c"):
            assert frames[direction] and frames[direction] == view[(port, direction)], (cipher, direction)


# -- from the wild ----------------------------------------------------------------------------------


def embedded_keylog(pcapng: Path) -> str:
    """The NSS key log of a pcapng's Decryption Secrets Blocks (type 0x0A: secrets type, length,
    then the secrets)."""
    data = pcapng.read_bytes()
    text, position = "", 0
    while position + 12 <= len(data):
        block_type, block_length = struct.unpack_from("<II", data, position)
        if block_type == 0x0A:
            secrets_type, secrets_length = struct.unpack_from("<II", data, position + 8)
            assert secrets_type == 0x544C534B  # "TLSK": an NSS key log
            text += data[position + 16:position + 16 + secrets_length].decode()
        position += block_length
    return text


@needs_tshark
def test_chrome_to_youtube_the_response_is_the_headers_tshark_finds(capsys, tmp_path):
    """ja4-http2-with-cookies.pcapng (FoxIO-LLC/ja4, pcap/): Chrome, TLS 1.3 + h2 to youtube.com,
    with its key log in a Decryption Secrets Block. The server's SETTINGS came 45 ms before the
    answer; the answer is the first HEADERS on stream 1, the client's first request stream."""
    keylog_file = tmp_path / "embedded.log"
    keylog_file.write_text(embedded_keylog(WILD))
    assert main(["inspect", str(WILD), "--keylog", str(keylog_file), "--format", "json"]) == 0
    (connection,) = json.loads(capsys.readouterr().out)["connections"]

    def tshark_times(display_filter: str) -> list[float]:
        command = ["tshark", "-n", "-r", str(WILD), "-Y", display_filter, "-T", "fields", "-e", "frame.time_epoch"]
        output = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
        return [float(line) for line in output.split()]

    # tshark reads the embedded secrets itself: an independent decryption.
    start = tshark_times("tcp.flags.syn == 1 && tcp.flags.ack == 0")[0]
    first_request = tshark_times("tcp.dstport == 443 && http2.type == 1 && http2.streamid == 1")[0]
    answer = tshark_times("tcp.srcport == 443 && http2.type == 1 && http2.streamid == 1")[0]
    settings_time = tshark_times("tcp.srcport == 443 && http2.type == 4")[0]
    assert start < first_request < settings_time < answer
    assert connection["ttfb_ms"] == round((answer - start) * 1000, 3) == 1233.126
    assert (connection["round_trips"], connection["round_trips_basis"], connection["alpn"]) == (3, "decrypted", "h2")
