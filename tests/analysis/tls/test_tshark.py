"""tshark as an independent oracle: same conversations, same key log, same messages.

All conversations go into one pcap (one TCP connection each, told apart by client port) so
tshark starts once. Compared per direction: the handshake message types in order, and the
content types of the other records in order (inner types where the key log opens them).
"""

from __future__ import annotations

import json
import shutil
import ssl
import struct
import subprocess
from pathlib import Path

import pytest

from handshake.analysis.keylog import parse_keylog
from handshake.analysis.tls.conversation import TlsConversation
from handshake.analysis.tls.messages import HANDSHAKE_NAMES

from .exchange import make_contexts, run_exchange, write_self_signed_certificate

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")

HANDSHAKE_TYPES = {name: code for code, name in HANDSHAKE_NAMES.items()} | {"HelloRetryRequest": 2}
RECORD_TYPES = {"ccs": 20, "alert": 21, "app_data": 23, "early_data": 23}
CLIENT, SERVER, SERVER_PORT = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 443
SEGMENT_BYTES = 1400


def _packet(source: bytes, destination: bytes, ports: tuple[int, int], seq: int, ack: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, source, destination)
    return ip + tcp


def write_pcap(path: Path, connections: dict[int, list[tuple[str, bytes]]]) -> None:
    """A raw-IPv4 pcap (LINKTYPE_RAW) with each connection's chunks as TCP segments."""
    packets = []
    for port, chunks in connections.items():
        up, down = (port, SERVER_PORT), (SERVER_PORT, port)
        seq = {"c2s": 1001, "s2c": 5001}
        packets += [
            _packet(CLIENT, SERVER, up, 1000, 0, 0x02, b""),
            _packet(SERVER, CLIENT, down, 5000, 1001, 0x12, b""),
            _packet(CLIENT, SERVER, up, 1001, 5001, 0x10, b""),
        ]
        for direction, data in chunks:
            for i in range(0, len(data), SEGMENT_BYTES):
                part = data[i : i + SEGMENT_BYTES]
                if direction == "c2s":
                    packets.append(_packet(CLIENT, SERVER, up, seq["c2s"], seq["s2c"], 0x18, part))
                else:
                    packets.append(_packet(SERVER, CLIENT, down, seq["s2c"], seq["c2s"], 0x18, part))
                seq[direction] += len(part)
    with path.open("wb") as pcap:
        pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for number, packet in enumerate(packets):
            pcap.write(struct.pack("<IIII", 1_700_000_000 + number // 1000, number % 1000 * 1000, len(packet), len(packet)))
            pcap.write(packet)


@pytest.fixture(scope="module")
def conversations(tmp_path_factory) -> tuple[dict[int, list[tuple[str, bytes]]], str]:
    directory = tmp_path_factory.mktemp("oracle")
    cert_file, key_file = write_self_signed_certificate(directory)
    connections = {}
    keylog_text = ""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        keylog_file = directory / f"{version.name}.log"
        client, server = make_contexts(cert_file, key_file, keylog_file, version)
        full = run_exchange(client, server)
        resumed = run_exchange(client, server, session=full.session)
        picky = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        picky.load_cert_chain(str(cert_file), str(key_file))
        picky.set_ecdh_curve("prime256v1")
        retried = run_exchange(client, picky)
        for exchange in (full, resumed, retried):
            connections[40000 + len(connections)] = exchange.chunks
        keylog_text += keylog_file.read_text()
    fixture = json.loads((Path(__file__).parent / "data" / "tls13_openssl_0rtt.json").read_text())
    for chunks in fixture["connections"].values():
        connections[40000 + len(connections)] = [(d, bytes.fromhex(data)) for d, data in chunks]
    keylog_text += fixture["keylog"]
    return connections, keylog_text


def tshark_view(pcap: Path, keylog_file: Path) -> dict[tuple[int, str], dict[str, list[int]]]:
    fields = ["tcp.srcport", "tcp.dstport", "tls.record.content_type", "tls.handshake.type"]
    command = ["tshark", "-n", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog_file}", "-T", "fields"]
    command += [arg for field in fields for arg in ("-e", field)] + ["-E", "occurrence=a", "-E", "aggregator=,"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    view: dict[tuple[int, str], dict[str, list[int]]] = {}
    for line in output.splitlines():
        source, destination, content_types, handshake_types = (line.split("\t") + ["", "", "", ""])[:4]
        if not source:
            continue
        key = (int(source), "c2s") if int(destination) == SERVER_PORT else (int(destination), "s2c")
        entry = view.setdefault(key, {"handshake": [], "records": []})
        entry["handshake"] += [int(t) for t in handshake_types.split(",") if t]
        entry["records"] += [int(t) for t in content_types.split(",") if t and int(t) != 22]
    return view


def test_tshark_sees_the_same_messages(tmp_path, conversations):
    connections, keylog_text = conversations
    pcap, keylog_file = tmp_path / "all.pcap", tmp_path / "keys.log"
    write_pcap(pcap, connections)
    keylog_file.write_text(keylog_text)
    view = tshark_view(pcap, keylog_file)
    keylog = parse_keylog(keylog_text)
    for port, chunks in connections.items():
        conversation = TlsConversation(keylog)
        messages = [m for direction, data in chunks for m in conversation.feed(direction, data)]
        for direction in ("c2s", "s2c"):
            mine = [m for m in messages if m.direction == direction]
            expected = view.get((port, direction), {"handshake": [], "records": []})
            assert [HANDSHAKE_TYPES[m.name] for m in mine if m.kind == "handshake"] == expected["handshake"], (port, direction)
            assert [RECORD_TYPES[m.kind] for m in mine if m.kind != "handshake"] == expected["records"], (port, direction)
