"""One packet as a ladder diagram shows it: when, which way, in which round, what it carried.

The analyzers (``tcp.connection``, ``quic.connection``) emit these while they count, from the same bytes they
count with, so a ladder never shows what a template expects but what the trace holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from mypy_extensions import mypyc_attr



@mypyc_attr(native_class=False)  # pickled between worker processes, which a compiled frozen class is not
@dataclass(frozen=True, slots=True)
class LadderStep:
    """One packet (TCP segment or UDP datagram) of a connection."""

    time_s: float
    """Seconds since the connection's first packet."""
    from_client: bool
    round: int
    """Round trips the client had completed when the packet was sent (the round counter's)."""
    carries: tuple[str, ...]
    """What it carried, in wire order: "SYN", "ClientHello", "HTTP GET /", "Initial[CRYPTO …]"."""
    marks: tuple[str, ...] = ()
    """What this packet shows about the cost: a cause, a retransmission, the first response byte."""
    wire_bytes: int = 0
