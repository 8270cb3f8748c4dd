"""What `inspect` and `compare` say about one connection: its facts and figures (DESIGN.md §3),
and the small pieces the TCP and QUIC analyzers both use to fill them in."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

from .tls.conversation import TlsFacts

__all__ = ["ConnectionReport", "QuicConnectionReport", "first_byte_mark", "note_retransmission", "on_microseconds",
           "retransmission_causes"]

_MAX_EVENTS: Final = 1 << 16
"""Retransmissions remembered per kind and side (for the counts in the causes)."""
SERVER_TIME_NOTE_S: Final = 0.010
"""Server time worth a note in words; below it, a server's own computation is in the noise."""


@dataclass(init=False)
class ConnectionReport:
    """The facts and figures of one connection (DESIGN.md §3, the CONN object)."""

    transport: str
    client: str
    server: str
    start_time: float
    tls_version: str | None = None
    sni: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    """The application protocol the server selected (TLS 1.3 and QUIC: needs the key log)."""
    alpn_offered: list[str] = field(default_factory=list)
    """The application protocols the ClientHello offered, in its order (always in clear)."""
    resumed: bool | None = None
    """None where the capture does not tell (no ServerHello, or nothing after it that decides)."""
    early_data: str = "unknown"
    """"accepted", "rejected", "sent" (offered; acceptance unknown without the key log), "none", or
    "unknown" (no ClientHello in the capture)."""
    tfo: str = "unknown"
    """"data" (SYN with a cookie and data), "cookie-request", "none", or "unknown" (no SYN seen)."""
    hrr: bool | None = None
    """None unless both the first ClientHello and the server's answer to it are in the capture
    (or a HelloRetryRequest is)."""
    round_trips: int | None = None
    setup_round_trips: int | None = None
    ttfb_s: float | None = None
    server_s: float | None = None
    """How long the server held the request before its first response byte, as far as the
    capture's vantage point shows it (its answer time less the path's, which a SYN-ACK or a
    server Initial shows); None where the capture cannot tell."""
    round_trips_basis: str | None = None
    """How the response was found: "clear" (HTTP read in clear), "decrypted" (with the key
    log), "inferred" (from what is in clear and causality, without keys); None without a count."""
    bytes_client: int = 0
    bytes_server: int = 0
    packets: int = 0
    causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prelude: str | None = None
    """What came before TLS in the TCP stream (analysis/tcp/prelude.py): "http-connect",
    "socks4", "socks4a", "socks5", "starttls-smtp", "starttls-imap", "starttls-pop3",
    "starttls-xmpp", "starttls-ftp", "starttls-ldap"; None when TLS (or HTTP) began at once."""

    # Made once per connection, so written out (a dataclass's generated __init__ stays
    # interpreted: 15k instructions here), with the __reduce__ pickling then needs (workers send
    # their reports back).
    def __init__(self, transport: str, client: str, server: str, start_time: float, tls_version: str | None = None,
                 sni: str | None = None, cipher: str | None = None, alpn: str | None = None,
                 alpn_offered: list[str] | None = None, resumed: bool | None = None, early_data: str = "unknown",
                 tfo: str = "unknown", hrr: bool | None = None, round_trips: int | None = None,
                 setup_round_trips: int | None = None, ttfb_s: float | None = None, server_s: float | None = None,
                 round_trips_basis: str | None = None, bytes_client: int = 0, bytes_server: int = 0, packets: int = 0,
                 causes: list[str] | None = None,
                 notes: list[str] | None = None, prelude: str | None = None) -> None:
        self.transport = transport
        self.client = client
        self.server = server
        self.start_time = start_time
        self.tls_version = tls_version
        self.sni = sni
        self.cipher = cipher
        self.alpn = alpn
        self.alpn_offered = [] if alpn_offered is None else alpn_offered
        self.resumed = resumed
        self.early_data = early_data
        self.tfo = tfo
        self.hrr = hrr
        self.round_trips = round_trips
        self.setup_round_trips = setup_round_trips
        self.ttfb_s = ttfb_s
        self.server_s = server_s
        self.round_trips_basis = round_trips_basis
        self.bytes_client = bytes_client
        self.bytes_server = bytes_server
        self.packets = packets
        self.causes = [] if causes is None else causes
        self.notes = [] if notes is None else notes
        self.prelude = prelude

    def __reduce__(self) -> tuple[type, tuple]:
        return type(self), tuple(getattr(self, f.name) for f in fields(self))

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.ttfb_s is None else round(self.ttfb_s * 1000, 3)

    @property
    def server_ms(self) -> float | None:
        return None if self.server_s is None else round(self.server_s * 1000, 3)

    def as_dict(self) -> dict[str, object]:
        """The CONN object of DESIGN.md §3 (field names as in `compare` rows where both have
        them). Built here, compiled, since `inspect` makes one per connection."""
        return {
            "transport": self.transport,
            "client": self.client,
            "server": self.server,
            "start_time": self.start_time,
            "tls_version": self.tls_version,
            "sni": self.sni,
            "alpn": self.alpn,
            "alpn_offered": list(self.alpn_offered),
            "cipher": self.cipher,
            "resumed": self.resumed,
            "early_data": self.early_data,
            "tfo": self.tfo,
            "hrr": self.hrr,
            "quic_version": None,
            "retry": False,
            "round_trips": self.round_trips,
            "setup_round_trips": self.setup_round_trips,
            "ttfb_ms": self.ttfb_ms,
            "server_ms": self.server_ms,
            "round_trips_basis": self.round_trips_basis,
            "prelude": self.prelude,
            "bytes_client": self.bytes_client,
            "bytes_server": self.bytes_server,
            "packets": self.packets,
            "causes": list(self.causes),
            "notes": list(self.notes),
        }

    def adopt_tls_facts(self, facts: TlsFacts) -> None:
        """What the TLS handshake said, as TCP and QUIC both report it (the version is the
        caller's: QUIC is TLS 1.3 whatever a capture shows)."""
        self.sni = facts.sni
        self.cipher = facts.cipher_suite
        if facts.hrr:
            self.hrr = True
        else:
            # No HelloRetryRequest is a fact only where the first ClientHello and the server's
            # answer to it (the ServerHello: what names the cipher suite) were both seen.
            self.hrr = False if facts.client_hello_bytes is not None and facts.cipher_suite is not None else None
        self.resumed = facts.resumed
        self.alpn = facts.alpn_selected
        self.alpn_offered = list(facts.alpn_offered)

    def note_server_time(self) -> None:
        """Say the server time in words where it is more than computation noise."""
        if self.server_s is not None and self.server_s >= SERVER_TIME_NOTE_S:
            self.notes.append(f"the server took {self.server_s * 1000:.0f} ms to answer")

    def count(self, from_client: bool, wire_bytes: int) -> None:
        """One more packet of the connection, on its side."""
        if from_client:
            self.bytes_client += wire_bytes
        else:
            self.bytes_server += wire_bytes
        self.packets += 1


@dataclass(init=False)
class QuicConnectionReport(ConnectionReport):
    """A ``ConnectionReport`` with the facts only QUIC has."""

    quic_version: str | None = None
    """"1", "2" or the hex code of the version the server answered in."""
    retry: bool | None = False
    """The server sent a Retry (one more round trip); None where the capture began after the
    client's first Initial, which a Retry answers."""
    version_negotiation: bool = False

    # Written out like the base's, every parameter again: mypyc calls the base's compiled __init__
    # from a generated one with the wrong arguments, and passes super().__init__(**kwargs) wrongly.
    def __init__(self, transport: str, client: str, server: str, start_time: float, tls_version: str | None = None,
                 sni: str | None = None, cipher: str | None = None, alpn: str | None = None,
                 alpn_offered: list[str] | None = None, resumed: bool | None = None, early_data: str = "unknown",
                 tfo: str = "unknown", hrr: bool | None = None, round_trips: int | None = None,
                 setup_round_trips: int | None = None, ttfb_s: float | None = None, server_s: float | None = None,
                 round_trips_basis: str | None = None, bytes_client: int = 0, bytes_server: int = 0, packets: int = 0,
                 causes: list[str] | None = None,
                 notes: list[str] | None = None, prelude: str | None = None, quic_version: str | None = None,
                 retry: bool | None = False,
                 version_negotiation: bool = False) -> None:
        super().__init__(transport, client, server, start_time, tls_version, sni, cipher, alpn, alpn_offered, resumed,
                         early_data, tfo, hrr, round_trips, setup_round_trips, ttfb_s, server_s, round_trips_basis,
                         bytes_client, bytes_server, packets, causes, notes, prelude)
        self.quic_version = quic_version
        self.retry = retry
        self.version_negotiation = version_negotiation

    def as_dict(self) -> dict[str, object]:
        conn = super().as_dict()
        conn["quic_version"] = self.quic_version
        conn["retry"] = self.retry
        return conn


def note_retransmission(found: dict[str, list[tuple[float, float | None]]], what: str, time: float,
                        delay: float | None) -> None:
    """Add a retransmission of ``what`` (when, how long after its first copy) to what a side
    ``found``, up to _MAX_EVENTS of each kind: the TCP and the QUIC analyzers' one record."""
    events = found.setdefault(what, [])
    if len(events) < _MAX_EVENTS:
        events.append((time, delay))


def retransmission_causes(side: str, found: Mapping[str, Sequence[tuple[float, float | None]]],
                          before: float | None) -> list[str]:
    """One line per kind of retransmission (what → [(when, delay after the first copy)]) that
    happened before ``before`` (None: at all)."""
    out = []
    for what, events in found.items():
        delays = [delay for at, delay in events if before is None or at <= before]
        if delays:
            times = "" if len(delays) == 1 else f" {len(delays)} times"
            if delays[0] is None:
                when = "its first copy was lost before the capture point"
            else:
                when = f"first after {delays[0]:.3f} s"
            out.append(f"{side} {what} retransmitted{times} ({when})")
    return out


def on_microseconds(time: float) -> float:
    """A capture time on the microsecond grid of a classic pcap.

    The analyzers count on this grid, so a run's in-memory trace and the pcap written from it
    (microsecond timestamps) give the same TTFB and the same delays to the last digit.
    """
    scaled = time * 1_000_000
    if not math.isfinite(scaled):  # NaN or infinity: nothing to round
        return time
    # round(scaled), half to even, in floats: compiled, round() is a generic call that makes an int.
    whole = float(int(scaled))
    if whole > scaled:
        whole -= 1.0  # int() truncates towards zero; this is the floor
    fraction = scaled - whole
    if fraction > 0.5 or (fraction == 0.5 and whole % 2.0 == 1.0):
        whole += 1.0
    return whole / 1_000_000


def first_byte_mark(rnd: int) -> str:
    """The ladder's mark on the packet that brought the first response byte (TCP and QUIC)."""
    return f"first response byte: {rnd} round trip{'s' * (rnd != 1)}"
