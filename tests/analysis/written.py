"""Captures written by hand for the tests: a TCP conversation's packets from what each side
sent, with sequence numbers and ACKs as a real stack sets them."""

from __future__ import annotations

from handshake.trace.packet import ACK, PSH, SYN, tcp_packet

CLIENT = ("10.0.0.1", 50000)
SERVER = ("10.0.0.2", 443)
RTT_S = 0.1


def tcp_conversation(sends: list[tuple[bool, bytes]], *, handshake: bool = True, client_isn: int = 1000,
                     server_isn: int = 5000, rtt: float = RTT_S, mss: int = 1400) -> list[tuple[float, bytes]]:
    """(time, IP packet) pairs: the three-way handshake (if ``handshake``), then each
    (from_client, bytes) in turn, half an RTT after the previous send, cut in ``mss`` segments,
    each acknowledging all the other side sent before it."""
    packets: list[tuple[float, bytes]] = []
    seq = {True: client_isn + 1, False: server_isn + 1}
    time = 0.0

    def emit(from_client: bool, flags: int, payload: bytes = b"", syn_seq: int | None = None) -> None:
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        number = syn_seq if syn_seq is not None else seq[from_client]
        ack = seq[not from_client] if flags & ACK else 0
        packets.append((time, tcp_packet(src[0], dst[0], src[1], dst[1], number, ack, flags, payload)))

    if handshake:
        emit(True, SYN, syn_seq=client_isn)
        time += rtt / 2
        emit(False, SYN | ACK, syn_seq=server_isn)
        time += rtt / 2
        emit(True, ACK)
    for from_client, data in sends:
        for start in range(0, len(data), mss):
            part = data[start:start + mss]
            emit(from_client, ACK | PSH, part)
            seq[from_client] += len(part)
        time += rtt / 2
    return packets
