"""Packet traces: IP/TCP/UDP bytes in and out (``packet``), capture files (``pcap``).

Both engines build packets with ``packet``; reading a user's capture goes through ``pcap``
then ``packet.decode``, so every trace reaches the analysis in the same model.
"""

from handshake.trace.packet import (
    IpPacket,
    PacketError,
    TcpSegment,
    UdpDatagram,
    decode,
    encode,
    tcp_packet,
    udp_packet,
)
from handshake.trace.pcap import (
    CaptureError,
    CapturedFrame,
    PcapWriter,
    TruncatedCapture,
    UnsupportedLinkType,
    ip_payload,
    iter_capture,
)

__all__ = [
    "IpPacket", "PacketError", "TcpSegment", "UdpDatagram", "decode", "encode", "tcp_packet",
    "udp_packet", "CaptureError", "CapturedFrame", "PcapWriter", "TruncatedCapture",
    "UnsupportedLinkType", "ip_payload", "iter_capture",
]
