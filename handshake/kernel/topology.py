"""Two network namespaces joined by the delay shim: the kernel engine's test bench.

::

    client namespace                                       server namespace
    198.18.0.1/16 on hs0 (TUN) ──fd──► Shim ──fd──► hs0 (TUN) 198.19.0.1/16
    route 198.19.0.0/16 dev hs0      ◄── link model ──     route 198.18.0.0/16 dev hs0

Each namespace has loopback up, IPv6 off (set before its TUN exists, so no router
solicitations cross the shim), ``net.ipv4.tcp_fastopen = 3``, Reno congestion control for the
programs it runs (the slow start of the kernel's default, CUBIC, whatever the host chose) and
CUBIC itself on this project's own sockets, and no route anywhere but the peer's /16 through its TUN. 198.18.0.0/15 is RFC 2544's benchmarking range.

``Topology`` is a context manager: it checks privileges, reaps the leftovers of dead runs,
builds both sides, starts the shim, and on the way out -- normal exit, exception, Ctrl-C,
SIGTERM or SIGHUP -- kills the processes it started and anything else inside, stops the shim,
closes the TUNs and deletes the namespaces.

Sockets: only through ``client_socket`` / ``server_socket`` (or ``bound_socket`` in a thread
already inside the namespace). Each is created in a thread that is verifiably inside the right
namespace and bound to that namespace's own address, which fails with EADDRNOTAVAIL anywhere
else; the host namespace would carry a stray connect to the outside (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handshake.kernel import cleanup, netns
from handshake.kernel.ifconfig import Interfaces
from handshake.kernel.netns import Namespace, ensure_in, run_in
from handshake.kernel.privileges import check_privileges
from handshake.kernel.shim import DropHook, Shim, ShimFailed, make_shim
from handshake.kernel.signals import deferred_signals, raise_on_termination
from handshake.kernel.tun import open_tun
from handshake.net.link import LinkConfig

__all__ = [
    "CLIENT_ADDR", "SERVER_ADDR", "CLIENT_NET", "SERVER_NET", "TUN_NAME", "TXQUEUELEN",
    "ShimFailed", "Side", "Topology", "bound_socket",
]

CLIENT_ADDR = "198.18.0.1"
SERVER_ADDR = "198.19.0.1"
CLIENT_NET = "198.18.0.0/16"
SERVER_NET = "198.19.0.0/16"
TUN_NAME = "hs0"
TXQUEUELEN = 10_000
"""TUN transmit queue, in packets: the default 500 overflows while the shim holds the GIL."""
STOP_GRACE_S = 1.0
"""How long started processes get between SIGTERM and SIGKILL at teardown."""

_TCP_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
_UDP_UNCONNECTED = "07"  # TCP_CLOSE: a bound, unconnected UDP socket


@dataclass(frozen=True)
class Side:
    """One end of the topology."""

    role: str
    """"client" or "server"."""
    namespace: Namespace
    address: str
    """This side's address on its TUN: the source address of everything it sends."""
    network: str
    """Its own /16."""
    peer_network: str
    """The other side's /16, routed through the TUN."""


def bound_socket(side: Side, type: int = socket.SOCK_STREAM, port: int = 0, *,
                 reuse_addr: bool = False) -> socket.socket:
    """An IPv4 socket of ``side``'s namespace bound to ``side.address`` and ``port``.

    The calling thread must be inside ``side.namespace`` (``WrongNamespace`` otherwise), and
    the bind to the namespace's own address is a second check: it fails everywhere else.
    """
    ensure_in(side.namespace)
    sock = socket.socket(socket.AF_INET, type | socket.SOCK_CLOEXEC)
    try:
        if type == socket.SOCK_STREAM:
            _choose_cubic(sock)
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((side.address, port))
    except BaseException:
        sock.close()
        raise
    return sock


CONGESTION_CONTROL = "reno"
SOCKET_CONGESTION_CONTROL = b"cubic"


def _choose_cubic(sock: socket.socket) -> None:
    """Linux's default congestion control on this project's own sockets, as the sim models it
    (RFC 9438, ``net.cubic``), whatever the host chose. A namespace's default may be only one
    of the host's allowed list (Debian's with BBR: "reno bbr"), but a socket of a process with
    CAP_NET_ADMIN may take any the kernel has (``tcp_set_congestion_control``); accepted
    sockets inherit their listener's. Where CUBIC is missing, the namespace's Reno stays."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, SOCKET_CONGESTION_CONTROL)
    except OSError:
        pass


def _build_side(side: Side, tcp_fastopen: int) -> int:
    """Inside ``side.namespace``: sysctls, loopback, the TUN and its address and route."""
    ensure_in(side.namespace)
    if os.path.exists("/proc/sys/net/ipv6"):  # absent when the kernel runs with ipv6.disable=1
        netns.write_sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        netns.write_sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    netns.write_sysctl("net.ipv4.tcp_fastopen", tcp_fastopen)
    # A new namespace inherits the host's congestion control, BBR on some hosts, which paces
    # its segments out over the RTT. Programs run here (nginx, curl) get Reno, whose slow start
    # is CUBIC's (they differ after a loss), since a namespace may always choose it
    # (tcp_allowed_congestion_control); this project's own sockets take CUBIC (_choose_cubic).
    try:
        netns.write_sysctl("net.ipv4.tcp_congestion_control", CONGESTION_CONTROL)
    except OSError:
        pass  # an administrator took Reno off the allowed list: the host's choice stays
    with Interfaces(side.namespace) as interfaces:
        interfaces.up("lo")
        fd = open_tun(side.namespace, TUN_NAME)
        try:
            interfaces.set_txqueuelen(TUN_NAME, TXQUEUELEN)
            interfaces.set_address(TUN_NAME, f"{side.address}/{side.network.split('/')[1]}")
            interfaces.up(TUN_NAME)
            interfaces.add_route(side.peer_network, TUN_NAME)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _listening_ports() -> set[tuple[str, int]]:
    """(protocol, port) of the TCP listeners and bound UDP sockets of this thread's namespace."""
    found = set()
    for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_UNCONNECTED)):
        # A server that binds "[::]:PORT" (openssl s_server -accept PORT does) is in the v6 table,
        # and takes IPv4 connections too (dual stack). /proc/thread-self/net answers for this
        # thread's namespace; /proc/net for the process's.
        for table_name in (proto, proto + "6"):
            try:
                table = open(f"/proc/thread-self/net/{table_name}")
            except FileNotFoundError:  # a kernel without IPv6
                continue
            with table:
                next(table)
                for line in table:
                    fields = line.split()
                    if fields[3] == state:
                        found.add((proto, int(fields[1].rsplit(":", 1)[1], 16)))
    return found


class Topology:
    """Client and server namespaces, their TUNs, and the shim between them.

    ``with Topology(LinkConfig.from_rtt(0.1)) as topo:`` -- then ``topo.client_socket()``,
    ``topo.server_socket()``, ``topo.popen("server", [...])``, ``topo.shim.packets``.

    ``capture``: a pcap file of the client's view; ``keep_packets``: keep it in memory too
    (``shim.packets``, ``shim.take_packets()``); ``drop``: a hook consulted before the link
    model; ``isolate_shim``: run the forwarder in a forked process (the default; see
    ``shim``) rather than a thread of this one; ``purpose``: who is asking, for the error when
    privileges are missing.
    """

    def __init__(
        self,
        link: LinkConfig,
        *,
        capture: str | os.PathLike | None = None,
        keep_packets: bool = False,
        drop: DropHook | None = None,
        isolate_shim: bool = True,
        tcp_fastopen: int = 3,
        purpose: str = "the kernel engine",
    ) -> None:
        self.link = link
        self.purpose = purpose
        """Who needs the privileges, for the one-line error: "handshake shim needs root ..."."""
        self._isolate_shim = isolate_shim
        self._capture = capture
        self._keep_packets = keep_packets
        self._drop = drop
        self._tcp_fastopen = tcp_fastopen
        self.client: Side | None = None
        self.server: Side | None = None
        self.shim: Shim | None = None
        self.setup_s: float | None = None
        """How long ``open`` took: privileges, reaping, namespaces, TUNs, shim start."""
        self.names: list[str] = []
        self._fds: list[int] = []
        self._processes: list[tuple[subprocess.Popen, bool]] = []
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._exit = contextlib.ExitStack()

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()
        error = self.shim.error if self.shim is not None else None
        if error is not None and exc_type is None:
            if isinstance(error, ShimFailed):
                raise error
            raise ShimFailed(f"the shim stopped: {error!r}") from error

    def open(self) -> None:
        started = time.perf_counter()
        check_privileges(self.purpose)
        cleanup.reap_leftovers()
        self._exit.enter_context(raise_on_termination())
        try:
            self.names = cleanup.new_names(("client", "server"))  # close() removes what exists
            client_ns, server_ns = netns.create(self.names)
            self.client = Side("client", client_ns, CLIENT_ADDR, CLIENT_NET, SERVER_NET)
            self.server = Side("server", server_ns, SERVER_ADDR, SERVER_NET, CLIENT_NET)
            for side in (self.client, self.server):
                self._fds.append(run_in(side.namespace, _build_side, side, self._tcp_fastopen))
            self.shim = make_shim(
                self._fds[0], self._fds[1], self.link, isolate=self._isolate_shim,
                capture=self._capture, keep_packets=self._keep_packets, drop=self._drop,
            )
            self.shim.start()
            self.setup_s = time.perf_counter() - started
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Tear everything down; safe to call twice, and after a partial ``open``.

        Every step runs even if an earlier one fails; the first failure is raised at the end.
        """
        failures: list[BaseException] = []

        def step(action, *args) -> None:
            try:
                action(*args)
            except Exception as error:  # noqa: BLE001 - the remaining steps must still run
                failures.append(error)

        try:
            with deferred_signals():
                step(self._stop_processes)
                step(cleanup.kill_inside, self.names)
                if self.shim is not None:
                    step(self.shim.stop)
                for sock in list(self._sockets):
                    step(sock.close)
                while self._fds:
                    step(os.close, self._fds.pop())
                step(netns.remove, self.names)
        finally:
            self._exit.close()
        if failures:
            raise failures[0]

    def _stop_processes(self) -> None:
        processes, self._processes = self._processes, []
        running = [(p, group) for p, group in processes if p.poll() is None]
        for process, group in running:
            _signal(process, group, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process, group in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if group or process.poll() is None:
                _signal(process, group, signal.SIGKILL)  # the rest of a group may linger
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1.0)

    # --- using it ----------------------------------------------------------------------------

    def side(self, role: str) -> Side:
        side = {"client": self.client, "server": self.server}.get(role)
        if side is None:
            raise ValueError(f"no {role!r} side (roles are client and server; is it open?)")
        return side

    def client_socket(self, type: int = socket.SOCK_STREAM, port: int = 0) -> socket.socket:
        """A client-namespace socket bound to 198.18.0.1 (port 0: any), ready to connect."""
        return self._socket("client", type, port, reuse_addr=False)

    def server_socket(self, type: int = socket.SOCK_STREAM, port: int = 0) -> socket.socket:
        """A server-namespace socket bound to 198.19.0.1:``port`` with SO_REUSEADDR, ready to
        listen (set TCP_FASTOPEN before listening)."""
        return self._socket("server", type, port, reuse_addr=True)

    def _socket(self, role: str, type: int, port: int, reuse_addr: bool) -> socket.socket:
        side = self.side(role)
        sock = run_in(side.namespace, bound_socket, side, type, port, reuse_addr=reuse_addr)
        self._sockets.add(sock)
        return sock

    def environment(self) -> dict[str, str]:
        """What the commands run inside learn about the topology."""
        return {
            "HANDSHAKE_CLIENT_ADDR": CLIENT_ADDR,
            "HANDSHAKE_SERVER_ADDR": SERVER_ADDR,
            "HANDSHAKE_CLIENT_NS": self.side("client").namespace.name,
            "HANDSHAKE_SERVER_NS": self.side("server").namespace.name,
        }

    def popen(self, role: str, argv: Sequence[str] | str, *, own_group: bool = True,
              **kwargs: Any) -> subprocess.Popen:
        """Start a process inside ``role``'s namespace, with ``environment()`` added.

        ``own_group`` starts it in a new session, so teardown can kill it and its children
        as a group; give False for a foreground command that should get the terminal's Ctrl-C.
        Teardown sends SIGTERM, then SIGKILL after STOP_GRACE_S.
        """
        side = self.side(role)
        env = dict(kwargs.pop("env", None) or os.environ)
        env.update(self.environment())
        process = run_in(side.namespace, subprocess.Popen, argv, env=env,
                         start_new_session=own_group, **kwargs)
        self._processes.append((process, own_group))
        return process

    def tcp_metrics(self, role: str = "client") -> str:
        """``ip tcp_metrics show`` in ``role``'s namespace: cached RTT, cwnd and TFO cookies."""
        return self._ip(role, "tcp_metrics", "show")

    def flush_tcp_metrics(self, role: str = "client") -> None:
        """Forget cached RTTs, windows and TFO cookies (``ip tcp_metrics flush all``): a cold
        start without new namespaces."""
        self._ip(role, "tcp_metrics", "flush", "all")

    def _ip(self, role: str, *args: str) -> str:
        name = self.side(role).namespace.name
        result = subprocess.run(["ip", "-n", name, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OSError(f"ip {' '.join(args)} in {name}: {result.stderr.strip()}")
        return result.stdout

    def listening(self, role: str) -> set[tuple[str, int]]:
        """("tcp"|"udp", port) of what listens in ``role``'s namespace (``ss -ltnu``)."""
        return run_in(self.side(role).namespace, _listening_ports)


def _signal(process: subprocess.Popen, group: bool, signum: int) -> None:
    try:
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass
