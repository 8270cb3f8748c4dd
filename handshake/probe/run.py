"""``handshake probe URL``: every variant the server allows, against that server, counted.

For each run, each variant makes its warm-up and measured connections (``attempt``); the
packets of those connections are then taken from the capture (``capture``), and each measured
connection is judged from them (``measure``). TCP variants go first: their answers say whether
the server offers HTTP/3 (Alt-Svc) and on which port; ``--quic`` tries QUIC on the URL's port
anyway. Every connection goes to the one address the target resolved to.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from handshake.analysis.capture import inspect_packets
from handshake.analysis.keylog import parse_keylog
from handshake.endpoints._files import create_private_file
from handshake.errors import UsageError
from handshake.connections import IP_PROTOCOL, of_connections
from handshake.variants import CATALOG

from .attempt import NO_HTTP3, Attempt, ProbeClients, alt_svc_h3_port, attempt_variant
from .capture import CaptureUnavailable, PacketCapture
from .connect import ProbeSocketError
from .https_record import lookup_https_record
from .measure import Measurement, ProbeRow, client_rtt_s, counted, inferred, packet_rtt_s, port_of, probe_row
from .summary import summarize
from .target import Target

__all__ = ["PROBE_VARIANTS", "MAX_RUNS", "ProbeOptions", "ProbeResult", "run_probe"]

PROBE_VARIANTS = ("tls12", "tls12-resume", "tls13", "tls13-resume", "tls13-0rtt",
                  "tfo-tls12", "tfo-tls13", "tfo-tls13-0rtt", "quic", "quic-0rtt")
"""The catalog's variants over TLS, in its order."""
MAX_RUNS = 20
"""At most two connections a variant and run: 20 runs is 400 connections, a polite ceiling."""
CLOCK_STEP_S = 0.01
"""A run over which the system clock moved by more than this against the monotonic one was
stepped (by NTP, say): its packet timestamps are taken on two clocks, so it is made again."""
RETRIES = 2
"""Times a run whose capture cannot be trusted (a clock step, a packet without a timestamp) is
made again."""


@dataclass(frozen=True)
class ProbeOptions:
    runs: int = 1
    variants: tuple[str, ...] = PROBE_VARIANTS
    ca_pem: bytes | None = None
    """Trust these CA certificates instead of the system's (``--cacert``)."""
    insecure: bool = False
    quic: bool = False
    """Try QUIC on the URL's port even if the server advertises no HTTP/3."""
    timeout_s: float = 10.0
    """Per connection: how long the response may take."""
    capture: bool = True
    """Take the packets where the process may (CAP_NET_RAW); False: infer, as without it."""
    capture_path: str | None = None
    keylog_path: str | None = None


@dataclass
class ProbeResult:
    target: Target
    basis: str
    """"counted" (from a capture of the probe's own packets) or "inferred"."""
    basis_note: str
    rtt_ms: float | None
    """The path's RTT, measured (median over runs)."""
    rows: list[ProbeRow]
    quic_port: int | None
    """Where HTTP/3 was tried (advertised, or the URL's port with ``--quic``)."""
    quic_source: str | None
    """"--quic", "https-record" or "alt-svc"."""
    runs: int
    summary: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What about the probe itself limits its answer."""


def _wall_offset_s() -> float:
    """CLOCK_REALTIME less CLOCK_MONOTONIC: what the kernel's packet timestamps are taken on, less
    the probe's own clock. It stays put unless the system clock is stepped (NTP slewing moves it
    at most 0.5 ms a second)."""
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)


def _open_capture(target: Target, options: ProbeOptions) -> tuple[PacketCapture | None, str]:
    if not options.capture:
        return None, "inferred from socket timings and TCP_INFO (capture turned off)"
    try:
        return PacketCapture(target.address), "counted from the packets of the probe's own connections"
    except CaptureUnavailable as error:
        if options.capture_path is not None:
            raise UsageError(f"--capture: {error}") from None
        return None, f"inferred from socket timings and TCP_INFO: {error}; run as root to count from the packets"


def run_probe(target: Target, options: ProbeOptions) -> ProbeResult:
    for name in options.variants:
        if name not in PROBE_VARIANTS:
            raise UsageError(f"probe: unknown variant {name!r}; choose from {', '.join(PROBE_VARIANTS)}")
    if not 1 <= options.runs <= MAX_RUNS:
        raise UsageError(f"--runs {options.runs}: probe makes 1 to {MAX_RUNS} runs")
    capture, basis_note = _open_capture(target, options)
    http3 = _Http3(target.port, "--quic") if options.quic else _Http3()
    notes: list[str] = []
    if not options.quic and target.from_dns:
        record = lookup_https_record(target.host, target.port)
        if record is not None:
            http3 = _Http3(record.port, "https-record")
    attempts: dict[str, list[Attempt]] = {name: [] for name in options.variants}
    measurements: dict[str, list[Measurement | None]] = {name: [] for name in options.variants}
    kept: list[tuple[float, bytes]] = []
    rtts: list[float] = []
    order = sorted(options.variants, key=lambda name: CATALOG[name].transport == "quic")
    with tempfile.TemporaryDirectory(prefix="handshake-probe-") as work:
        keylog = Path(options.keylog_path or os.path.join(work, "keys.log"))
        create_private_file(keylog)
        clients = ProbeClients(target, ca_pem=options.ca_pem, verify=not options.insecure, keylog_path=keylog)
        try:
            for _ in range(options.runs):
                for _retry in range(RETRIES + 1):
                    offset_s = _wall_offset_s()
                    run = [_attempt(name, clients, http3, target, options) for name in order]
                    packets = capture.take() if capture is not None else []
                    problem = _untrusted(capture, offset_s)
                    if problem is None:
                        break
                    if problem not in notes:
                        notes.append(problem)
                for attempt in run:
                    attempts[attempt.variant.name].append(attempt)
                rtt_s = _judge_run(run, packets if capture is not None else None, keylog, measurements, kept)
                if rtt_s is not None:
                    rtts.append(rtt_s)
        except ProbeSocketError as error:
            raise UsageError(error.strerror) from None
        finally:
            if capture is not None:
                capture.close()
    if options.capture_path is not None:
        _write_capture(options.capture_path, kept)
    rtt_ms = statistics.median(rtts) * 1000 if rtts else None
    rows = [probe_row(attempts[name], measurements[name]) for name in PROBE_VARIANTS if name in attempts]
    return ProbeResult(target, "counted" if capture is not None else "inferred", basis_note, rtt_ms, rows,
                       http3.port, http3.source, options.runs, summarize(rows, rtt_ms), notes)


def _untrusted(capture: PacketCapture | None, offset_s: float) -> str | None:
    """Why the run just made cannot be counted from its capture, if it cannot."""
    if capture is None:
        return None
    if abs(_wall_offset_s() - offset_s) >= CLOCK_STEP_S:
        return "the system clock was stepped during a run, which was made again"
    if capture.unstamped:
        return "the kernel had not stamped every packet of a run with its time, which was made again"
    return None


def _attempt(name: str, clients: ProbeClients, http3: _Http3, target: Target, options: ProbeOptions) -> Attempt:
    attempt = attempt_variant(CATALOG[name], clients, limit_s=options.timeout_s, quic_port=http3.port_to_try,
                              no_quic=http3.why_not)
    http3.learn(attempt, target)
    return attempt


@dataclass
class _Http3:
    """Where QUIC is tried: the URL's port with ``--quic``, else where the host's HTTPS record
    offers "h3", else the first ``Alt-Svc: h3`` an answer carries; a port that stayed silent is
    not tried again."""

    port: int | None = None
    source: str | None = None
    silent: str | None = None
    """Why QUIC is no longer tried (nothing answered)."""

    @property
    def port_to_try(self) -> int | None:
        return None if self.silent else self.port

    @property
    def why_not(self) -> str:
        return self.silent or NO_HTTP3

    def learn(self, attempt: Attempt, target: Target) -> None:
        if self.source is None:
            for connection in attempt.connections:
                port = alt_svc_h3_port(connection.response.headers, target.host) if connection.response else None
                if port is not None:
                    self.port, self.source = port, "alt-svc"
                    return
        elif attempt.variant.transport == "quic" and "http3" in attempt.refused and self.silent is None:
            self.silent = attempt.reasons[attempt.refused.index("http3")]


def _judge_run(run: list[Attempt], captured: list[tuple[float, bytes]] | None, keylog: Path,
               measurements: dict[str, list[Measurement | None]], kept: list[tuple[float, bytes]]) -> float | None:
    """Each measured connection of the run, counted from its packets (``captured``; None: no
    capture, so inferred); the run's RTT."""
    connections = [c for attempt in run for c in attempt.connections]
    reports = {}
    if captured is not None:
        packets = of_connections(captured, {(IP_PROTOCOL[c.transport], c.client_port) for c in connections})
        kept += packets
        rtt_s = packet_rtt_s(packets, {c.client_port for c in connections})
        keys = parse_keylog(keylog.read_text())
        for inspected in inspect_packets(packets, keys):
            reports[(inspected.report.transport, port_of(inspected.report.client))] = inspected.report
    else:
        rtt_s = client_rtt_s(connections)
    for attempt in run:
        measured = attempt.measured
        result = None
        if measured is not None and measured.error is None:
            if captured is None:
                result = inferred(measured, rtt_s, tfo_tried=attempt.variant.tfo)
            else:
                report = reports.get((measured.transport, measured.client_port))
                result = counted(report, measured) if report is not None else None
        measurements[attempt.variant.name].append(result)
    return rtt_s


def _write_capture(path: str, packets: list[tuple[float, bytes]]) -> None:
    """The probe's packets as a pcap (raw IP), mode 0600: with the key log it is the plaintext."""
    from handshake.trace.pcap import PcapWriter

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as error:
        raise UsageError(f"cannot write capture {path}: {error.strerror}") from None
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as file, PcapWriter(file) as writer:
        for time_s, data in sorted(packets, key=lambda p: p[0]):
            writer.write(time_s, data)
