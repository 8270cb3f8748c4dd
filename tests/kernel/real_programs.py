"""What the tests of programs nobody here wrote (openssl, curl, nginx) share: a certificate for
the server, the capture the shim took of an exchange, written to a pcap and inspected, and the
rule a real-time TTFB must keep with its counted round trips."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from handshake.analysis.capture import CaptureInspection, inspect_capture
from handshake.analysis.keylog import parse_keylog
from handshake.kernel import Topology
from handshake.trace.pcap import PcapWriter

OPENSSL = shutil.which("openssl")


def self_signed(work: Path) -> tuple[Path, Path]:
    """(key, certificate): a P-256 self-signed certificate for server.test, made by openssl."""
    key, cert = work / "key.pem", work / "cert.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=server.test", "-days", "1"],
                   check=True, capture_output=True)
    return key, cert


def inspect_what_crossed(topo: Topology, pcap: Path, keylog: Path, *, steps: bool = False) -> CaptureInspection:
    """The packets the shim saw since the last call, written to ``pcap`` and inspected with the
    client's key log (with ladder steps if asked)."""
    with PcapWriter(pcap) as writer:
        for time_s, data in topo.shim.take_packets():
            writer.write(time_s, data)
    return inspect_capture(pcap, parse_keylog(keylog.read_text()), steps=steps)


def spans_its_round_trips(ttfb_ms: float, round_trips: int, rtt_ms: float) -> bool:
    """A real program's TTFB is its round trips of path plus its own computation: never under the
    path (1 ms for clock granularity) and under one more round trip, so a round trip counted too
    many or too few cannot pass. The computation is the machine's: 3-8 ms here when quiet, up to
    25 ms with both cores oversubscribed, 52 ms once in CI (nginx's tfo-cold)."""
    return round_trips * rtt_ms - 1 <= ttfb_ms < (round_trips + 1) * rtt_ms
