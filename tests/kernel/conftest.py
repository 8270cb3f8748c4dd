"""Kernel tests need root and /dev/net/tun (CI has both); each must leave the host as it was."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from handshake.kernel import KernelUnavailable, check_privileges
from handshake.kernel.cleanup import owner_of
from handshake.kernel.netns import NETNS_DIR

try:
    check_privileges("the kernel tests")
except KernelUnavailable as reason:
    pytest.skip(str(reason), allow_module_level=True)


def namespaces() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def host_network() -> tuple:
    """The host namespace's links, addresses and routes (the test runs in the host namespace)."""
    links = sorted(name for _, name in socket.if_nameindex())
    addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    return links, addrs, routes


@pytest.fixture(autouse=True)
def leaves_nothing_behind():
    """After each test: no namespace of this process remains, and the host is untouched.

    (Tests that start `handshake shim` processes check those runs' namespaces themselves; other
    namespaces may belong to runs going on at the same time.)
    """
    before, host_before = namespaces(), host_network()
    yield
    new = namespaces() - before
    ours = {n for n in new if (owner := owner_of(n)) is not None and owner.pid == os.getpid()}
    assert not ours, f"left behind: {sorted(ours)}"
    assert host_network() == host_before
