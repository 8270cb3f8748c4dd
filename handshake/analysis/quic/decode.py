"""One QUIC connection's datagrams, opened: packets, packet numbers, frames, TLS messages.

Sans-IO like ``tls.TlsConversation``: ``QuicDecoder.decode`` takes the connection's datagrams in
capture order and returns what each one carried. Initial packets always open (their keys come
from the client's first DCID, RFC 9001 §5.2); Handshake, 0-RTT and 1-RTT packets open once the
ClientHello has named its random and the key log holds that connection's secrets. Packets that
do not open are still listed, with their header, so a caller can count them.

Packet numbers are per number space (RFC 9000 §12.3): Initial, Handshake, and application data
(0-RTT and 1-RTT share it). A packet number seen twice from the same side in the same space is a
duplicated datagram, not new information (§12.3: numbers are never reused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..intervals import NumberSet
from ..keylog import KeyLog
from .crypto import PacketProtection, initial_protections, retry_tag_valid
from .flows import QuicDatagram, QuicFlow
from .frames import CryptoFrame, Frame, parse_frames
from .packets import KNOWN_VERSIONS, QuicPacket, parse_datagram
from .tls import Epoch, QuicHandshakeMessage, QuicTlsReader

Space = Literal["initial", "handshake", "application"]

_SPACES: dict[str, Space] = {
    "initial": "initial", "handshake": "handshake", "0rtt": "application", "1rtt": "application",
}
_CRYPTO_EPOCHS: dict[str, Epoch] = {"initial": "initial", "handshake": "handshake", "1rtt": "1rtt"}


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class DecodedPacket:
    packet: QuicPacket
    space: Space | None
    """The packet number space; None for Retry, Version Negotiation and unknown versions."""
    packet_number: int | None
    """None while the packet could not be opened."""
    frames: tuple[Frame, ...] | None
    """None while the packet could not be opened."""
    frames_complete: bool = True
    """False when a frame did not parse (``frames`` then stops before it)."""
    messages: tuple[QuicHandshakeMessage, ...] = ()
    """TLS handshake messages its CRYPTO frames completed."""
    duplicate: bool = False
    """The same side already sent this packet number in this space (a duplicated datagram)."""
    key_phase: int | None = None
    """1-RTT: the Key Phase bit (RFC 9001 §6), once opened."""

    def __init__(self, packet: QuicPacket, space: Space | None, packet_number: int | None,
                 frames: tuple[Frame, ...] | None, frames_complete: bool = True,
                 messages: tuple[QuicHandshakeMessage, ...] = (), duplicate: bool = False,
                 key_phase: int | None = None) -> None:
        self.packet = packet
        self.space = space
        self.packet_number = packet_number
        self.frames = frames
        self.frames_complete = frames_complete
        self.messages = messages
        self.duplicate = duplicate
        self.key_phase = key_phase


    @property
    def opened(self) -> bool:
        return self.frames is not None


# Made once per packet: its __init__ is written out, as TcpSegment's is (handshake.trace.packet).
@dataclass(slots=True, unsafe_hash=True, init=False)
class DecodedDatagram:
    datagram: QuicDatagram
    packets: tuple[DecodedPacket, ...]
    trailing_bytes: int
    """Bytes after the last packet that were not one (RFC 9000 §12.2 lets a receiver ignore them)."""

    def __init__(self, datagram: QuicDatagram, packets: tuple[DecodedPacket, ...],
                 trailing_bytes: int) -> None:
        self.datagram = datagram
        self.packets = packets
        self.trailing_bytes = trailing_bytes


class QuicDecoder:
    """Opens the packets of one connection as its datagrams are fed, in capture order."""

    def __init__(self, flow: QuicFlow, keylog: KeyLog | None = None) -> None:
        self.flow = flow
        self.tls = QuicTlsReader(keylog)
        self.retry: QuicPacket | None = None
        """The Retry the client acted on (RFC 9000 §17.2.5.2: it accepts at most one)."""
        self.version_negotiation: QuicPacket | None = None
        self.version = flow.version
        """The version of the latest long header the server sent (it may switch, RFC 9368)."""
        self._initial_dcids: list[bytes] = [flow.original_dcid]
        """DCIDs the client chose for a first Initial (first DCID, after Retry, new attempt),
        newest first: each one makes Initial keys."""
        self._initial_keys: dict[tuple[bytes, int], tuple[PacketProtection, PacketProtection]] = {}
        self._keys: dict[tuple[bool, str, int], PacketProtection] = {}
        self._largest: dict[tuple[bool, Space], int] = {}
        self._seen: dict[tuple[bool, Space], NumberSet] = {}
        """Packet numbers each side sent in each space, as merged runs (bounded memory)."""
        self._server_cid_length: int | None = None
        self.unopened = 0
        """Protected packets no key opened."""
        self.attempt = 0
        """How many times the client started over: a Retry, or a new Initial after Version
        Negotiation (each starts a new TLS handshake)."""
        self.zero_rtt_packets = 0
        """0-RTT packets the client sent (opened or not)."""

    @property
    def keys_found(self) -> bool:
        return self.tls.secrets is not None

    def decode(self, datagram: QuicDatagram) -> DecodedDatagram:
        from_client = datagram.from_client
        short_length = self._server_cid_length if from_client else len(self.flow.client_scid)
        parsed = parse_datagram(datagram.payload, short_length)
        packets = tuple(self._packet(from_client, packet) for packet in parsed.packets)
        return DecodedDatagram(datagram, packets, parsed.trailing_bytes)

    # -- packets ----------------------------------------------------------------------------

    def _packet(self, from_client: bool, packet: QuicPacket) -> DecodedPacket:
        kind = packet.packet_type
        if kind == "retry":
            if not from_client:
                self._on_retry(packet)
            return DecodedPacket(packet, None, None, None)
        if kind == "version_negotiation":
            if not from_client and self.version_negotiation is None:
                self.version_negotiation = packet
            return DecodedPacket(packet, None, None, None)
        space = _SPACES.get(kind)
        if space is None:
            return DecodedPacket(packet, None, None, None)
        if kind == "0rtt" and from_client:
            self.zero_rtt_packets += 1
        largest = self._largest.get((from_client, space), -1)
        opened = None
        for protection in self._protections(from_client, packet):
            opened = protection.open(packet, largest)
            if opened is not None:
                break
        if opened is None:
            self.unopened += 1
            return DecodedPacket(packet, space, None, None)
        if not from_client and packet.version in KNOWN_VERSIONS:
            self.version = packet.version
            if kind in ("initial", "handshake") and packet.scid is not None:
                self._server_cid_length = len(packet.scid)
        number = opened.packet_number
        self._largest[(from_client, space)] = max(largest, number)
        seen = self._seen.get((from_client, space))
        if seen is None:
            seen = self._seen[(from_client, space)] = NumberSet()
        duplicate = number in seen
        seen.add(number)
        parsed = parse_frames(opened.payload)
        messages: list[QuicHandshakeMessage] = []
        epoch = _CRYPTO_EPOCHS.get(kind)
        if epoch is not None and not duplicate:
            for frame in parsed.frames:
                if isinstance(frame, CryptoFrame):
                    messages.extend(self.tls.feed(from_client, epoch, frame.offset, frame.data))
        return DecodedPacket(packet, space, number, parsed.frames, parsed.complete, tuple(messages), duplicate,
                             opened.key_phase)

    def _on_retry(self, packet: QuicPacket) -> None:
        # RFC 9000 §17.2.5.2: the client takes one Retry, whose tag verifies against the DCID
        # of the Initial it answers, and uses its SCID as the new DCID (and Initial keys).
        if self.retry is not None or not packet.scid:
            return
        if retry_tag_valid(packet, self._initial_dcids[0]):
            self.retry = packet
            self._initial_dcids.insert(0, packet.scid)
            self._restart()

    def _protections(self, from_client: bool, packet: QuicPacket) -> list[PacketProtection]:
        kind = packet.packet_type
        version = packet.version if packet.version is not None else self.version
        if kind == "initial":
            out = [self._initial(dcid, version)[0 if from_client else 1] for dcid in self._initial_dcids]
            if from_client and packet.dcid and packet.dcid not in self._initial_dcids \
                    and packet.dcid not in self.flow.server_cids:
                # A new attempt (after Version Negotiation) with a DCID of its own.
                client, _ = self._initial(packet.dcid, version)
                if client.open(packet, self._largest.get((True, "initial"), -1)) is not None:
                    self._initial_dcids.insert(0, packet.dcid)
                    self._restart()
                    out.insert(0, client)
            return out
        secrets = self.tls.secrets
        if secrets is None:
            return []
        if kind == "0rtt":
            secret = secrets.client_early_traffic_secret if from_client else None
        elif kind == "handshake":
            secret = secrets.client_handshake_traffic_secret if from_client else secrets.server_handshake_traffic_secret
        else:
            secret = secrets.client_traffic_secret_0 if from_client else secrets.server_traffic_secret_0
        if not secret:
            return []
        key = (from_client, kind, version)
        protection = self._keys.get(key)
        if protection is None:
            protection = self._keys[key] = PacketProtection(secret, version, key_updates=kind == "1rtt")
        hello = self.tls.server_hello
        if hello is not None and protection.suite is None and kind != "0rtt":
            protection.prefer(hello.cipher_suite)
        return [protection]

    def _restart(self) -> None:
        self.attempt += 1
        self.tls.restart_client()
        self._keys.clear()
        # The server side starts afresh too (a stateless Retry kept nothing); the client's
        # packet numbers go on (RFC 9000 §17.2.5.3).
        for key in [key for key in self._largest if not key[0]]:
            del self._largest[key]
        self._seen = {key: numbers for key, numbers in self._seen.items() if key[0]}

    def _initial(self, dcid: bytes, version: int) -> tuple[PacketProtection, PacketProtection]:
        keys = self._initial_keys.get((dcid, version))
        if keys is None:
            keys = self._initial_keys[(dcid, version)] = initial_protections(dcid, version)
        return keys
