"""Which captured packets belong to the connections a run opened.

Both the kernel engine (its shim sees every packet between the namespaces) and ``probe`` (its
capture filter passes all of the server's traffic) keep only their own: a connection is known by
its IP protocol and client port, as a UDP port may be one an earlier QUIC connection used and a
TCP port one of an earlier run still closing (a server FIN resent under loss).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from handshake.trace.packet import PacketError, decode

IP_PROTOCOL: Final = {"tcp": 6, "quic": 17}
"""The IP protocol number a connection of each transport runs over."""


def of_connections(packets: Iterable[tuple[float, bytes]],
                   opened: set[tuple[int, int]]) -> list[tuple[float, bytes]]:
    """The (time, IP packet) pairs of the connections ``opened`` ((IP protocol, client port)
    pairs), in order. A packet that does not decode, or carries neither TCP nor UDP, is kept, so
    nothing odd is hidden from the analysis that reads them."""
    own = []
    for time_s, data in packets:
        try:
            ip = decode(data)
        except PacketError:
            own.append((time_s, data))
            continue
        transport = ip.transport
        if isinstance(transport, bytes) or (ip.proto, transport.sport) in opened \
                or (ip.proto, transport.dport) in opened:
            own.append((time_s, data))
    return own
