"""TUN devices: a file descriptor that reads and writes raw IP packets of one interface.

``open("/dev/net/tun")`` then ``TUNSETIFF`` with ``IFF_TUN | IFF_NO_PI`` creates a layer-3
device whose reads are whole IP packets with no 4-byte packet-information header (so each one is
a LINKTYPE_RAW pcap record as it is). The device belongs to the network namespace of the thread
that *opened* ``/dev/net/tun`` and disappears when the descriptor closes (it is not persistent),
so this must run inside the intended namespace (``netns.run_in``), and it checks that it does.
"""

from __future__ import annotations

import fcntl
import os
import struct

from handshake.kernel.netns import Namespace, ensure_in

__all__ = ["TUN_DEVICE", "open_tun"]

TUN_DEVICE = "/dev/net/tun"

_TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFREQ_SIZE = 40  # sizeof(struct ifreq) on Linux/LP64: 16-byte name + 24-byte union


def open_tun(namespace: Namespace, name: str) -> int:
    """Create TUN interface ``name`` in ``namespace`` (the calling thread must be in it).

    Returns a non-blocking, close-on-exec descriptor; the interface is still down and has no
    address (``ifconfig`` brings it up).
    """
    ensure_in(namespace)
    if len(name.encode()) >= 16:
        raise ValueError(f"interface name {name!r} is longer than 15 bytes")
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        request = struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI).ljust(_IFREQ_SIZE, b"\0")
        fcntl.ioctl(fd, _TUNSETIFF, request)
    except BaseException:
        os.close(fd)
        raise
    return fd
