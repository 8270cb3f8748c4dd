"""The kernel engine: the variants over real sockets and the real Linux TCP and UDP stacks.

The same sans-IO endpoints the simulator drives (``variant_run.VariantEndpoints``), driven here by one
event loop in the calling thread (``socket_loop.SocketLoop``) over non-blocking
sockets of the topology's two namespaces (``kernel.topology``): a client socket in the client
namespace, bound to 198.18.0.1 before it connects, and the server's listening (or UDP) socket
in the server namespace. Every packet between them crosses the delay shim, which applies the
link model and records the client's view; that view is the trace, counted by the same analysis
as the simulator's (``runner.row_from_run``).

    with KernelSession(LinkConfig.from_rtt(0.1)) as session:   # one pair of namespaces
        run = session.run(CATALOG["tfo-tls13"], link, RunOptions())   # -> VariantRun
    run_kernel(variant, link, options)                           # the same, namespaces of its own

How the sockets are set up, and why:

- TCP_NODELAY on both sides, as curl, browsers and nginx set it: a TLS flight must not wait on
  Nagle for the ACK of the last one. The client leaves Nagle on where ``RunOptions.nodelay`` is
  off (``--split-writes``), and then sends each write its endpoint made with a send(2) of its own.
- TFO (RFC 7413): the server sets TCP_FASTOPEN before ``listen``; the client sets
  TCP_FASTOPEN_CONNECT, so ``connect`` sends nothing and the first ``send`` leaves in the SYN.
  With a cookie cached in the client namespace's tcp_metrics the data rides in the SYN; without
  one the kernel sends a SYN with a cookie request and the non-blocking ``send`` fails with
  EINPROGRESS: the data goes once the socket is writable, after the handshake.
- Between variants both namespaces' tcp_metrics are flushed (TFO cookies, cached RTTs and
  windows), the link model restarts from its seed and every socket and endpoint config is new,
  so nothing a variant learned reaches the next; a warm variant warms up inside its own run.
- The server's TLS context is built before it listens, not on the first connection.
- A server endpoint's own timer (an answer held for ``--server-time``) is a channel timer of
  its connection, so the loop wakes for it on the monotonic clock as it does for QUIC's.
- Closing copies the simulator: the client shuts its side (FIN; QUIC: CONNECTION_CLOSE) once
  the response is in, reads on until the server's FIN, and the trace is taken when the shim
  has gone quiet.
- The drop hook (``--drop``) runs in the shim's process; it reports what it dropped by
  appending the selector's name to a file of the session's, read back after the run.

Real Linux sends a few packets the modeled TCP folds into others -- the ACK of the SYN-ACK
before the first data (a plain connect completes before the application writes), an immediate
ACK of a request before the server's answer (quick-ACK mode at the start of a connection), the
client's ACK of the response before its FIN -- so a kernel row has more ``packets`` than a sim
row; the rounds are the same. Its TTFB also holds real computation, which virtual time has not:
about 1-3 ms per TLS handshake, 8-13 ms for aioquic's pure-Python QUIC (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from handshake.connections import IP_PROTOCOL, of_connections
from handshake.page import after_the_html
from handshake.gc_pause import cyclic_gc_paused
from handshake.kernel.forwarder import ShimStats
from handshake.kernel.topology import SERVER_ADDR, Topology
from handshake.net.drops import PacketDropper
from handshake.net.link import LinkConfig
from handshake.variant_run import RunOptions, VariantEndpoints, VariantRun
from handshake.socket_loop import (TCP_FASTOPEN, TCP_FASTOPEN_CONNECT, Channel, Listener, SocketLoop, TcpChannel,
                                   UdpChannel)
from handshake.trace.packet import PacketError, decode
from handshake.trace.record import Trace, TracedPacket
from handshake.variants import Variant

__all__ = [
    "RESPONSE_LIMIT_S", "CLOSE_LIMIT_S", "KernelSession", "KernelTimeout", "run_kernel",
]

RESPONSE_LIMIT_S = 30.0
"""Real seconds a connection may take to get its response before the row is incomplete."""
CLOSE_LIMIT_S = 5.0
"""Real seconds for the close (FINs or CONNECTION_CLOSE, and the last ACK) to cross."""
TICKET_LIMIT_S = 5.0
"""QUIC: how long after the response a warm-up waits for the server's ticket."""
QUIET_S = 0.005
"""The wire counts as quiet once the shim has nothing scheduled and read nothing for this long."""
_POLL_S = 0.002
"""How often the loop asks the shim whether the wire is quiet, while waiting for that."""

_TFO_QUEUE = 16  # pending TFO requests the listener takes (RFC 7413 §5.1's "limit")


class KernelTimeout(RuntimeError):
    """A connection did not reach its goal within its real-time limit."""


def _no_gc_pauses() -> contextlib.AbstractContextManager[None]:
    """Keep Python's cyclic collector out of the measured exchange (after one collection now):
    on a big heap one pass takes milliseconds, and here milliseconds are the measurement."""
    return cyclic_gc_paused(collect_first=True)


# --- the drop hook, in the shim's process ---------------------------------------------------

@dataclass
class _ReportingDropper:
    """``PacketDropper`` as a shim drop hook: decodes the raw packet, and appends the name of
    each selector that dropped one to ``report_path`` (the hook runs in the shim's process, so
    its own state never comes back). Module level, so it pickles across."""

    names: tuple[str, ...]
    report_path: str
    dropper: PacketDropper = field(init=False)

    def __post_init__(self) -> None:
        self.dropper = PacketDropper(self.names, armed=True)

    def __call__(self, from_client: bool, data: bytes) -> bool:
        if len(self.dropper.dropped) == len(self.names):
            return False
        try:
            packet = decode(data)
        except PacketError:
            return False
        if not self.dropper(from_client, packet):
            return False
        fd = os.open(self.report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{self.dropper.dropped[-1]}\n".encode())
        finally:
            os.close(fd)
        return True


# --- the wire -------------------------------------------------------------------------------

def _in_flight(stats: ShimStats) -> int:
    """Packets the shim has read and not yet delivered or dropped (a duplicate's second copy
    may hide behind the first: close enough to tell a quiet wire)."""
    done = stats.filtered + stats.hooked + stats.lost + stats.delivered + stats.write_errors
    return stats.read_c2s + stats.read_s2c - done


class _Quiet:
    """``until`` for the loop: the shim has read nothing for QUIET_S and, with ``empty``, holds
    nothing on its way either."""

    def __init__(self, topology: Topology, *, empty: bool = True) -> None:
        self._shim = topology.shim
        self._empty = empty
        self._reads: tuple[int, int] | None = None
        self._since = 0.0

    def __call__(self) -> bool:
        stats = self._shim.stats
        now = time.monotonic()
        reads = (stats.read_c2s, stats.read_s2c)
        if reads != self._reads or (self._empty and _in_flight(stats) > 0):
            self._reads, self._since = reads, now
            return False
        return now - self._since >= QUIET_S


# --- the session ----------------------------------------------------------------------------

class KernelSession:
    """One pair of namespaces and its shim, reused by every variant run in it.

    Setting up costs about 10 ms and tearing down about 60 ms, so ``compare`` opens one
    session for all its variants. ``run`` has ``runner.run_sim``'s signature.
    """

    def __init__(self, link: LinkConfig | None = None, *, response_limit_s: float = RESPONSE_LIMIT_S) -> None:
        self.link = link or LinkConfig()
        self.response_limit_s = response_limit_s
        self.topology = Topology(self.link, keep_packets=True)
        self._workdir: str | None = None
        self.busy_before_response_s: float | None = None
        """Of the latest exchange: how long the endpoints' code ran before its response came."""
        self.busy_during_page_s: float | None = None
        """Of the latest page: how long the endpoints' code ran before its last response came."""
        self.client_port: int | None = None
        """The client port of the connection last opened (the measured one, once it is open)."""
        self._run_ports: set[tuple[int, int]] = set()
        """(IP protocol, client port) of every connection the current run opened (warm-up and measured)."""

    def __enter__(self) -> KernelSession:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.topology.__exit__(exc_type, exc, tb)  # raises a shim failure nobody saw yet
        finally:
            self._remove_workdir()

    def open(self) -> None:
        """Build the namespaces and start the shim (``Topology.open``: it undoes itself on failure)."""
        self.topology.open()
        self._workdir = tempfile.mkdtemp(prefix="handshake-kernel-")

    def close(self) -> None:
        try:
            self.topology.close()
        finally:
            self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def run(self, variant: Variant, link: LinkConfig | None = None, options: RunOptions | None = None) -> VariantRun:
        """Run one variant (its warm-up first, unless ``options.cold``) and return its trace."""
        if self._workdir is None:
            raise RuntimeError("open the KernelSession first (use it as a context manager)")
        options = options or RunOptions()
        topo, shim = self.topology, self.topology.shim
        assert shim is not None
        shim.set_drop(None)
        shim.set_link(link or self.link)  # fresh random streams from the link's seed, as the sim's
        for role in ("client", "server"):
            topo.flush_tcp_metrics(role)  # no TFO cookie, RTT or window from an earlier variant
        workdir = Path(tempfile.mkdtemp(dir=self._workdir))
        keylog_path = workdir / "keys.log"
        drop_report = workdir / "dropped"
        endpoints = VariantEndpoints(variant, options, keylog_path)
        loop = SocketLoop()
        warmups = 0
        error = None
        busy_s: float | None = None
        measured_port: int | None = None
        self._run_ports = set()
        try:
            shim.take_packets()  # whatever an earlier run left on the wire is not this run's
            exchange = self._quic_exchange if variant.transport == "quic" else self._tcp_exchange
            self._serve(loop, variant, endpoints)
            try:
                ticket = None
                if variant.warm and not options.cold:
                    ticket = exchange(loop, endpoints, None, variant.resume, "warm-up")
                    warmups = 1
                if options.drops:
                    shim.set_drop(_ReportingDropper(tuple(options.drops), str(drop_report)))
                self.busy_before_response_s = self.client_port = self.busy_during_page_s = None
                try:
                    with _no_gc_pauses():
                        if options.page is None:
                            exchange(loop, endpoints, ticket, False, "measured")
                        elif variant.transport == "quic":
                            self._quic_page(loop, endpoints, ticket)
                        else:
                            self._tcp_page(loop, endpoints, ticket)
                finally:
                    measured_port = self.client_port
                busy_s = self.busy_before_response_s
            except KernelTimeout as timeout:
                error = str(timeout)
            finally:
                shim.set_drop(None)
        finally:
            loop.close()
        # The run's own packets: an earlier run's close can still be crossing when this one
        # starts (its server's FIN resent under loss), and is no part of its row or capture.
        packets = [TracedPacket(t, data) for t, data in of_connections(shim.take_packets(), self._run_ports)]
        dropped = tuple(drop_report.read_text().split()) if drop_report.exists() else ()
        keylog = keylog_path.read_text() if keylog_path.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
        return VariantRun(variant, Trace(packets, keylog), warmups, error, dropped, options, busy_s, measured_port,
                          self.busy_during_page_s)

    def _serve(self, loop: SocketLoop, variant: Variant, endpoints: VariantEndpoints) -> None:
        _load_server_config(endpoints)
        if variant.transport == "quic":
            sock = self.topology.server_socket(socket.SOCK_DGRAM, endpoints.port)
            sock.setblocking(False)
            server: Channel = UdpChannel(sock, endpoints.quic_server())
            server.start(time.monotonic())  # type: ignore[attr-defined]
        else:
            sock = self.topology.server_socket(socket.SOCK_STREAM, endpoints.port)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if variant.tfo:
                sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, _TFO_QUEUE)
            sock.listen(16)
            sock.setblocking(False)
            server = Listener(sock, loop, endpoints.server)
        loop.add(server)

    def _connect(self, loop: SocketLoop, endpoints: VariantEndpoints, endpoint: Any) -> TcpChannel:
        """A client TCP connection from the client namespace's own address, its endpoint started."""
        sock = self.topology.client_socket(socket.SOCK_STREAM)
        port = sock.getsockname()[1]
        self._run_ports.add((IP_PROTOCOL["tcp"], port))
        if endpoints.options.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoints.variant.tfo:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        sock.setblocking(False)
        status = sock.connect_ex((SERVER_ADDR, endpoints.port))  # TFO: 0, the SYN waits for data
        connection = TcpChannel(sock, endpoint, server=False, connecting=status != 0)
        loop.add(connection)
        connection.start(time.monotonic())
        return connection

    def _await(self, loop: SocketLoop, connections: list[TcpChannel], done: Callable[[], bool], limit_s: float,
               role: str) -> None:
        if not loop.run(done, limit_s):
            for connection in connections:
                connection.close()
            loop.run(_Quiet(self.topology), CLOSE_LIMIT_S, poll_s=_POLL_S)
            raise KernelTimeout(f"the {role} connection got no response in {limit_s:g} s")

    def _close(self, loop: SocketLoop, connections: list[TcpChannel]) -> None:
        """The clients' FINs; then, the servers' FINs in, the clients' last ACKs, recorded once
        the shim reads them (their way to the server is no part of the client's view)."""
        for connection in connections:
            connection.close_write()
        loop.run(lambda: all(connection.closed for connection in connections), CLOSE_LIMIT_S)
        loop.run(_Quiet(self.topology, empty=False), CLOSE_LIMIT_S, poll_s=_POLL_S)
        for connection in connections:
            connection.close()  # a lossy link may leave the FIN exchange unfinished; the responses are what counts

    def _first_answer(self, loop: SocketLoop, endpoints: VariantEndpoints, endpoint: Any, role: str) -> TcpChannel:
        """The measured TCP connection, open and answered once, with what its endpoints' code spent."""
        connection = self._connect(loop, endpoints, endpoint)
        self.client_port = connection.sock.getsockname()[1]
        loop.busy_s = 0.0  # a TFO ClientHello made in start() leaves with the first packet: not in the TTFB
        self._await(loop, [connection], lambda: connection.response is not None, self._limit_s(endpoints), role)
        self.busy_before_response_s = loop.busy_before_last_s
        return connection

    def _limit_s(self, endpoints: VariantEndpoints) -> float:
        return self.response_limit_s + endpoints.options.server_time_s

    def _tcp_exchange(self, loop: SocketLoop, endpoints: VariantEndpoints, ticket: Any, want_ticket: bool,
                      role: str) -> Any:
        """One TCP connection: connect, wait for the whole response, close. Returns the session ticket."""
        connection = self._first_answer(loop, endpoints, endpoints.client(ticket), role)
        self._close(loop, [connection])
        return connection.endpoint.session if want_ticket else None

    def _tcp_page(self, loop: SocketLoop, endpoints: VariantEndpoints, ticket: Any) -> None:
        """A page over TCP, as the simulator loads it (``runner._tcp_page``): the HTML, then every
        other object at once -- on the one connection over HTTP/2, over up to six over HTTP/1.1."""
        page = endpoints.options.page
        assert page is not None
        targets = page.targets
        first = self._first_answer(loop, endpoints, endpoints.client(ticket, path=targets[0]), "page's first")
        plan = after_the_html(targets, getattr(first.endpoint, "alpn", None) == "h2")
        first.fetch(plan[0])
        connections, wanted = [first], [1 + len(plan[0])]
        for share in plan[1:]:
            endpoint = endpoints.client(ticket, path=share[0])
            endpoint.fetch(share[1:])  # type: ignore[attr-defined]
            connections.append(self._connect(loop, endpoints, endpoint))
            wanted.append(len(share))
        self._await(loop, connections, lambda: all(c.responses >= n for c, n in zip(connections, wanted)),
                    self._limit_s(endpoints), "page's")
        self.busy_during_page_s = loop.busy_before_last_s
        self._close(loop, connections)

    def _quic_page(self, loop: SocketLoop, endpoints: VariantEndpoints, ticket: Any) -> None:
        """A page over QUIC: the HTML, then every other object at once, a stream each."""
        page = endpoints.options.page
        assert page is not None
        targets = page.targets
        self._quic_exchange(loop, endpoints, ticket, False, "page's", path=targets[0], then=targets[1:])

    def _quic_exchange(self, loop: SocketLoop, endpoints: VariantEndpoints, ticket: Any, want_ticket: bool,
                       role: str, *, path: str = "/", then: list[str] | None = None) -> Any:
        """One QUIC connection: wait for the response (``path``; then, for a page, every target
        of ``then`` at once), and the ticket, which may come a round trip later; close, and let
        the CONNECTION_CLOSE cross. Returns the ticket."""
        sock = self.topology.client_socket(socket.SOCK_DGRAM)
        self.client_port = sock.getsockname()[1]
        self._run_ports.add((IP_PROTOCOL["quic"], self.client_port))
        sock.setblocking(False)
        client = endpoints.quic_client(ticket, path=path)
        channel = UdpChannel(sock, client)
        loop.add(channel)
        try:
            channel.start(time.monotonic())
            loop.busy_s = 0.0  # the first Initial is made in start(), before the first packet
            limit_s = self._limit_s(endpoints)
            if not loop.run(lambda: client.response is not None, limit_s):
                raise KernelTimeout(f"the {role} connection got no response in {limit_s:g} s")
            self.busy_before_response_s = loop.busy_before_last_s
            if then is not None:
                client.fetch(then)
                channel.flush(time.monotonic())
                if not loop.run(lambda: client.done, limit_s):
                    raise KernelTimeout(f"the {role} connection got not every response in {limit_s:g} s")
                self.busy_during_page_s = loop.busy_before_last_s
            if want_ticket:
                loop.run(lambda: client.session_ticket is not None, TICKET_LIMIT_S)
            client.close()
            channel.flush(time.monotonic())
            loop.run(_Quiet(self.topology), CLOSE_LIMIT_S, poll_s=_POLL_S)
        finally:
            channel.close()  # its timers must not run on into the next connection
        return client.session_ticket if want_ticket else None


def _load_server_config(endpoints: VariantEndpoints) -> None:
    """Build the server's TLS context (certificate chain, keys) now, as a server does before it
    listens; built lazily on the first connection, it would cost that handshake milliseconds of
    file I/O and parsing that the simulator's virtual clock never sees."""
    config = endpoints._server_config
    for name in ("context", "quic_configuration"):
        if config is not None and hasattr(type(config), name):
            getattr(config, name)


def run_kernel(variant: Variant, link: LinkConfig, options: RunOptions | None = None) -> VariantRun:
    """Run one variant on the kernel engine, in namespaces of its own."""
    with KernelSession(link) as session:
        return session.run(variant, link, options)
