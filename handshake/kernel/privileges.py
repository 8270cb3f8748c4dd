"""Can this process build the kernel engine's namespaces? Checked first, answered in one line."""

from __future__ import annotations

import os
import shutil

from handshake.errors import UsageError
from handshake.kernel.tun import TUN_DEVICE

__all__ = ["KernelUnavailable", "check_privileges"]

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21  # unshare(CLONE_NEWNET) and the bind mount under /run/netns need it


class KernelUnavailable(UsageError):
    """The kernel engine cannot run here (no privileges, no TUN, no iproute2)."""


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges(what: str = "the kernel engine") -> None:
    """Raise KernelUnavailable naming the first missing piece: capabilities, TUN, ``ip``."""
    caps = _effective_capabilities()
    if not (caps >> _CAP_NET_ADMIN & 1 and caps >> _CAP_SYS_ADMIN & 1):
        raise KernelUnavailable(
            f"{what} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces"
        )
    if not os.path.exists(TUN_DEVICE):
        raise KernelUnavailable(f"{what} needs {TUN_DEVICE} (load the tun module: modprobe tun)")
    if not os.access(TUN_DEVICE, os.R_OK | os.W_OK):
        raise KernelUnavailable(f"{what} cannot open {TUN_DEVICE} for reading and writing")
    if shutil.which("ip") is None:
        raise KernelUnavailable(f"{what} needs the ip command from iproute2")
