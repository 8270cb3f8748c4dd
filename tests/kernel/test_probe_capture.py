"""The probe's capture on the real kernel, over loopback only: a TCP exchange with 127.0.0.2 (and
::1) is seen once a packet (loopback passes each twice), with kernel timestamps inside the
exchange's own wall-clock window, and a connection to another address is not seen at all."""

from __future__ import annotations

import socket
import time

import pytest

from handshake.probe.capture import PacketCapture
from handshake.trace.packet import decode


def exchange(family: int, address: str) -> int:
    """Connect, send 2 bytes, echo them, close; the number of data-carrying segments is 2."""
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((address, 0))
        server.listen()
        with socket.create_connection(server.getsockname()[:2]) as client:
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"hi")
                accepted.sendall(accepted.recv(2))
                client.recv(2)
        return server.getsockname()[1]


@pytest.mark.parametrize("family, address, other", [(socket.AF_INET, "127.0.0.2", "127.0.0.3"),
                                                    (socket.AF_INET6, "::1", None)])
def test_the_capture_sees_each_packet_of_its_address_once_with_its_time(family, address, other):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    with PacketCapture(address) as capture:
        before = time.time()
        port = exchange(family, address)
        if other is not None:
            exchange(family, other)
        time.sleep(0.05)
        after = time.time()
        packets = capture.take()
        assert capture.unstamped == 0
    decoded = [(t, decode(data)) for t, data in packets]
    assert all(address in (ip.src, ip.dst) for _, ip in decoded)
    ours = [(t, ip) for t, ip in decoded if port in (ip.transport.sport, ip.transport.dport)]
    data_segments = [ip for _, ip in ours if ip.transport.payload]
    assert len(data_segments) == 2, data_segments  # each once, not twice
    syns = [ip for _, ip in ours if ip.transport.flags & 0x02]
    assert len(syns) == 2  # SYN and SYN-ACK
    times = [t for t, _ in ours]
    assert before <= times[0] and times[-1] <= after and times == sorted(times)
