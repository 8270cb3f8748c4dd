"""Files that hold secrets (private keys, TLS key logs) are created owner-only from the start.

Creating with ``open()`` and tightening later leaves a window where the secret is world-readable
under the usual umask 022; ``os.open`` with mode 0o600 never has that window.
"""

from __future__ import annotations

import os
from pathlib import Path


def create_private_file(path: str | os.PathLike[str], data: bytes = b"", *, append: bool = False) -> Path:
    """Create (or truncate, or append to) ``path`` with mode 0600 and write ``data``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)
    return Path(path)


def append_line(path: str | os.PathLike[str], line: bytes) -> None:
    """Append one line to an owner-only file (a key log), creating it 0600 if needed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)
