"""Unsigned integers read out of bytes by indexing.

Compiled (mypyc), ``data[i]`` and the shifts are machine integers, where ``struct.unpack_from``
and ``int.from_bytes`` are generic calls that box their results (and ``int.from_bytes`` wants a
slice first): on ``inspect``'s per-packet path each of those cost several times the read itself.
"""

from __future__ import annotations


def u16(data: bytes, i: int) -> int:
    """Big-endian (network order) 16 bits at ``i``."""
    return (data[i] << 8) | data[i + 1]


def u32(data: bytes, i: int) -> int:
    """Big-endian 32 bits at ``i``."""
    return (data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]


def u32le(data: bytes, i: int) -> int:
    """Little-endian 32 bits at ``i``."""
    return data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)


def uint(data: bytes, start: int, end: int) -> int:
    """Big-endian ``data[start:end]``, any width (the caller checked the bounds)."""
    value = 0
    for i in range(start, end):
        value = (value << 8) | data[i]
    return value
