"""``handshake shim``: run a command behind the shim, as Mahimahi's shells run theirs.

``handshake shim --rtt 100ms [--server 'CMD'] -- CMD [ARGS...]`` builds the topology, starts
the server command (a shell string) in the server namespace and waits until something listens
there, runs CMD in the client namespace, tears everything down and exits with CMD's status.
Both commands find the addresses in HANDSHAKE_SERVER_ADDR (198.19.0.1) and
HANDSHAKE_CLIENT_ADDR (198.18.0.1), and the namespace names in HANDSHAKE_SERVER_NS and
HANDSHAKE_CLIENT_NS (for ``ip netns exec`` from another terminal).

Readiness: the server counts as up once its namespace has a TCP listener or a bound UDP socket
(read from ``/proc/thread-self/net/{tcp,udp}{,6}`` inside it, what ``ss -ltnu`` shows). A fresh
namespace has neither, so the first one is the server's. It gets SERVER_READY_TIMEOUT_S.

CMD runs in handshake's process group, so the terminal's Ctrl-C reaches it (and an interactive
shell works); the server runs in a session of its own, with stdin from /dev/null, and is killed
as a group at the end.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from handshake.errors import UsageError
from handshake.kernel import cleanup
from handshake.kernel.privileges import check_privileges
from handshake.kernel.topology import Topology
from handshake.net.link import LinkConfig

__all__ = ["SERVER_READY_TIMEOUT_S", "run_shim", "run_cleanup"]

SERVER_READY_TIMEOUT_S = 10.0
_POLL_S = 0.01


def _wait_until_listening(topo: Topology, server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not topo.listening("server"):
        status = server.poll()
        if status is not None:
            raise UsageError(f"the server command exited with status {status} before it listened")
        if time.monotonic() > deadline:
            raise UsageError(f"the server command did not listen within {timeout_s:g} s")
        time.sleep(_POLL_S)


def _exit_status(returncode: int) -> int:
    """Popen's -N for death by signal N becomes the shell's 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run_shim(
    link: LinkConfig,
    argv: Sequence[str],
    *,
    server: str | None = None,
    capture: str | os.PathLike | None = None,
    ready_timeout_s: float = SERVER_READY_TIMEOUT_S,
) -> int:
    """Run ``argv`` in the client namespace behind ``link``; return its exit status."""
    with Topology(link, capture=capture, purpose="handshake shim") as topo:
        if server is not None:
            server_process = topo.popen("server", ["/bin/sh", "-c", server], stdin=subprocess.DEVNULL)
            _wait_until_listening(topo, server_process, ready_timeout_s)
        try:
            client = topo.popen("client", list(argv), own_group=False)
        except OSError as error:
            raise UsageError(f"cannot run {argv[0]}: {error.strerror or error}") from None
        return _exit_status(client.wait())


def run_cleanup() -> list[str]:
    """Remove the namespaces (and processes inside) of runs that no longer exist."""
    check_privileges("handshake shim --cleanup")
    return cleanup.reap_leftovers()
