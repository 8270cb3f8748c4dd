"""From the probe's connections to rows: counted from the packets, or inferred without them.

With a capture, each measured connection is found in the packets by its client port and judged
by the analysis ``inspect`` uses (``analysis.capture.inspect_packets``) with the probe's own key
log: round trips, TTFB, server time and causes are read from the wire. The path's RTT is the
SYN to SYN-ACK time of its TCP connections (the QUIC Initial to the server's first answer
where it tried no TCP).

Without one, the client's own clock stands in: TTFB runs from just before connect to the read
that brought the response's first byte, the RTT is the shortest connect() (or the kernel's and
aioquic's minimum RTT sample), the round trips before the request are the time the client could
send it (the read that completed its handshake: its own computation after that is no round trip)
over that RTT, and one more carries the answer. That quotient is rounded down, not to nearest:
no round trip is shorter than the shortest one seen, so what lies beyond whole round trips is
computation (the peers' handshake work, a loaded machine waking a process late), up to most of
one round trip (``SETUP_SLACK``); what the answer took beyond that round
trip after the request left is the server time. Such a count is labelled inferred: it cannot see
a round trip lost inside the answer (a first TLS record beyond the initial window), which it
takes for server time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Final

from handshake.analysis.report import ConnectionReport
from handshake.trace.packet import PacketError, decode

from .attempt import Attempt
from .connect import TFO_NO_COOKIE, Connection

__all__ = ["Measurement", "ProbeRow", "counted", "inferred", "packet_rtt_s", "client_rtt_s", "probe_row",
           "port_of"]


@dataclass
class Measurement:
    """One measured connection's figures."""

    basis: str
    """"counted" (from the packets) or "inferred" (from the client's clock)."""
    round_trips: int | None
    setup_round_trips: int | None
    ttfb_ms: float | None
    server_ms: float | None
    tls_version: str | None
    http_version: str | None
    resumed: bool | None
    early_data: str
    tfo: str
    causes: list[str] = field(default_factory=list)


def port_of(endpoint: str) -> int:
    """The port of "addr:port" (IPv6 addresses hold colons too)."""
    return int(endpoint.rpartition(":")[2])


def _http_version(connection: Connection) -> str | None:
    if connection.response is not None:
        return connection.response.http_version
    return {"h2": "2", "h3": "3", "http/1.1": "1.1"}.get(connection.alpn or "", None)


def counted(report: ConnectionReport, connection: Connection) -> Measurement:
    return Measurement(
        "counted", report.round_trips, report.setup_round_trips, report.ttfb_ms, report.server_ms,
        report.tls_version, _http_version(connection), report.resumed, report.early_data, report.tfo,
        list(report.causes),
    )


def _tfo_seen(connection: Connection, tried: bool) -> str:
    if not tried:
        return "none"
    if connection.tfo_data_acked:
        return "data"
    return "cookie-request" if connection.tfo_failure == TFO_NO_COOKIE else "unknown"


SETUP_SLACK: Final = 0.2
"""How far below a whole number of RTTs a wait may end (the RTT is a minimum over a few samples,
so one round trip may be a little shorter); anything more than 1 − SETUP_SLACK beyond it is
taken for another round trip."""


def inferred(connection: Connection, rtt_s: float | None, *, tfo_tried: bool) -> Measurement:
    handshake = connection.handshake
    ttfb_s, ready_s, left_s = connection.first_byte_s, connection.request_ready_s, connection.request_left_s
    setup = rounds = server_ms = None
    if rtt_s and ttfb_s is not None and ready_s is not None and left_s is not None:
        setup = int(ready_s / rtt_s + SETUP_SLACK)
        rounds = setup + 1
        server_ms = max(0.0, (ttfb_s - left_s - rtt_s) * 1000)
    return Measurement(
        "inferred", rounds, setup, None if ttfb_s is None else ttfb_s * 1000, server_ms,
        handshake.tls_version if handshake else None, _http_version(connection),
        handshake.resumed if handshake else None, handshake.early_data if handshake else "none",
        _tfo_seen(connection, tfo_tried),
    )


def packet_rtt_s(packets: list[tuple[float, bytes]], client_ports: set[int]) -> float | None:
    """The shortest SYN to SYN-ACK time among the connections of ``client_ports``; where there is
    no TCP, the first QUIC datagram to the server's first answer."""
    first_out: dict[tuple[str, int], float] = {}
    samples: dict[str, list[float]] = {"tcp": [], "udp": []}
    answered: set[tuple[str, int]] = set()
    for time_s, data in packets:
        try:
            ip = decode(data)
        except PacketError:
            continue
        transport = ip.transport
        if isinstance(transport, bytes):
            continue
        kind = "tcp" if ip.proto == 6 else "udp"
        if transport.sport in client_ports:
            syn_only = kind == "udp" or (transport.flags & 0x12) == 0x02
            if syn_only:
                first_out.setdefault((kind, transport.sport), time_s)
        elif transport.dport in client_ports and (kind, transport.dport) not in answered:
            if kind == "udp" or (transport.flags & 0x12) == 0x12:
                answered.add((kind, transport.dport))
                sent = first_out.get((kind, transport.dport))
                if sent is not None:
                    samples[kind].append(time_s - sent)
    chosen = samples["tcp"] or samples["udp"]
    return min(chosen) if chosen else None


def client_rtt_s(connections: list[Connection]) -> float | None:
    """The path's RTT as the client saw it: the shortest plain connect(), else the kernel's or
    aioquic's minimum sample."""
    connects = [c.connected_s for c in connections if c.connected_s]
    if connects:
        return min(connects)
    samples = [c.min_rtt_s for c in connections if c.min_rtt_s]
    return min(samples) if samples else None


@dataclass
class ProbeRow:
    """One variant against the server, over every run."""

    variant: str
    transport: str
    supported: bool
    """The server granted everything the variant needs (and it was measured)."""
    reasons: list[str]
    basis: str | None
    round_trips: int | None
    setup_round_trips: int | None
    ttfb_ms: float | None
    server_ms: float | None
    tls_version: str | None
    http_version: str | None
    resumed: bool | None
    early_data: str
    tfo: str
    causes: list[str]
    refused: list[str]
    expected_round_trips: int
    """The catalog's count for the variant, for the summary's advice only: never a row's count."""
    error: str | None = None
    measured_port: int | None = None
    """The client port of the last run's measured connection: where to find it in a capture."""
    spread: dict[str, Any] | None = None
    """{"runs", "complete", "ttfb_ms": [min, median, max], "round_trips": [min, max]}."""


def probe_row(attempts: list[Attempt], measurements: list[Measurement | None]) -> ProbeRow:
    """The runs of one variant, as medians with their spread; the last run's facts."""
    variant = attempts[0].variant
    refused = sorted({feature for a in attempts for feature in a.refused})
    reasons = list(dict.fromkeys(reason for a in attempts for reason in a.reasons))
    errors = [a.error for a in attempts if a.error]
    done = [m for m in measurements if m is not None and m.ttfb_ms is not None]
    last = done[-1] if done else None
    ttfbs = sorted(m.ttfb_ms for m in done if m.ttfb_ms is not None)
    rounds = sorted(m.round_trips for m in done if m.round_trips is not None)
    servers = [m.server_ms for m in done if m.server_ms is not None]
    row = ProbeRow(
        variant=variant.name, transport=variant.transport, supported=bool(done) and not refused, reasons=reasons,
        basis=last.basis if last else None,
        round_trips=round(statistics.median(rounds)) if rounds else None,
        setup_round_trips=last.setup_round_trips if last else None,
        ttfb_ms=statistics.median(ttfbs) if ttfbs else None,
        server_ms=statistics.median(servers) if servers else None,
        tls_version=last.tls_version if last else None, http_version=last.http_version if last else None,
        resumed=last.resumed if last else None, early_data=last.early_data if last else "none",
        tfo=last.tfo if last else "none", causes=list(dict.fromkeys(c for m in done for c in m.causes)),
        refused=refused, expected_round_trips=variant.expected_round_trips,
        error=errors[-1] if errors and not done else None,
        measured_port=measured.client_port if (measured := attempts[-1].measured) is not None else None,
    )
    if len(attempts) > 1:
        row.spread = {"runs": len(attempts), "complete": len(done),
                      "ttfb_ms": [ttfbs[0], statistics.median(ttfbs), ttfbs[-1]] if ttfbs else None,
                      "round_trips": [rounds[0], rounds[-1]] if rounds else None}
    return row
