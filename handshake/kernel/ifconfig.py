"""Interface setup inside a namespace through the classic ioctls, without running ``ip``.

Up/down, IPv4 address and netmask, transmit queue length and a device route: each is one
``ioctl`` on a datagram socket of the calling thread's namespace (netdevice(7), route(4)'s
``SIOCADDRT``), about 10 µs each where an ``ip`` process costs about 3 ms. The socket only
carries ioctls, never a packet, and is still made only after ``ensure_in``.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import socket
import struct

from handshake.kernel.netns import Namespace, ensure_in

__all__ = ["Interfaces"]

_SIOCADDRT = 0x890B
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_SIOCSIFADDR = 0x8916
_SIOCSIFNETMASK = 0x891C
_SIOCSIFTXQLEN = 0x8943
_IFF_UP = 0x1
_RTF_UP = 0x0001
_IFREQ_SIZE = 40


def _sockaddr_in(address: str) -> bytes:
    """struct sockaddr_in, 16 bytes: family (host order), port 0, address, zero padding."""
    return struct.pack("=H2s4s8x", socket.AF_INET, b"\0\0", socket.inet_aton(address))


_Sockaddr = ctypes.c_ubyte * 16  # bytes, not c_char: a c_char array stops copying at a NUL


class _RtEntry(ctypes.Structure):
    """struct rtentry from <net/route.h>; ctypes lays out the padding as the C compiler does."""

    _fields_ = [
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", _Sockaddr),
        ("rt_gateway", _Sockaddr),
        ("rt_genmask", _Sockaddr),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


class Interfaces:
    """Configure the interfaces of one namespace; use inside it (``with Interfaces(ns) as i:``)."""

    def __init__(self, namespace: Namespace) -> None:
        ensure_in(namespace)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def __enter__(self) -> Interfaces:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sock.close()

    def _ioctl(self, request: int, name: str, payload: bytes = b"") -> bytes:
        ifreq = (name.encode().ljust(16, b"\0") + payload).ljust(_IFREQ_SIZE, b"\0")
        return fcntl.ioctl(self._sock.fileno(), request, ifreq)

    def up(self, name: str) -> None:
        """Set IFF_UP (``ip link set NAME up``)."""
        (flags,) = struct.unpack_from("=H", self._ioctl(_SIOCGIFFLAGS, name), 16)
        self._ioctl(_SIOCSIFFLAGS, name, struct.pack("=H", flags | _IFF_UP))

    def set_address(self, name: str, interface: str) -> None:
        """Give ``name`` an address with its prefix, ``198.18.0.1/16`` (``ip addr add``).

        The kernel adds the connected route for the prefix itself.
        """
        iface = ipaddress.IPv4Interface(interface)
        self._ioctl(_SIOCSIFADDR, name, _sockaddr_in(str(iface.ip)))
        self._ioctl(_SIOCSIFNETMASK, name, _sockaddr_in(str(iface.netmask)))

    def set_txqueuelen(self, name: str, packets: int) -> None:
        """Transmit queue length (``ip link set NAME txqueuelen N``): a TUN's queue is what
        holds packets until the shim reads them; the default 500 drops under load."""
        self._ioctl(_SIOCSIFTXQLEN, name, struct.pack("=i", packets))

    def add_route(self, network: str, name: str) -> None:
        """A device route with no gateway (``ip route add 198.19.0.0/16 dev NAME``)."""
        net = ipaddress.IPv4Network(network)
        entry = _RtEntry()
        entry.rt_dst = _Sockaddr.from_buffer_copy(_sockaddr_in(str(net.network_address)))
        entry.rt_genmask = _Sockaddr.from_buffer_copy(_sockaddr_in(str(net.netmask)))
        entry.rt_flags = _RTF_UP
        entry.rt_dev = name.encode()  # kept alive by ``entry`` while the ioctl reads it
        fcntl.ioctl(self._sock.fileno(), _SIOCADDRT, bytes(entry))
