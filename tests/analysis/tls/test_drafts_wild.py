"""TLS 1.3 drafts in captures from the wild (Zeek's test traces): each session has its facts,
and draft 23's compatibility-mode session id echo is no resumption (RFC 8446 §D.4)."""

from __future__ import annotations

from pathlib import Path

from handshake.analysis.capture import inspect_capture
from handshake.report.inspect_view import render_inspection

WILD = Path(__file__).resolve().parents[2] / "data" / "wild"


def _rows(name: str) -> dict[str, dict]:
    return {c.report.client: c.report.as_dict() for c in inspect_capture(WILD / name).connections}


def test_draft_23_chrome_canary():
    rows = _rows("zeek-tls-tls13draft23-chrome67.0.3368.0-canary.pcap")
    tls = rows["192.168.86.23:63449"]
    # The ClientHello offers 0x7f17 in supported_versions; the ServerHello (draft 22 on: 1.2
    # layout) names it there too and echoes the client's 32-byte session id.
    assert (tls["tls_version"], tls["sni"], tls["alpn_offered"], tls["cipher"]) == (
        "1.3-draft-23", "tls13.crypto.mozilla.org", ["h2", "http/1.1"], "TLS_AES_128_GCM_SHA256")
    assert (tls["resumed"], tls["early_data"], tls["hrr"], tls["tfo"]) == (False, "none", False, "none")
    # A second connection opened and closed with no byte of TLS: nothing to say about TLS.
    idle = rows["192.168.86.23:63450"]
    assert (idle["tls_version"], idle["resumed"], idle["early_data"], idle["hrr"], idle["tfo"]) == (
        None, None, "unknown", None, "none")
    assert idle["round_trips"] is None and "no request in the capture" in idle["notes"]


def test_draft_19_early_data():
    rows = _rows("zeek-tls-tls-13draft19-early-data.pcap")
    full, resumed = rows["192.168.6.240:65503"], rows["192.168.6.240:65504"]
    # Draft 19's ServerHello has the version in its own field (0x7f13) and no session id.
    assert (full["tls_version"], full["cipher"], full["resumed"], full["early_data"], full["hrr"]) == (
        "1.3-draft-19", "TLS_AES_256_GCM_SHA384", False, "none", False)
    # The second connection offers early data with a PSK the ServerHello takes (pre_shared_key).
    assert (resumed["tls_version"], resumed["resumed"], resumed["early_data"], resumed["hrr"]) == (
        "1.3-draft-19", True, "sent", False)
    assert full["sni"] is None and full["alpn_offered"] == []  # the client sent neither extension


def test_the_table_shows_what_is_unknown_as_unknown():
    name = "zeek-tls-tls13draft23-chrome67.0.3368.0-canary.pcap"
    table = render_inspection(inspect_capture(WILD / name), "table", name=name)
    idle = next(line for line in table.splitlines() if "63450" in line)
    cells = idle.split()
    # TLS -, SNI ?, resumed ?, 0-RTT unknown, TFO none, setup RTT -, RTTs ?, TTFB ?, server ms -
    assert cells[5:14] == ["-", "?", "?", "unknown", "none", "-", "?", "?", "-"], cells
