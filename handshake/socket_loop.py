"""The sans-IO endpoints driven over real non-blocking sockets, from one thread.

``SocketLoop`` serves a handful of channels -- a TCP connection and its stream endpoint
(``TcpChannel``), a listener that gives each accepted connection a fresh server endpoint
(``Listener``), a UDP socket and its datagram endpoint (``UdpChannel``) -- with ``select()`` and
``time.monotonic``. The kernel engine drives both sides of a variant with it, across its two
namespaces; ``probe`` drives the client side against a real server.

Each channel also notes when the request left (``request_left_at``: the first send that carried
it; a rejected 0-RTT request counts from its resend) and when the first response byte came in
(``first_byte_at``), the client's own view of the exchange where no capture can be taken.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from handshake.endpoints.events import (
    EarlyDataResent, Event, HandshakeCompleted, ResponseReceived, split_writes, stream_timer,
)

__all__ = ["RequestTimes", "Channel", "SocketLoop", "TcpChannel", "Listener", "UdpChannel", "RECV_BYTES", "TCP_FASTOPEN",
           "TCP_FASTOPEN_CONNECT"]

RECV_BYTES = 65536
TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)
TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)


class RequestTimes:
    """When a client's request left and its first response byte came in, on the monotonic clock.

    The request is ready once the endpoint wrote it (at ``start`` for a plain GET or 0-RTT, else
    at ``HandshakeCompleted``, or again at ``EarlyDataResent``): ``request_ready_at`` is the time
    of the read (or start) that made it so, before the endpoint's own computation; it left with
    the first send after that. The first byte is the time of the read in which the endpoint
    reports it."""

    def __init__(self) -> None:
        self.request_ready = False
        self.request_ready_at: float | None = None
        self.request_left_at: float | None = None
        self.first_byte_at: float | None = None

    def ready(self, now: float) -> None:
        self.request_ready, self.request_ready_at, self.request_left_at = True, now, None

    def sent(self, now: float) -> None:
        if self.request_ready and self.request_left_at is None:
            self.request_left_at = now

    def saw(self, endpoint: Any, event: Event, now: float) -> None:
        if isinstance(event, EarlyDataResent) or (
            isinstance(event, HandshakeCompleted) and not getattr(endpoint, "request_at_start", False)
        ):
            self.ready(now)

    def saw_bytes(self, endpoint: Any, now: float) -> None:
        if self.first_byte_at is None and getattr(endpoint, "response_started", False):
            self.first_byte_at = now


class Channel:
    """A socket the loop watches, and what to do when it is ready or its timer is due."""

    sock: socket.socket
    closed = False

    def wants_write(self) -> bool:
        return False

    def on_readable(self, now: float) -> None: ...

    def on_writable(self, now: float) -> None: ...

    def timer(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None: ...

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


class SocketLoop:
    """Every socket of a run, from both namespaces, driven from this one thread.

    ``select()`` rather than epoll: QUIC timers are due to the microsecond, and epoll rounds
    its timeout up to whole milliseconds. A run has a handful of sockets.
    """

    def __init__(self) -> None:
        self._selector = selectors.SelectSelector()
        self._masks: dict[Channel, int] = {}
        self.busy_s = 0.0
        """Time spent in the endpoints' handlers (reading, TLS/QUIC, writing) since reset."""
        self.busy_before_last_s = 0.0
        """``busy_s`` before the latest handler began: when ``run`` returns because that
        handler got the response, what the endpoints spent before its first byte came in."""

    def add(self, channel: Channel) -> None:
        self._masks[channel] = 0

    def close(self) -> None:
        for channel in list(self._masks):
            self._forget(channel)
            with contextlib.suppress(OSError):
                channel.close()
        self._selector.close()

    def _forget(self, channel: Channel) -> None:
        if self._masks.pop(channel, 0):
            self._selector.unregister(channel.sock)

    def _refresh(self) -> None:
        for channel, old in list(self._masks.items()):
            if channel.closed:
                self._forget(channel)
                continue
            new = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.wants_write() else 0)
            if new != old:
                if old:
                    self._selector.modify(channel.sock, new, channel)
                else:
                    self._selector.register(channel.sock, new, channel)
                self._masks[channel] = new

    def _handle(self, handler: Callable[[float], None]) -> None:
        start = time.monotonic()
        self.busy_before_last_s = self.busy_s
        handler(start)
        self.busy_s += time.monotonic() - start

    def run(self, until: Callable[[], bool], limit_s: float, *, poll_s: float | None = None) -> bool:
        """Serve sockets and timers until ``until()`` holds (True) or ``limit_s`` passes (False).

        ``poll_s``: ask ``until`` at least this often, even when no socket or timer wakes the loop.
        """
        deadline = time.monotonic() + limit_s
        while not until():
            now = time.monotonic()
            if now >= deadline:
                return False
            self._refresh()
            wake = deadline if poll_s is None else min(deadline, now + poll_s)
            for channel in self._masks:
                timer = channel.timer()
                if timer is not None and timer < wake:
                    wake = timer
            for key, mask in self._selector.select(max(0.0, wake - now)):
                channel = key.data
                if mask & selectors.EVENT_READ and not channel.closed:
                    self._handle(channel.on_readable)
                if mask & selectors.EVENT_WRITE and not channel.closed:
                    self._handle(channel.on_writable)
                if until():
                    return True  # at once: what ``busy_before_last_s`` says is about this handler
            for channel in list(self._masks):
                timer = channel.timer()
                if timer is not None and timer <= time.monotonic() and not channel.closed:
                    self._handle(channel.on_timer)
                    if until():
                        return True
            for channel in list(self._masks):
                if channel.closed:
                    self._forget(channel)
        return True


class TcpChannel(Channel):
    """One TCP socket and the stream endpoint speaking over it."""

    def __init__(self, sock: socket.socket, endpoint: Any, *, server: bool, connecting: bool) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self.server = server
        self.connecting = connecting
        """A plain client's connect() is in progress (TFO's deferred connect never is)."""
        self.connected_at: float | None = None
        """When a plain client's connect() completed: the SYN-ACK is in."""
        self.events: list[Event] = []
        self.response: ResponseReceived | None = None
        self.peer_closed = False
        self.write_closed = False
        self._out = bytearray()
        self._write_ends: list[int] = []
        """Where in ``_out`` each of a ``keeps_writes`` endpoint's writes ends: each is a send(2) of
        its own, so that Nagle's algorithm sees the writes the program made."""
        self._split = split_writes(endpoint)
        self._timed = stream_timer(endpoint)
        """The endpoint's own timer (a server holding its answer for its server time), if it has one."""
        self.times = RequestTimes()
        self._now = 0.0

    def start(self, now: float) -> None:
        self._now = now
        self.endpoint.start(now)
        if getattr(self.endpoint, "request_at_start", False):
            self.times.ready(now)
        self._pump()

    def wants_write(self) -> bool:
        return self.connecting or bool(self._out)

    @property
    def responses(self) -> int:
        """Responses complete on this connection."""
        return sum(isinstance(event, ResponseReceived) for event in self.events)

    def fetch(self, targets: list[str]) -> None:
        """More GETs on the connection (the client endpoint's ``fetch``), sent when they may leave."""
        self.endpoint.fetch(targets)
        self._pump()

    def timer(self) -> float | None:
        return None if self._timed is None else self._timed.get_timer()

    def on_timer(self, now: float) -> None:
        assert self._timed is not None
        self._now = now
        self._timed.handle_timer(now)
        self._pump()

    def on_writable(self, now: float) -> None:
        if self.connecting:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise ConnectionError(error, f"connect to the server failed: {os.strerror(error)}")
            self.connecting = False
            self.connected_at = now
        self._flush()

    def on_readable(self, now: float) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(RECV_BYTES)
            except BlockingIOError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.peer_closed = True
                break
            self._now = now
            self.endpoint.receive(data, now)
            self._pump()
        if self.peer_closed and (self.server or self.write_closed):
            # A server closes when its client does (as the simulator's does); a client that
            # has sent its FIN is done once the server's arrives.
            self.close()

    def close_write(self, *, goodbye: bool = False) -> None:
        """The client's close: FIN after whatever is still queued; keep reading until the server's FIN.

        ``goodbye``: the endpoint closes first and what it says then (TLS close_notify) goes before
        the FIN, as real clients do; OpenSSL servers answer a bare FIN with an alert."""
        if goodbye and hasattr(self.endpoint, "close"):
            self.endpoint.close()
            self._out += self.endpoint.data_to_send()
        self._flush()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.write_closed = True
        if self.peer_closed:
            self.close()

    def _pump(self) -> None:
        if self._split is None:
            self._out += self.endpoint.data_to_send()
        else:
            for write in self._split.writes_to_send():
                self._out += write
                self._write_ends.append(len(self._out))
        while (event := self.endpoint.next_event()) is not None:  # before the flush: it may ready the request
            self.events.append(event)
            self.times.saw(self.endpoint, event, self._now)
            if isinstance(event, ResponseReceived) and self.response is None:
                self.response = event
        self.times.saw_bytes(self.endpoint, self._now)
        self._flush()

    def _flush(self) -> None:
        # A TFO client's first send puts the data in the SYN (cookie cached) or fails with
        # EINPROGRESS after sending a cookie request; either way the rest waits for writable.
        while self._out and not self.connecting and not self.write_closed:
            ends = self._write_ends
            try:
                sent = self.sock.send(self._out[:ends[0]] if ends else self._out)
            except BlockingIOError:
                return
            self.times.sent(time.monotonic())
            del self._out[:sent]
            if ends:
                self._write_ends = [end - sent for end in ends if end > sent]


class Listener(Channel):
    """The server's listening socket: each accepted connection gets a fresh server endpoint."""

    def __init__(self, sock: socket.socket, loop: SocketLoop, factory: Callable[[], Any]) -> None:
        self.sock = sock
        self.loop = loop
        self.factory = factory
        self.connections: list[TcpChannel] = []

    def on_readable(self, now: float) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = TcpChannel(sock, self.factory(), server=True, connecting=False)
            self.connections.append(connection)
            self.loop.add(connection)
            connection.start(now)
            connection.on_readable(now)  # TFO: the SYN's data is already waiting

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.close()
        super().close()


class UdpChannel(Channel):
    """A UDP socket and the datagram endpoint (QUIC) behind it."""

    def __init__(self, sock: socket.socket, endpoint: Any) -> None:
        self.sock = sock
        self.endpoint = endpoint
        self.events: list[Event] = []
        self.times = RequestTimes()
        self.datagrams_in = 0

    def start(self, now: float) -> None:
        self.endpoint.start(now)
        if getattr(self.endpoint, "request_at_start", False):
            self.times.ready(now)
        self.flush(now)

    def on_readable(self, now: float) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(RECV_BYTES)
            except BlockingIOError:
                break
            except ConnectionRefusedError:  # an ICMP port unreachable from the peer
                continue
            self.datagrams_in += 1
            self.endpoint.receive_datagram(data, addr, now)
        self.flush(now)

    def timer(self) -> float | None:
        return self.endpoint.get_timer()

    def on_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self.flush(now)

    def flush(self, now: float) -> None:
        self._drain_events(now)  # a HandshakeCompleted here readies the request the datagrams carry
        datagrams = self.endpoint.datagrams_to_send(now)
        self._drain_events(now)
        for data, addr in datagrams:
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, ConnectionRefusedError):
                pass  # a full send buffer or an earlier ICMP error: the datagram is lost, QUIC resends
        if datagrams:
            self.times.sent(now)

    def _drain_events(self, now: float) -> None:
        while (event := self.endpoint.next_event()) is not None:
            self.events.append(event)
            self.times.saw(self.endpoint, event, now)
        self.times.saw_bytes(self.endpoint, now)


