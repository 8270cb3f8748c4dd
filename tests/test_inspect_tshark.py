"""tshark as an independent oracle for `inspect`: given the same capture and key log, it finds
the same TLS versions, the same handshake messages in the same packets, the same QUIC long
header packets, and the same fate of early data and resumption.

tshark's JSON (``-T json --no-duplicate-keys``) keeps each extension under its handshake
message, so "early data accepted" is read as RFC 8446 §4.2.10 defines it: EncryptedExtensions
carries the early_data extension.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from handshake.analysis.keylog import parse_keylog
from handshake.analysis.capture import inspect_capture
from handshake.analysis.tls.messages import HANDSHAKE_NAMES
from handshake.runner import RunOptions

from .capture_files import written_run

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI: apt-get install tshark)")

HANDSHAKE_TYPES = {name: code for code, name in HANDSHAKE_NAMES.items()} | {"HelloRetryRequest": 2}
QUIC_LONG_TYPES = {"Initial": 0, "0-RTT": 1, "Handshake": 2, "Retry": 3}
EXT_EARLY_DATA, EXT_PRE_SHARED_KEY = 42, 41


def tshark_frames(pcap, keylog) -> list[dict]:
    command = [TSHARK, "-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-J", "frame tcp udp tls quic"]
    if keylog is not None:
        command += ["-o", f"tls.keylog_file:{keylog}"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return [frame["_source"]["layers"] for frame in json.loads(result.stdout)]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _walk(node, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for value in node.values():
            _walk(value, visit)
    elif isinstance(node, list):
        for value in node:
            _walk(value, visit)


def _extensions(message: dict) -> dict[int, dict]:
    found: dict[int, dict] = {}

    def visit(node):
        if "tls.handshake.extension.type" in node:
            for code in _as_list(node["tls.handshake.extension.type"]):
                found[int(code)] = node

    _walk({k: v for k, v in message.items() if k.startswith("Extension")}, visit)
    return found


def oracle(layers: list[dict]) -> dict[str, dict]:
    """Per connection (tcp.stream / udp.stream): handshake types of each frame, QUIC long
    packet types of each frame, and the facts read from the messages' extensions."""
    connections: dict[str, dict] = {}
    for frame in layers:
        if "tcp" in frame:
            key = "tcp" + frame["tcp"]["tcp.stream"]
        elif "udp" in frame:
            key = "udp" + frame["udp"]["udp.stream"]
        else:
            continue
        conn = connections.setdefault(key, {"frames": [], "long": [], "messages": []})
        types: list[int] = []
        longs: list[int] = []

        def visit(node):
            if "tls.handshake.type" in node and not isinstance(node["tls.handshake.type"], list):
                message = {"type": int(node["tls.handshake.type"]), "ext": _extensions(node), "node": node}
                types.append(message["type"])
                conn["messages"].append(message)
            if "quic.long.packet_type" in node:
                longs.extend(int(t) for t in _as_list(node["quic.long.packet_type"]))

        _walk({k: frame[k] for k in ("tls", "quic") if k in frame}, visit)
        conn["frames"].append(types)
        conn["long"].append(longs)
    for conn in connections.values():
        hellos = [m for m in conn["messages"] if m["type"] == 2]
        client_hello = next(m for m in conn["messages"] if m["type"] == 1)
        server_hello = hellos[-1]  # after a HelloRetryRequest, the real one
        versions = server_hello["ext"].get(43, {}).get("tls.handshake.extensions.supported_version")
        version = versions or server_hello["node"].get("tls.handshake.version")
        conn["tls_version"] = {"0x0304": "1.3", "0x0303": "1.2"}[version]
        offered = EXT_EARLY_DATA in client_hello["ext"]
        ee = [m for m in conn["messages"] if m["type"] == 8]
        if not offered:
            conn["early_data"] = "none"
        elif ee:
            conn["early_data"] = "accepted" if EXT_EARLY_DATA in ee[0]["ext"] else "rejected"
        else:
            conn["early_data"] = "rejected" if conn["tls_version"] == "1.2" or len(hellos) > 1 else "sent"
        conn["certificate"] = any(m["type"] == 11 for m in conn["messages"])
        conn["psk"] = EXT_PRE_SHARED_KEY in server_hello["ext"]
    return connections


def ours(pcap, keylog_path):
    keylog = parse_keylog(keylog_path.read_text()) if keylog_path else None
    return inspect_capture(pcap, keylog, steps=True).connections


def our_handshake_types(step) -> list[int]:
    """The handshake messages a ladder step names, as type codes (TCP: "ServerHello"; QUIC:
    "Initial[ACK, CRYPTO ServerHello+EncryptedExtensions]")."""
    out = []
    for label in step.carries:
        if label in HANDSHAKE_TYPES:
            out.append(HANDSHAKE_TYPES[label])
        for part in label.replace("[", ",").replace("]", ",").split(","):
            part = part.strip()
            if part.startswith("CRYPTO "):
                out += [HANDSHAKE_TYPES[name] for name in part[len("CRYPTO "):].split("+")]
    return out


def our_long_types(step) -> list[int]:
    return [QUIC_LONG_TYPES[label.split("[")[0]] for label in step.carries
            if label.split("[")[0].split(" (")[0] in QUIC_LONG_TYPES]


CASES = [
    ("tls12", None), ("tls12-resume", None), ("tls13", None), ("tls13-resume", None), ("tls13-0rtt", None),
    ("tfo-tls13-0rtt", None), ("quic", None), ("quic-0rtt", None),
    ("tls13", RunOptions(hrr=True)), ("tls13-0rtt", RunOptions(accept_early_data=False)),
    ("quic-0rtt", RunOptions(accept_early_data=False)), ("quic", RunOptions(retry=True)),
]


@pytest.mark.parametrize("variant, options", CASES, ids=[f"{v}{'-' if o else ''}{i}" for i, (v, o) in enumerate(CASES)])
def test_tshark_with_the_key_log_agrees(tmp_path, variant, options):
    written = written_run(tmp_path, variant, options=options)
    theirs = list(oracle(tshark_frames(written.pcap, written.keylog)).values())
    mine = ours(written.pcap, written.keylog)
    assert len(theirs) == len(mine)
    for conn, inspected in zip(theirs, mine):
        report = inspected.report
        assert report.tls_version == conn["tls_version"]
        assert report.early_data == conn["early_data"]
        assert report.resumed == (conn["psk"] if report.tls_version == "1.3" else not conn["certificate"])
        frames = [our_handshake_types(step) for step in inspected.steps]
        if getattr(report, "retry", False):
            # The client's new ClientHello after the Retry (aioquic makes a new one, RFC 9000
            # §17.2.5.3): tshark 4.0 takes CRYPTO offset 0 again for a retransmission ("reused
            # stream offset"), never reads the new client random, and so finds no keys for
            # the rest. Up to the Retry it must agree; the packet types throughout.
            retry = next(i for i, step in enumerate(inspected.steps) if "Retry" in step.carries)
            assert frames[:retry + 1] == conn["frames"][:retry + 1]
        else:
            assert frames == conn["frames"]
        if report.transport == "quic":
            assert [our_long_types(step) for step in inspected.steps] == conn["long"]


@pytest.mark.parametrize("variant", ["tls13-0rtt", "quic-0rtt"])
def test_tshark_without_the_key_log_sees_only_the_hellos_and_so_do_we(tmp_path, variant):
    written = written_run(tmp_path, variant)
    theirs = list(oracle(tshark_frames(written.pcap, None)).values())
    mine = ours(written.pcap, None)
    for conn, inspected in zip(theirs, mine, strict=True):
        assert [our_handshake_types(step) for step in inspected.steps] == conn["frames"]
        assert inspected.report.early_data == conn["early_data"]
    assert mine[-1].report.early_data == "sent"  # offered; neither can tell its fate without keys
