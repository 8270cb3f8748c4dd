"""A capture file in, one verdict per connection out: the streaming pipeline behind `inspect`.

    frames (trace.pcap, a generator) → IP packets (trace.links; tunnels stripped by
    trace.tunnels) → decoded (trace.packet) → TCP / QUIC connections
    (tcp.flows.TcpFlowTracker, quic.flows.QuicFlowTracker) → one analyzer per connection
    (tcp.connection.TcpConnectionAnalyzer, quic.connection.QuicConnectionAnalyzer) → reports

Every stage takes one packet at a time and keeps per-connection state only, so memory does not
grow with the file (``parallel`` shares the connections among worker processes). The analyzers are the ones `compare` counts its rows with (through the
``analyze_tcp_flow`` / ``analyze_quic_flow`` wrappers), so a simulated run and a stranger's
capture are judged by the same rules.

Problems with the file are ``CaptureError``s with a one-line message; what can be reported
despite them (a truncated tail, frames of a link type we cannot read, packets that do not
decode) becomes a note instead.

A pcapng file may carry its own key log (Decryption Secrets Blocks): the reader adds it to the
analyzer's key log where the file holds it, so connections whose ClientHello comes after the
block are decrypted, as Wireshark does, without being asked.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Final, cast

from handshake.gc_pause import cyclic_gc_paused
from handshake.trace.integers import u16
from handshake.trace.packet import PacketError, TcpSegment, UdpDatagram, decode
from handshake.trace.pcap import (
    SECRETS_TLS_KEY_LOG,
    SECRETS_TYPE_NAMES,
    SUPPORTED_LINKTYPES,
    CaptureError,
    TruncatedCapture,
    UnsupportedLinkType,
    ip_payload,
    iter_capture,
)
from handshake.trace.tunnels import GENEVE_PORT, VXLAN_PORT, decapsulate

from .keylog import KeyLog, parse_keylog
from .quic.connection import QuicConnectionAnalyzer
from .quic.flows import QuicFlow, QuicFlowTracker
from .report import ConnectionReport, on_microseconds
from .steps import LadderStep
from .tcp.connection import TcpConnectionAnalyzer
from .tcp.flows import TcpFlow, TcpFlowTracker

__all__ = ["CaptureError", "CaptureInspection", "CaptureAnalyzer", "InspectedConnection", "NoConnections",
           "inspect_capture", "inspect_packets"]

MAX_STEPS: Final = 2000
"""Ladder steps kept per connection (with ``steps=True``); later packets are only counted."""


class NoConnections(CaptureError):
    """The capture holds no TCP connection and no QUIC connection."""


@dataclass
class InspectedConnection:
    report: ConnectionReport
    steps: list[LadderStep] = field(default_factory=list)
    """The ladder (with ``steps=True``): the first ``MAX_STEPS`` packets."""
    steps_left_out: int = 0
    """Packets after those."""


@dataclass
class CaptureInspection:
    connections: list[InspectedConnection]
    """Ordered by the time of each connection's first packet."""
    frames: int
    """Frames read from the file."""
    notes: list[str] = field(default_factory=list)
    """What about the file itself limits the answer (truncation, skipped frames)."""


class _Entry:
    __slots__ = ("order", "analyzer", "connection", "failed", "late_keys")

    def __init__(self, order: int, analyzer: TcpConnectionAnalyzer | QuicConnectionAnalyzer) -> None:
        self.order = order
        self.analyzer: TcpConnectionAnalyzer | QuicConnectionAnalyzer | None = analyzer
        self.connection: InspectedConnection | None = None
        self.failed = ""
        self.late_keys: tuple[bytes, bytes] | None = None
        """A settled TCP connection's two ``_late_tcp_key``s (client→server, server→client)."""


def _late_tcp_key(ip: bytes) -> bytes | None:
    """Source and destination address, source and destination port, as the packet carries them,
    of a whole TCP segment without SYN; None for anything else (which takes the full path).

    A SYN may start a new connection on the 4-tuple, so it is always decoded; fragments and
    segments whose header does not fit are left to ``decode`` to judge.
    """
    if len(ip) < 40:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6 or ihl < 20 or (ip[6] & 0x3F) or ip[7] or len(ip) < ihl + 20:
            return None
        header = ihl
        key = ip[12:20] + ip[ihl:ihl + 4]
    elif version == 6:
        if ip[6] != 6 or len(ip) < 60:
            return None
        header = 40
        key = ip[8:44]
    else:
        return None
    offset = (ip[header + 12] >> 4) * 4
    if ip[header + 13] & 0x02 or offset < 20 or len(ip) < header + offset:
        return None
    return key


def _raw_endpoint(endpoint: tuple[str, int]) -> tuple[bytes, bytes]:
    address, port = endpoint
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_pton(family, address), port.to_bytes(2, "big")


class CaptureAnalyzer:
    """Feed IP packets in capture order; ``finish`` gives the connections (sans-IO)."""

    def __init__(self, keylog: KeyLog | None = None, *, steps: bool = False) -> None:
        self._keylog = KeyLog() if keylog is None else keylog.copy()
        """The caller's key log (copied: ``add_secrets`` grows it), shared by every connection."""
        self._steps = steps
        self._tcp = TcpFlowTracker()
        self._quic = QuicFlowTracker()
        self._entries: dict[int, _Entry] = {}  # id(flow) → its analyzer, while it may get packets
        self._latest: dict[tuple, int] = {}  # transport + 4-tuple → id(flow) of its newest connection
        self._flows: dict[int, object] = {}  # id(flow) → flow (keeps the ids valid)
        self._done: list[_Entry] = []
        self._order = 0
        self._position: int | None = None
        self._late: dict[bytes, tuple[_Entry, bool]] = {}
        """``_late_tcp_key`` → (settled TCP connection, from the client?): the fast path for
        packets that can only add to a verdict's counts — most packets of a long transfer."""
        self.undecodable = 0
        """IP packets that did not decode."""
        self.other_udp = 0
        """UDP datagrams that belong to no QUIC connection."""

    def add(self, time: float, ip: bytes, *, cut: bool = False, wire_bytes: int | None = None,
            position: int | None = None) -> None:
        """One IP packet. ``cut``: the snap length shortened it (its transport payload is then
        what was captured); ``wire_bytes``: its length on the wire, if not ``len(ip)``;
        ``position``: its index in the capture (orders connections that start at the same time,
        when several analyzers share a capture)."""
        self._position = position
        if self._late:
            key = _late_tcp_key(ip)
            late = None if key is None else self._late.get(key)
            if late is not None:
                entry, from_client = late
                analyzer = cast(TcpConnectionAnalyzer, entry.analyzer)  # only TCP connections settle
                settled_at = analyzer.settled_at
                if settled_at is not None and time > settled_at:
                    analyzer.count_late(from_client, len(ip) if wire_bytes is None else wire_bytes)
                    return
        try:
            packet = decode(ip, allow_truncated=cut)
        except PacketError:
            self.undecodable += 1
            return
        size = len(ip) if wire_bytes is None else wire_bytes
        transport = packet.transport
        if isinstance(transport, TcpSegment):
            flow, flow_packet, started = self._tcp.place(time, packet, transport, size)
            entry = self._start(flow) if started else self._entries[id(flow)]
            tcp = cast(TcpConnectionAnalyzer, entry.analyzer)
            if not entry.failed:
                try:
                    self._step(entry, tcp.add(flow_packet))
                except Exception as error:  # noqa: BLE001 - a bug on one packet must not hide the other connections
                    entry.failed = _failed_at(flow_packet.time, error)
            if entry.late_keys is None and not entry.failed and tcp.settled_at is not None:
                self._settle(entry, flow)
        elif isinstance(transport, UdpDatagram):
            placed = self._quic.place(time, packet.src, packet.dst, transport, size)
            if not placed:
                self.other_udp += 1
            for quic_flow, datagram, started in placed:
                entry = self._start(quic_flow) if started else self._entries[id(quic_flow)]
                if not entry.failed:
                    try:
                        self._step(entry, cast(QuicConnectionAnalyzer, entry.analyzer).add(datagram))
                    except Exception as error:  # noqa: BLE001 - as for TCP
                        entry.failed = _failed_at(datagram.time, error)

    def add_secrets(self, keylog: KeyLog) -> None:
        """Secrets found in the capture: every connection looks them up when its ClientHello
        arrives, so those that come later use them (the caller's key log wins a conflict)."""
        self._keylog.add(keylog)

    def _start(self, flow: TcpFlow | QuicFlow) -> _Entry:
        """A new connection; an older one on the same 4-tuple gets no more packets."""
        flow_id = id(flow)
        is_tcp = isinstance(flow, TcpFlow)
        key = (is_tcp, *sorted((flow.client, flow.server)))
        old = self._latest.get(key)
        if old is not None and old in self._entries:
            # Port reuse: the older connection on this 4-tuple gets no more packets.
            self._finish(self._entries.pop(old))
            self._flows.pop(old, None)
        analyzer: TcpConnectionAnalyzer | QuicConnectionAnalyzer
        if isinstance(flow, TcpFlow):
            analyzer = TcpConnectionAnalyzer(flow.client, flow.server, self._keylog, steps=self._steps)
        else:
            analyzer = QuicConnectionAnalyzer(flow, self._keylog, steps=self._steps)
        self._entries[flow_id] = _Entry(self._order if self._position is None else self._position, analyzer)
        self._flows[flow_id] = flow
        self._latest[key] = flow_id
        self._order += 1
        return self._entries[flow_id]

    def _settle(self, entry: _Entry, flow: TcpFlow) -> None:
        """From now on this connection's packets only count: find them by their raw 4-tuple."""
        (client, client_port), (server, server_port) = _raw_endpoint(flow.client), _raw_endpoint(flow.server)
        entry.late_keys = (client + server + client_port + server_port, server + client + server_port + client_port)
        self._late[entry.late_keys[0]] = (entry, True)
        self._late[entry.late_keys[1]] = (entry, False)

    def _step(self, entry: _Entry, step: LadderStep | None) -> None:
        """Keep a packet's ladder step (``steps=True``), up to ``MAX_STEPS`` a connection."""
        if step is None:
            return
        if entry.connection is None:
            assert entry.analyzer is not None
            entry.connection = InspectedConnection(entry.analyzer.report_so_far)
        connection = entry.connection
        if len(connection.steps) < MAX_STEPS:
            connection.steps.append(step)
        else:
            connection.steps_left_out += 1

    def _finish(self, entry: _Entry) -> None:
        if entry.late_keys is not None:
            for key in entry.late_keys:
                if self._late.get(key, (None,))[0] is entry:
                    del self._late[key]
        analyzer = entry.analyzer
        assert analyzer is not None
        report: ConnectionReport
        try:
            report = analyzer.report()
        except Exception as error:  # noqa: BLE001 - as in add
            report = analyzer.report_so_far
            entry.failed = entry.failed or f"analysis failed at the end ({type(error).__name__}: {error})"
        if entry.failed:
            report.notes.append(entry.failed)
        if entry.connection is None:
            entry.connection = InspectedConnection(report)
        entry.connection.report = report
        _revise(entry.connection.steps, analyzer.step_revisions)
        entry.analyzer = None
        self._done.append(entry)

    def finish(self) -> list[InspectedConnection]:
        """Every connection's verdict, ordered by its first packet's time (call once)."""
        return [connection for _, _, connection in self.finish_ordered()]

    def finish_ordered(self) -> list[tuple[float, int, InspectedConnection]]:
        """(start time, order, verdict) of every connection, sorted (call once)."""
        for entry in self._entries.values():
            self._finish(entry)
        self._entries.clear()
        self._flows.clear()
        verdicts = [(entry.order, entry.connection) for entry in self._done if entry.connection is not None]
        done = sorted(((connection.report.start_time, order, connection) for order, connection in verdicts),
                      key=lambda item: item[:2])
        self._done = []
        return done


def _revise(steps: list[LadderStep], revisions: dict[int, tuple[str, ...]]) -> None:
    """Move a first-byte mark the analyzer placed too early: its step gets the revision's marks
    in place of the first-byte one."""
    for index, replacement in revisions.items():
        if index < len(steps):
            step = steps[index]
            marks = tuple(mark for mark in step.marks if not mark.startswith("first response byte")) + replacement
            steps[index] = LadderStep(step.time_s, step.from_client, step.round, step.carries, marks, step.wire_bytes)


def _failed_at(time: float, error: Exception) -> str:
    return f"analysis failed at the packet of {time:.6f} s ({type(error).__name__}: {error}); the figures stop there"


def _wire_bytes(ip: bytes, captured_frame: int, orig_frame: int) -> int:
    """The IP packet's own length: its header says it (link padding excluded), and a packet the
    snap length cut is as long as the wire frame minus the link header."""
    if len(ip) >= 4 and ip[0] >> 4 == 4:
        total = u16(ip, 2)
        if total:
            return total
    elif len(ip) >= 6 and ip[0] >> 4 == 6:
        payload = u16(ip, 4)
        if payload:
            return 40 + payload
    return len(ip) + max(orig_frame - captured_frame, 0)


def inspect_capture(source: str | os.PathLike | BinaryIO, keylog: KeyLog | None = None, *,
                    steps: bool = False, name: str | None = None, jobs: int = 1) -> CaptureInspection:
    """Read a pcap or pcapng capture as a stream and judge every TCP and QUIC connection in it.

    ``jobs`` > 1 shares the connections among that many processes, this one and forked workers
    (``parallel``), when the source can be read more than once (a regular file, or bytes in
    memory); the verdicts are the same. Raises ``CaptureError`` (one line) when nothing can be reported: the file cannot be
    read, is not a capture, holds no frame of a link type we read, or no connection.
    """
    label = name or (os.fsdecode(source) if isinstance(source, (str, bytes, os.PathLike)) else "the capture")
    # The pipeline makes no reference cycles (tests/analysis/test_capture.py), so the cyclic
    # collector has nothing to find; left on, it spent an eighth of the time on a capture of
    # 7,560 connections traversing their live state. Off before the workers fork: they inherit it.
    with cyclic_gc_paused(collect_first=False):
        from .parallel import inspect_sharded, shardable

        if jobs > 1 and shardable(source):
            reading, connections, undecodable = inspect_sharded(source, keylog, steps=steps, label=label, jobs=jobs)
        else:
            analyzer = CaptureAnalyzer(keylog, steps=steps)
            reading = read_capture(source, analyzer, label)
            connections, undecodable = analyzer.finish(), analyzer.undecodable
    return reading.inspection(connections, undecodable, label)


class CaptureReading:
    """What reading the file itself found (apart from the connections), for the notes."""

    def __init__(self) -> None:
        self.frames = 0
        """Frames read from the file."""
        self.read_link = 0
        """Frames of a link type we read."""
        self.unsupported: dict[int, int] = {}
        """Link type → frames of it skipped."""
        self.cut = 0
        """Frames the snap length shortened."""
        self.stopped = ""
        """Why reading stopped before the end of the file (truncation, a damaged block)."""
        self.tls_secrets = 0
        """TLS secrets read from the capture's own Decryption Secrets Blocks."""
        self.tls_secrets_connections = 0
        """Connections (client randoms) those secrets are for."""
        self.other_secrets: dict[int, int] = {}
        """Decryption Secrets Blocks of other types (WireGuard, ZigBee, ...) → how many, skipped."""

    def inspection(self, connections: list[InspectedConnection], undecodable: int, label: str) -> CaptureInspection:
        notes = []
        if self.stopped:
            notes.append(f"{self.stopped}: reported the {self.frames} frames before it")
        if self.frames and not self.read_link:
            raise CaptureError(f"{label}: {UnsupportedLinkType(min(self.unsupported))}")
        for linktype, count in sorted(self.unsupported.items()):
            notes.append(f"{count} frames of unsupported link type {linktype} skipped")
        if self.tls_secrets:
            secrets_for = _plural(self.tls_secrets_connections, "connection")
            notes.append(f"{self.tls_secrets} TLS secrets embedded in the capture (for {secrets_for}) "
                         "were used as a key log")
        for kind, count in sorted(self.other_secrets.items()):
            name = SECRETS_TYPE_NAMES.get(kind, "unknown type")
            notes.append(f"{_plural(count, 'Decryption Secrets Block')} of type 0x{kind:08x} ({name}) skipped: "
                         "only TLS key logs are read")
        if self.cut:
            notes.append(f"{self.cut} packets were cut short by the snap length: their contents may be incomplete")
        if undecodable:
            notes.append(f"{undecodable} packets did not decode as IPv4/IPv6 and were skipped")
        if not connections:
            what = "an empty capture" if not self.frames else f"{self.frames} frames"
            raise NoConnections(f"no TCP or QUIC connections in {label} ({what})")
        return CaptureInspection(connections, self.frames, notes)


def read_capture(source: str | os.PathLike | BinaryIO, analyzer: CaptureAnalyzer, label: str, shard: int = 0,
                 shards: int = 1) -> CaptureReading:
    """Feed ``analyzer`` the IP packets of the capture; with ``shards`` > 1, only those whose
    connection ``parallel.shard_of`` gives ``shard`` (the frames are all counted)."""
    from .parallel import shard_of

    reading = CaptureReading()
    last_time = 0.0
    secrets = _EmbeddedSecrets(analyzer, reading)
    try:
        for frame in iter_capture(source, secrets.block):
            reading.frames += 1
            linktype = frame.linktype
            if linktype not in SUPPORTED_LINKTYPES:
                reading.unsupported[linktype] = reading.unsupported.get(linktype, 0) + 1
                continue
            reading.read_link += 1
            data = frame.data
            ip = ip_payload(linktype, data)
            if ip is None:
                continue  # ARP, LLDP, ...: not IP
            shortened = frame.orig_len > len(data)
            reading.cut += shortened
            time = frame.time
            if math.isnan(time):
                time = last_time  # a pcapng Simple Packet Block has no timestamp
            last_time = time
            if len(ip) >= 28:
                # A tunnel? A byte or two tell (IP protocol 4, 41 or 47, or UDP to the VXLAN or
                # Geneve port) before anything is called: almost every packet is plain TCP or UDP.
                first = ip[0]
                proto = ip[9] if first < 0x50 else ip[6]  # IPv4 (or less: does not decode); else IPv6
                if proto != 6:
                    if proto == 17:
                        at = (first & 0x0F) * 4 + 2 if first < 0x50 else 42
                        port = u16(ip, at) if len(ip) >= at + 2 else 0
                        tunnel = port == VXLAN_PORT or port == GENEVE_PORT
                    else:
                        tunnel = proto == 47 or proto == 4 or proto == 41
                    if tunnel:
                        inner = decapsulate(ip)  # the inner packet is the connection's: shard and judge it
                        if inner is None:
                            continue  # a tunnel carrying ARP, say: no IP
                        ip = inner
            if shards > 1 and shard_of(ip, shards) != shard:
                continue
            # On the analyzers' grid here, once, rather than per analyzer.
            analyzer.add(on_microseconds(time), ip, cut=shortened,
                         wire_bytes=_wire_bytes(ip, len(data), frame.orig_len), position=reading.frames)
    except TruncatedCapture as error:
        if not reading.frames:
            raise CaptureError(f"{label}: {error}") from None
        reading.stopped = str(error)
    except CaptureError as failure:  # a name of its own: compiled, a name has one type
        if not reading.frames:
            raise CaptureError(_with_label(label, failure)) from None
        reading.stopped = str(failure)
    return reading


class _EmbeddedSecrets:
    """Takes the capture's Decryption Secrets Blocks as the reader meets them: a TLS key log goes
    to the analyzer at once (before the frames after it), other types are counted for a note.
    Every worker of a sharded read reads the whole file, so each finds them for itself."""

    def __init__(self, analyzer: CaptureAnalyzer, reading: CaptureReading) -> None:
        self.analyzer = analyzer
        self.reading = reading

    def block(self, kind: int, data: bytes) -> None:
        if kind != SECRETS_TLS_KEY_LOG:
            self.reading.other_secrets[kind] = self.reading.other_secrets.get(kind, 0) + 1
            return
        keylog = parse_keylog(data.decode("utf-8", errors="replace"))
        self.reading.tls_secrets += keylog.secrets()
        self.reading.tls_secrets_connections += len(keylog)
        self.analyzer.add_secrets(keylog)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("s" if count != 1 else "")


def _with_label(label: str, error: CaptureError) -> str:
    message = str(error)
    if message.startswith("cannot open"):
        return message
    return f"{label}: {message}"



def inspect_packets(packets: Iterable[tuple[float, bytes]], keylog: KeyLog | None = None, *,
                    steps: bool = False) -> list[InspectedConnection]:
    """The same verdicts for IP packets already in memory (a ``Trace``'s (time, data) pairs)."""
    with cyclic_gc_paused(collect_first=False):  # as in inspect_capture
        analyzer = CaptureAnalyzer(keylog, steps=steps)
        for time, data in packets:
            analyzer.add(on_microseconds(time), data)
        return analyzer.finish()
