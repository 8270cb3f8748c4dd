"""Captures written by `compare --capture` open in tshark, and the key log decrypts them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from handshake.net.link import LinkConfig
from handshake.runner import RunOptions, run_sim, write_capture
from handshake.variants import CATALOG

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI installs it: apt-get install tshark)")


def _tshark_fields(pcap, keylog, display_filter, *fields):
    command = [TSHARK, "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    if keylog is not None:
        command += ["-o", f"tls.keylog_file:{keylog}"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in result.stdout.splitlines() if line]


_REQUEST_METHOD = {"2": "http2.headers.method", "1.1": "http.request.method"}
"""tshark's field for the request's method, by the HTTP the run spoke."""


@pytest.mark.parametrize("http", ["2", "1.1"])
@pytest.mark.parametrize("variant", ["tfo-tls13-0rtt", "tls13-0rtt"])
def test_tshark_finds_the_http_request_inside_the_early_data(tmp_path, variant, http):
    run = run_sim(CATALOG[variant], LinkConfig.from_rtt(0.1), RunOptions(http=http))
    pcap, keylog = write_capture(run, tmp_path)
    method_field = _REQUEST_METHOD[http]
    fields = ("frame.number", "tcp.flags.syn", "tcp.srcport", method_field, "tls.handshake.type")
    requests = _tshark_fields(pcap, keylog, method_field, *fields)
    assert len(requests) == 2  # the warm-up's GET after its handshake, the measured one in 0-RTT
    frame, syn, _port, method, handshake_types = requests[-1]
    assert method == "GET"
    assert "1" in handshake_types.split(",")  # the ClientHello travels in the same packet
    if variant == "tfo-tls13-0rtt":
        assert syn == "1"  # TFO: request in the SYN itself
    else:
        assert syn == "0"
    # Without the key log the request is invisible: it really is encrypted early data.
    assert len(_tshark_fields(pcap, None, method_field, "frame.number")) == 0


def test_tshark_agrees_on_the_tfo_options(tmp_path):
    run = run_sim(CATALOG["tfo-tls13"], LinkConfig.from_rtt(0.05))
    pcap, _ = write_capture(run, tmp_path)
    syns = _tshark_fields(pcap, None, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.len", "tcp.options.tfo.request", "tcp.options.tfo.cookie")
    (cold_len, cold_request, _), (warm_len, _, warm_cookie) = syns
    assert cold_len == "0" and cold_request == "1"
    assert int(warm_len) > 0 and len(warm_cookie.replace(":", "")) == 16


def _frames(pcap, keylog):
    rows = _tshark_fields(pcap, keylog, "quic", "frame.number", "quic.long.packet_type", "quic.stream.stream_id",
                          "quic.stream_data", "http3.frame_type")
    return [row + [""] * (5 - len(row)) for row in rows]


def test_tshark_decodes_the_quic_0rtt_request_and_the_http3_response(tmp_path):
    run = run_sim(CATALOG["quic-0rtt"], LinkConfig.from_rtt(0.1))
    pcap, keylog = write_capture(run, tmp_path)
    frames = _frames(pcap, keylog)
    zero_rtt = [f for f in frames if "1" in f[1].split(",")]  # long header type 1: 0-RTT
    assert zero_rtt, "no 0-RTT packet in the capture"
    _, _, streams, data, _ = zero_rtt[0]
    chunks = dict(zip(streams.split(","), data.split(",")))
    request = bytes.fromhex(chunks["0"])  # client bidirectional stream 0 carries the request
    assert request[0] == 0x01  # an HTTP/3 HEADERS frame (RFC 9114 §7.2.2) ...
    # ... whose QPACK field section (after its 2-byte prefix: no dynamic table) opens with the
    # static-table line 17, ":method GET" (RFC 9204 §4.5.2, Appendix A).
    assert request[2:4] == b"\x00\x00" and request[4] == 0xC0 | 17
    after = [f for f in frames if int(f[0]) > int(zero_rtt[0][0])]
    response = next(f for f in after if "0" in f[2].split(",") and f[4])
    assert {"1", "0"} <= set(response[4].split(","))  # HEADERS and DATA frames of the response
    # Without the key log the same packets show no streams at all.
    assert not any(f[2] for f in _frames(pcap, None))
