"""The probe's own packets, captured as it makes them: AF_PACKET with a kernel filter.

A cooked (``SOCK_DGRAM``) packet socket on every interface hands over IP packets with no link
header, each with the kernel's receive or transmit timestamp (``SO_TIMESTAMPING``). A classic BPF
program attached to it keeps only packets to or from the server's address, so the rest of the
machine's traffic never reaches this process; the probe then keeps those of the client ports it
opened. On the loopback interface every packet passes twice (out, then in): the outgoing copy is
skipped. Opening one needs CAP_NET_RAW; without it the probe says its counts are inferred.

Why SO_TIMESTAMPING and not SO_TIMESTAMPNS: the kernel stamps packets only once some socket has
asked it to, and turns that on from a work queue, a moment after ``setsockopt``. A packet that
passed before has no stamp, and SO_TIMESTAMPNS then reports the time it was *read* -- seconds
late, at the end of a run (seen: a SYN 3 s after its SYN-ACK, on a CI machine). SO_TIMESTAMPING
reports no time for it instead, so ``take`` can count such packets (``unstamped``), and the
probe makes that run again; it also waits for the stamps to begin before its first connection.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
import time
from typing import Final

__all__ = ["PacketCapture", "CaptureUnavailable", "address_filter"]

ETH_P_ALL: Final = 0x0003
SO_ATTACH_FILTER: Final = 26
SO_TIMESTAMPING: Final = 37
SOF_TIMESTAMPING_RX_SOFTWARE: Final = 1 << 3
SOF_TIMESTAMPING_SOFTWARE: Final = 1 << 4
STAMPS_BEGIN_S: Final = 0.05
"""How long to give the kernel to begin stamping (its work queue runs within a millisecond or two)."""
SO_RCVBUFFORCE: Final = 33
PACKET_OUTGOING: Final = 4
ARPHRD_LOOPBACK: Final = 772
SNAP_BYTES: Final = 262144
"""Whole packets, GRO-merged ones too."""
RECEIVE_BUFFER_BYTES: Final = 16 << 20

# Classic BPF opcodes (linux/filter.h).
_LDB_ABS, _LDW_ABS, _RSH_K, _JEQ_K, _RET_K = 0x30, 0x20, 0x74, 0x15, 0x06


class CaptureUnavailable(RuntimeError):
    """No packet socket: the process lacks CAP_NET_RAW (or the kernel has no AF_PACKET)."""


def address_filter(address: str) -> list[tuple[int, int, int, int]]:
    """A BPF program (code, jt, jf, k) accepting IP packets from or to ``address``.

    Offsets count from the IP header, which is where a cooked packet socket's data begins."""
    ip = ipaddress.ip_address(address)
    words = [int.from_bytes(ip.packed[i:i + 4], "big") for i in range(0, len(ip.packed), 4)]
    source, destination = (12, 16) if ip.version == 4 else (8, 24)
    program: list[tuple] = [(_LDB_ABS, 0, 0, 0), (_RSH_K, 0, 0, 4), (_JEQ_K, 0, "reject", ip.version)]
    for base, otherwise in ((source, "destination"), (destination, "reject")):
        if base == destination:
            program.append(("label", "destination"))
        for index, word in enumerate(words):
            last = index == len(words) - 1
            program.append((_LDW_ABS, 0, 0, base + 4 * index))
            program.append((_JEQ_K, "accept" if last else 0, otherwise, word))
    program += [("label", "accept"), (_RET_K, 0, 0, SNAP_BYTES), ("label", "reject"), (_RET_K, 0, 0, 0)]
    return _assemble(program)


def _assemble(program: list[tuple]) -> list[tuple[int, int, int, int]]:
    """Resolve label names in jump targets to BPF's offsets (instructions to skip); a
    ``("label", name)`` entry names the instruction after it."""
    labels, code = {}, []
    for instruction in program:
        if instruction[0] == "label":
            labels[instruction[1]] = len(code)
        else:
            code.append(instruction)

    def offset(target: str | int, at: int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return [(op, offset(jt, at), offset(jf, at), k) for at, (op, jt, jf, k) in enumerate(code)]


class PacketCapture:
    """Packets to or from one address, kept by the kernel until ``take`` reads them."""

    def __init__(self, address: str) -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except (PermissionError, OSError) as error:
            raise CaptureUnavailable(f"no packet socket ({error.strerror or error}; it needs CAP_NET_RAW)") from None
        self._sock = sock
        try:
            self._attach(address_filter(address))
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE)
            sock.setblocking(False)
            time.sleep(STAMPS_BEGIN_S)
            self.take()  # what passed before the filter was attached is anyone's
            self.unstamped = 0
        except BaseException:
            sock.close()
            raise

    def _attach(self, program: list[tuple[int, int, int, int]]) -> None:
        instructions = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
        buffer = ctypes.create_string_buffer(instructions)
        fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))  # struct sock_fprog
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    unstamped = 0
    """Packets read without a kernel timestamp (see the module docstring), since the last ``take``."""

    def take(self) -> list[tuple[float, bytes]]:
        """Every packet captured since the last call: (wall-clock seconds, IP packet). A packet the
        kernel did not stamp is left out and counted in ``unstamped``."""
        packets: list[tuple[float, bytes]] = []
        self.unstamped = 0
        cmsg_space = socket.CMSG_SPACE(48)
        while True:
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(SNAP_BYTES, cmsg_space)
            except BlockingIOError:
                return packets
            _ifname, _protocol, packet_type, hardware_type = address[:4]
            if packet_type == PACKET_OUTGOING and hardware_type == ARPHRD_LOOPBACK:
                continue
            stamp = next((struct.unpack_from("=qq", value) for level, kind, value in ancillary
                          if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(value) >= 16), None)
            if stamp is None or stamp == (0, 0):  # ts[0], the software stamp: zero where there is none
                self.unstamped += 1
                continue
            packets.append((stamp[0] + stamp[1] / 1e9, data))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> PacketCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
