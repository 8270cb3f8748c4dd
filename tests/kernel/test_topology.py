"""The two namespaces: addresses, routes, sysctls, the wrong-namespace guard, and teardown."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess

import pytest

from handshake.kernel import (
    CLIENT_ADDR, SERVER_ADDR, Terminated, Topology, WrongNamespace, bound_socket, current_identity,
    in_namespace, run_in,
)
from handshake.kernel.netns import NETNS_DIR
from handshake.net.link import LinkConfig

from .conftest import namespaces

TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)
TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)
_SIOCGSKNS = 0x894C  # ioctl: an fd for the network namespace a socket belongs to


def socket_namespace(sock: socket.socket) -> tuple[int, int]:
    fd = fcntl.ioctl(sock.fileno(), _SIOCGSKNS)
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


def ip(topo: Topology, role: str, *args: str) -> str:
    name = topo.side(role).namespace.name
    return subprocess.run(["ip", "-n", name, *args], capture_output=True, text=True, check=True).stdout


def test_each_side_has_its_address_and_a_route_to_the_peer_only():
    with Topology(LinkConfig()) as topo:
        assert topo.setup_s < 1.0
        for role, own, peer in (("client", "198.18.0.1/16", "198.19.0.0/16"),
                                ("server", "198.19.0.1/16", "198.18.0.0/16")):
            assert own in ip(topo, role, "-4", "-o", "addr", "show", "dev", "hs0")
            routes = ip(topo, role, "route").splitlines()
            assert len(routes) == 2 and "default" not in "".join(routes)
            assert any(r.startswith(f"{peer} dev hs0") for r in routes)
            assert "qlen 10000" in ip(topo, role, "link", "show", "hs0")
            assert "inet6" not in ip(topo, role, "addr")  # IPv6 is off: nothing to solicit


def test_fastopen_and_ipv6_sysctls_are_per_namespace():
    host_tfo = open("/proc/sys/net/ipv4/tcp_fastopen").read()
    with Topology(LinkConfig()) as topo:
        for role in ("client", "server"):
            name = topo.side(role).namespace.name
            out = subprocess.run(
                ["ip", "netns", "exec", name, "sysctl", "-n", "net.ipv4.tcp_fastopen",
                 "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.hs0.disable_ipv6"],
                capture_output=True, text=True, check=True).stdout.split()
            assert out == ["3", "1", "1"]
    assert open("/proc/sys/net/ipv4/tcp_fastopen").read() == host_tfo


def test_two_runs_at_once_get_different_namespaces():
    with Topology(LinkConfig()) as one, Topology(LinkConfig()) as two:
        assert set(one.names).isdisjoint(two.names)
        for topo in (one, two):
            server = topo.server_socket(socket.SOCK_DGRAM, 9000)
            client = topo.client_socket(socket.SOCK_DGRAM)
            client.sendto(b"ping", (SERVER_ADDR, 9000))
            server.settimeout(2)
            assert server.recvfrom(10) == (b"ping", (CLIENT_ADDR, client.getsockname()[1]))


def test_fastopen_cookies_are_cached_in_the_client_namespace_until_flushed():
    with Topology(LinkConfig.from_rtt(0.002)) as topo:
        listener = topo.server_socket(port=443)
        listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 8)
        listener.listen()
        client = topo.client_socket()
        client.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        client.connect((SERVER_ADDR, 443))
        client.send(b"x")
        listener.accept()[0].recv(1)
        assert "fo_cookie" in topo.tcp_metrics()
        topo.flush_tcp_metrics()
        assert topo.tcp_metrics() == ""


# --- the wrong-namespace guard ---------------------------------------------------------------

def test_sockets_belong_to_their_side_and_are_bound_to_its_address():
    with Topology(LinkConfig()) as topo:
        client, server = topo.client_socket(), topo.server_socket(socket.SOCK_DGRAM)
        assert socket_namespace(client) == topo.client.namespace.identity
        assert socket_namespace(server) == topo.server.namespace.identity
        assert client.getsockname()[0] == CLIENT_ADDR
        assert server.getsockname()[0] == SERVER_ADDR
        assert current_identity() != topo.client.namespace.identity  # this thread never moved


def test_the_projects_own_tcp_sockets_run_cubic_whatever_the_host_allows():
    """The sim models CUBIC after a loss; the kernel's own sockets must run it too, even where
    the namespace's default may only be Reno (a host whose allowed list is "reno bbr"), and
    an accepted connection keeps its listener's choice."""
    available = open("/proc/sys/net/ipv4/tcp_available_congestion_control").read().split()
    assert "cubic" in available, "Debian's kernels build CUBIC in"
    with Topology(LinkConfig()) as topo:
        listener = topo.server_socket()
        listener.listen(1)
        client = topo.client_socket()
        client.connect((SERVER_ADDR, listener.getsockname()[1]))
        accepted, _ = listener.accept()
        for sock in (listener, client, accepted):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"cubic"
        for sock in (listener, client, accepted):
            sock.close()


def test_a_socket_is_refused_in_a_thread_outside_its_namespace():
    with Topology(LinkConfig()) as topo:
        with pytest.raises(WrongNamespace):
            bound_socket(topo.client)  # the host namespace, where a connect would leak out
        with pytest.raises(WrongNamespace):
            run_in(topo.server.namespace, bound_socket, topo.client)
        sock = run_in(topo.client.namespace, bound_socket, topo.client)  # the right one works
        sock.close()


def test_binding_the_client_address_fails_in_the_host_namespace():
    with Topology(LinkConfig()):
        host = socket.socket()  # bound only, never connected
        with host, pytest.raises(OSError) as failure:
            host.bind((CLIENT_ADDR, 0))
        assert failure.value.errno == errno.EADDRNOTAVAIL


def test_in_namespace_returns_the_thread_even_after_an_exception():
    home = current_identity()

    def visit(topo: Topology) -> None:
        with in_namespace(topo.client.namespace):
            assert current_identity() == topo.client.namespace.identity
            raise ValueError("inside")

    with Topology(LinkConfig()) as topo:
        with pytest.raises(ValueError):
            run_in(topo.server.namespace, lambda: (visit(topo), None))
        with pytest.raises(ValueError):
            visit(topo)
    assert current_identity() == home


# --- processes ---------------------------------------------------------------------------

def test_commands_run_inside_their_namespace_and_learn_the_addresses():
    script = "import os; print(os.stat('/proc/self/ns/net').st_ino, os.environ['HANDSHAKE_SERVER_ADDR'])"
    with Topology(LinkConfig()) as topo:
        for role in ("client", "server"):
            process = topo.popen(role, ["python3", "-c", script], stdout=subprocess.PIPE, text=True)
            inode, server = process.communicate(timeout=10)[0].split()
            assert int(inode) == topo.side(role).namespace.identity[1]
            assert server == SERVER_ADDR


# --- teardown ----------------------------------------------------------------------------

@pytest.mark.parametrize("stop", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_an_exception_tears_everything_down(stop):
    with pytest.raises(type(stop)):
        with Topology(LinkConfig()) as topo:
            names = topo.names
            assert set(names) <= namespaces()
            server = topo.popen("server", ["sleep", "30"])
            raise stop
    assert server.poll() is not None
    assert not set(names) & namespaces()


def test_sigterm_raises_terminated_and_cleans_up():
    with pytest.raises(Terminated) as stopped:
        with Topology(LinkConfig()) as topo:
            names = topo.names
            server = topo.popen("server", ["sleep", "30"])
            os.kill(os.getpid(), signal.SIGTERM)
            server.wait(5)  # the handler raises at the next bytecode boundary
    assert stopped.value.exit_status == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert server.poll() is not None
    assert not set(names) & namespaces()


def test_a_stray_process_inside_is_killed_at_teardown():
    with Topology(LinkConfig()) as topo:
        names = topo.names
        # A daemon that left its session: not a process we started, still inside the namespace.
        script = "setsid sleep 30 >/dev/null 2>&1 & echo $!"
        shell = topo.popen("server", ["sh", "-c", script], stdout=subprocess.PIPE, text=True)
        stray = int(shell.communicate(timeout=5)[0])
    assert not os.path.exists(f"/proc/{stray}") or open(f"/proc/{stray}/stat").read().split()[2] == "Z"
    assert not set(names) & namespaces()
    assert not any(n in os.listdir(NETNS_DIR) for n in names)
