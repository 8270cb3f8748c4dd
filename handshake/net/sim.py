"""The virtual-time engine: two hosts, one modeled link, an event heap on a virtual clock.

TCP runs on the modeled stack in ``net.tcp``; UDP carries QUIC datagrams from aioquic as they are.

Packets cross the link as real IP bytes (encoded and decoded by ``trace.packet``), so the trace
the analysis reads is the same kind of thing a capture on a real interface holds. The capture
point is the client's interface: outgoing packets are recorded when sent (even if the link
then loses them), incoming ones when they arrive.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from handshake.endpoints.events import (
    DatagramEndpoint,
    Event,
    SplitWritesEndpoint,
    StreamEndpoint,
    TimedStreamEndpoint,
    split_writes,
    stream_timer,
)
from handshake.net.link import LinkConfig, LinkDirection
from handshake.net.tcp import (
    Connected,
    DataReceived,
    FastOpenCookieReceived,
    PeerClosed,
    TcpConfig,
    TcpConnection,
    TcpState,
    fastopen_cookie_for,
)
from handshake.trace.packet import PROTO_TCP, PROTO_UDP, IpPacket, TcpSegment, UdpDatagram, decode, encode
from handshake.trace.record import TracedPacket

CLIENT_ADDR = "198.18.0.1"
SERVER_ADDR = "198.19.0.1"
HTTPS_PORT = 443
HTTP_PORT = 80

DropRule = Callable[[bool, IpPacket], bool]
"""Called for every packet a host sends (from_client, packet); True drops it before the link."""


class SimulationTimeout(RuntimeError):
    """The run did not reach its goal within its virtual-time limit."""


@dataclass
class Session:
    """One TCP connection on a host, with the application endpoint that speaks over it."""

    host: Host
    remote_addr: str
    tcp: TcpConnection
    endpoint: StreamEndpoint
    events: list[Event] = field(default_factory=list)
    connected: bool = False
    peer_closed: bool = False
    close_when_peer_closes: bool = True
    pending_writes: list[bytes] = field(default_factory=list)
    """A client's first writes while a plain (non-TFO) connect is under way (TFO: those after
    the one in the SYN)."""
    timed: TimedStreamEndpoint | None = field(init=False)
    """The endpoint, if it has a timer of its own (a server holding its answer for its server time)."""
    split: SplitWritesEndpoint | None = field(init=False)
    """The endpoint, if its writes keep their boundaries."""

    def __post_init__(self) -> None:
        self.timed = stream_timer(self.endpoint)
        self.split = split_writes(self.endpoint)

    def timers(self) -> list[float]:
        """When the TCP stack and the endpoint next want the clock, on the virtual clock."""
        out = []
        if (timer := self.tcp.get_timer()) is not None:
            out.append(timer)
        timed = self.timed
        if timed is not None and (timer := timed.get_timer()) is not None:
            out.append(timer)
        return out

    def handle_timers(self, now: float) -> None:
        timer = self.tcp.get_timer()
        if timer is not None and timer <= now:
            self.tcp.handle_timer(now)
        timed = self.timed
        if timed is not None and (timer := timed.get_timer()) is not None and timer <= now:
            timed.handle_timer(now)  # what it writes leaves in the pump that follows

    def close(self) -> None:
        self.tcp.close()

    @property
    def closed(self) -> bool:
        """Both FINs exchanged and everything we sent acknowledged."""
        tcp = self.tcp
        return self.peer_closed and tcp.state == TcpState.FIN_WAIT and tcp.snd_una == tcp.snd_nxt

    def pump(self, now: float) -> list[TcpSegment]:
        """Carry bytes between TCP and the endpoint until neither has more to say.

        The stack speaks first, as a kernel does: what it owes the peer (an ACK of what just
        arrived) leaves before the application has read the data and answered it.
        """
        tcp, endpoint = self.tcp, self.endpoint
        out = tcp.segments_to_send(now)
        while True:
            event = tcp.next_event()
            if event is None:
                break
            if isinstance(event, DataReceived):
                endpoint.receive(event.data, now)
            elif isinstance(event, Connected):
                self.connected = True
                for write in self.pending_writes:  # the application writes once connect() returns
                    tcp.send(write)
                    out.extend(tcp.segments_to_send(now))
                self.pending_writes = []
            elif isinstance(event, FastOpenCookieReceived):
                self.host.fastopen_cookies[self.remote_addr] = event.cookie
            elif isinstance(event, PeerClosed):
                self.peer_closed = True
                if self.close_when_peer_closes:
                    tcp.close()
            self._write(now, out)
        self._write(now, out)
        while (app_event := endpoint.next_event()) is not None:
            self.events.append(app_event)
        return out + tcp.segments_to_send(now)

    def _write(self, now: float, out: list[TcpSegment]) -> None:
        """Hand TCP what the endpoint wrote: at once, or write by write, each pushed (as
        send(2) pushes, Nagle permitting) before the next is written."""
        tcp, split = self.tcp, self.split
        if split is None:
            tcp.send(self.endpoint.data_to_send())
            return
        for write in split.writes_to_send():
            tcp.send(write)
            out.extend(tcp.segments_to_send(now))


@dataclass
class UdpBinding:
    """A UDP port on a host and the datagram endpoint (QUIC) behind it."""

    host: Host
    port: int
    endpoint: DatagramEndpoint
    events: list[Event] = field(default_factory=list)

    def pump(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        out = self.endpoint.datagrams_to_send(now)
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)
        return out


class Host:
    """A host: a TCP stack (its own ISNs, ports, TFO cookie cache or secret) and UDP ports."""

    def __init__(self, sim: Simulation, addr: str, config: TcpConfig, rng: random.Random) -> None:
        self.sim = sim
        self.addr = addr
        self.config = config
        self.rng = rng
        self.sessions: dict[tuple[int, str, int], Session] = {}
        self.listeners: dict[int, Callable[[], StreamEndpoint]] = {}
        self.udp: dict[int, UdpBinding] = {}
        self.fastopen_cookies: dict[str, bytes] = {}
        self._cookie_secret = rng.randbytes(16)

    def listen(self, port: int, endpoint_factory: Callable[[], StreamEndpoint]) -> None:
        self.listeners[port] = endpoint_factory

    def bind_udp(self, endpoint: DatagramEndpoint, port: int | None = None) -> UdpBinding:
        """Give a datagram endpoint a UDP port (an ephemeral one when None) and start it."""
        if port is None:
            port = self.rng.randrange(32768, 61000)
        binding = UdpBinding(self, port, endpoint)
        self.udp[port] = binding
        endpoint.start(self.sim.now)
        return binding

    def connect(self, remote_addr: str, remote_port: int, endpoint: StreamEndpoint) -> Session:
        """Open a connection; the endpoint's first bytes ride in the SYN when TFO has a cookie."""
        now = self.sim.now
        local_port = self.rng.randrange(32768, 61000)
        tcp = TcpConnection(
            local_port=local_port,
            remote_port=remote_port,
            isn=self.rng.getrandbits(32),
            config=self.config,
            ts_offset=self.rng.getrandbits(32),
        )
        endpoint.start(now)
        session = Session(self, remote_addr, tcp, endpoint, close_when_peer_closes=False)
        split = session.split
        writes = split.writes_to_send() if split is not None else [endpoint.data_to_send()]
        if self.config.fastopen:
            # TCP_FASTOPEN_CONNECT: the first write rides in the SYN when a cookie is cached.
            tcp.connect(now, writes[0] if writes else b"", self.fastopen_cookies.get(remote_addr))
            session.pending_writes = writes[1:]
        else:
            tcp.connect(now)  # connect(), then the writes once the handshake is done
            session.pending_writes = writes
        self.sessions[(local_port, remote_addr, remote_port)] = session
        return session

    def receive(self, packet: IpPacket, now: float) -> None:
        segment = packet.transport
        if isinstance(segment, UdpDatagram):
            binding = self.udp.get(segment.dport)
            if binding is not None:
                binding.endpoint.receive_datagram(segment.payload, (packet.src, segment.sport), now)
            return
        if not isinstance(segment, TcpSegment):
            return
        key = (segment.dport, packet.src, segment.sport)
        session = self.sessions.get(key)
        if session is not None:
            session.tcp.receive_segment(segment, now)
            return
        factory = self.listeners.get(segment.dport)
        if factory is None or not segment.syn or segment.has_ack:
            return  # no RST modeled: nothing here talks to closed ports
        tcp = TcpConnection.accept(
            segment,
            now,
            local_port=segment.dport,
            isn=self.rng.getrandbits(32),
            config=self.config,
            expected_cookie=fastopen_cookie_for(self._cookie_secret, packet.src) if self.config.fastopen else None,
            ts_offset=self.rng.getrandbits(32),
        )
        endpoint = factory()
        endpoint.start(now)
        self.sessions[key] = Session(self, packet.src, tcp, endpoint)

    def pump(self, now: float) -> None:
        for (_, remote_addr, _), session in list(self.sessions.items()):
            for segment in session.pump(now):
                self.sim.transmit(IpPacket(src=self.addr, dst=remote_addr, proto=PROTO_TCP, transport=segment))
        for binding in list(self.udp.values()):
            for data, (addr, port) in binding.pump(now):
                datagram = UdpDatagram(sport=binding.port, dport=port, payload=data)
                self.sim.transmit(IpPacket(src=self.addr, dst=addr, proto=PROTO_UDP, transport=datagram))

    def next_timer(self) -> float | None:
        timers = [t for s in self.sessions.values() for t in s.timers()]
        timers += [t for b in self.udp.values() if (t := b.endpoint.get_timer()) is not None]
        return min(timers) if timers else None

    def handle_timers(self, now: float) -> None:
        for session in self.sessions.values():
            session.handle_timers(now)
        for binding in self.udp.values():
            timer = binding.endpoint.get_timer()
            if timer is not None and timer <= now:
                binding.endpoint.handle_timer(now)


STUCK_FIRINGS = 8
"""Timer firings at one instant, with no packet between them, before the clock is nudged."""
TIMER_NUDGE_S = 1e-6


class Simulation:
    """Two hosts, a client and a server, joined by a netem-style link, on a virtual clock."""

    def __init__(
        self,
        link: LinkConfig,
        *,
        client_tcp: TcpConfig,
        server_tcp: TcpConfig,
        drop: DropRule | None = None,
        seed: int = 0,
    ) -> None:
        self.now = 0.0
        self.trace: list[TracedPacket] = []
        rng = random.Random(seed)
        self.client = Host(self, CLIENT_ADDR, client_tcp, random.Random(rng.getrandbits(64)))
        self.server = Host(self, SERVER_ADDR, server_tcp, random.Random(rng.getrandbits(64)))
        self._to_server = LinkDirection(link, "c2s")
        self._to_client = LinkDirection(link, "s2c")
        self._arrivals: list[tuple[float, int, bool, bytes]] = []
        self._order = itertools.count()
        self._drop = drop

    def transmit(self, packet: IpPacket) -> None:
        from_client = packet.src == self.client.addr
        data = encode(packet)
        if from_client:
            self.trace.append(TracedPacket(self.now, data))
        if self._drop is not None and self._drop(from_client, packet):
            return
        direction = self._to_server if from_client else self._to_client
        for arrival in direction.transmit(len(data), self.now):
            heapq.heappush(self._arrivals, (arrival, next(self._order), not from_client, data))

    @property
    def wire_is_quiet(self) -> bool:
        """No packet is on its way (timers may still be armed)."""
        return not self._arrivals

    def _pump(self) -> None:
        self.client.pump(self.now)
        self.server.pump(self.now)

    def run(self, until: Callable[[], bool], limit_s: float = 120.0) -> None:
        """Move packets and fire timers until ``until()`` holds; raise if virtual time runs past the limit."""
        deadline = self.now + limit_s
        self._pump()
        firings = 0  # timer firings in a row at one instant
        while not until():
            timers = [t for t in (self.client.next_timer(), self.server.next_timer()) if t is not None]
            next_timer = min(timers) if timers else None
            next_arrival = self._arrivals[0][0] if self._arrivals else None
            if next_timer is None and next_arrival is None:
                raise SimulationTimeout("the network went quiet before the exchange finished")
            if next_arrival is not None and (next_timer is None or next_arrival <= next_timer):
                arrival, _, to_client, data = heapq.heappop(self._arrivals)
                firings = 0
                self.now = max(self.now, arrival)
                if self.now > deadline:
                    raise SimulationTimeout(f"no result after {limit_s:g} s of virtual time")
                if to_client:
                    self.trace.append(TracedPacket(self.now, data))
                (self.client if to_client else self.server).receive(decode(data), self.now)
            else:
                firings = firings + 1 if next_timer <= self.now else 0
                if firings > STUCK_FIRINGS:
                    # A timer that firing does not move: aioquic's loss timer can fall on an
                    # instant its own float arithmetic then finds not yet due (sent_time +
                    # delay == now, yet sent_time > now - delay). A real clock would have moved
                    # on; the virtual one does, by a microsecond.
                    self.now += TIMER_NUDGE_S
                    firings = 0
                self.now = max(self.now, next_timer)
                if self.now > deadline:
                    raise SimulationTimeout(f"no result after {limit_s:g} s of virtual time")
                self.client.handle_timers(self.now)
                self.server.handle_timers(self.now)
            self._pump()
