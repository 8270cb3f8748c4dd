"""The packet trace both engines produce and the analysis reads: raw IP packets with times."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TracedPacket:
    """One IP packet as seen at the capture point (the client's interface)."""

    time: float
    """Seconds on the engine's clock (virtual or monotonic)."""
    data: bytes
    """The whole IP packet, headers included: what a LINKTYPE_RAW pcap record holds."""


@dataclass
class Trace:
    """What a run leaves behind: the packets, and the TLS secrets needed to read them."""

    packets: list[TracedPacket] = field(default_factory=list)
    keylog: str = ""
    """NSS key log text (empty when nothing was encrypted)."""
