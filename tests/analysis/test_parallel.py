"""Sharding connections over processes: both directions of a connection in one shard, and the
connections spread over the shards."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from handshake.analysis.parallel import shard_of
from handshake.trace.packet import ACK, tcp_packet, udp_packet

V4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
V6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
PORT = st.integers(0, 65535)


@given(addresses=st.one_of(st.tuples(V4, V4), st.tuples(V6, V6)), ports=st.tuples(PORT, PORT),
       udp=st.booleans(), shards=st.integers(1, 16))
def test_both_directions_of_a_connection_go_to_the_same_shard(addresses, ports, udp, shards):
    (a, b), (pa, pb) = addresses, ports
    make = (lambda s, d, sp, dp: udp_packet(s, d, sp, dp, b"x")) if udp else (
        lambda s, d, sp, dp: tcp_packet(s, d, sp, dp, 1, 2, ACK, b"x"))
    there, back = make(a, b, pa, pb), make(b, a, pb, pa)
    shard = shard_of(there, shards)
    assert 0 <= shard < shards
    assert shard_of(back, shards) == shard


def test_connections_spread_over_the_shards_even_with_even_ports_only():
    """Linux gives connect() even ports: a shard key that kept the low bits would put every
    connection from one client to one server in one shard."""
    for shards in (2, 3, 4):
        counts = [0] * shards
        for port in range(32768, 32768 + 2000, 2):
            counts[shard_of(tcp_packet("198.18.0.1", "198.19.0.1", port, 443, 1, 0, ACK), shards)] += 1
        assert min(counts) > 0.8 * 1000 / shards, counts


def test_anything_that_is_not_ip_goes_to_the_first_shard():
    assert shard_of(b"", 4) == 0
    assert shard_of(b"\x45\x00", 4) == 0  # an IPv4 header cut short
    assert shard_of(b"\x00" * 60, 4) == 0  # no IP version
