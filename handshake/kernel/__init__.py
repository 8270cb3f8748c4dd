"""The kernel engine's network: two namespaces joined by a userspace TUN delay shim.

Real sockets in a client and a server namespace; every packet between them passes a forwarder
that applies the link model (``handshake.net.link``) on the monotonic clock, as Mahimahi's
``mm-delay`` does with a fixed delay. Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) and
/dev/net/tun; ``check_privileges`` says what is missing in one line.

    from handshake.kernel import SERVER_ADDR, Topology
    with Topology(LinkConfig.from_rtt(0.1), keep_packets=True, drop=hook) as topo:
        listener = topo.server_socket(port=443); listener.listen()
        conn = topo.client_socket(); conn.connect((SERVER_ADDR, 443))
        ...
        packets = topo.shim.take_packets()   # [(monotonic_s, ip_bytes)]: the client's view
        topo.shim.set_link(other_link)       # the next variant, same namespaces

Modules: ``netns`` (namespaces, setns, the wrong-namespace guard), ``tun`` (TUN descriptors),
``ifconfig`` (addresses and routes by ioctl), ``forwarder`` (the packet loop), ``shim`` (that
loop in a forked process or a thread), ``topology`` (the pair and its lifecycle), ``cleanup``
(leftovers of killed runs), ``signals`` (SIGTERM becomes cleanup), ``privileges``, ``command``
(``handshake shim``).
"""

from handshake.kernel.netns import (
    Namespace, WrongNamespace, current_identity, ensure_in, in_namespace, run_in,
)
from handshake.kernel.privileges import KernelUnavailable, check_privileges
from handshake.kernel.shim import DropHook, Shim, ShimFailed, ShimProcess, ShimStats, ShimThread
from handshake.kernel.signals import Terminated
from handshake.kernel.topology import (
    CLIENT_ADDR, CLIENT_NET, SERVER_ADDR, SERVER_NET, Side, Topology, bound_socket,
)
from handshake.kernel.cleanup import reap_leftovers

__all__ = [
    "CLIENT_ADDR", "CLIENT_NET", "SERVER_ADDR", "SERVER_NET",
    "Topology", "Side", "Shim", "ShimProcess", "ShimThread", "ShimStats", "ShimFailed", "DropHook",
    "Namespace", "WrongNamespace", "current_identity", "ensure_in", "in_namespace", "run_in",
    "bound_socket", "KernelUnavailable", "check_privileges", "Terminated", "reap_leftovers",
]
