"""What the tests of programs nobody here wrote (openssl, curl, nginx) share: a certificate for
the server, and the capture the shim took of an exchange, written to a pcap and inspected."""

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


def inspect_what_crossed(topo: Topology, pcap: Path, keylog: Path) -> CaptureInspection:
    """The packets the shim saw since the last call, written to ``pcap`` and inspected with the
    client's key log."""
    with PcapWriter(pcap) as writer:
        for time_s, data in topo.shim.take_packets():
            writer.write(time_s, data)
    return inspect_capture(pcap, parse_keylog(keylog.read_text()))
