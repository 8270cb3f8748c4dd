"""`handshake shim`: runs a command behind the shim, returns its status, and cleans up after
itself -- and after runs that could not (SIGKILL)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handshake.cli import main
from handshake.kernel import Topology, privileges
from handshake.kernel.cleanup import owner_of, pids_in
from handshake.kernel.netns import Namespace
from handshake.net.link import LinkConfig

from .conftest import namespaces

REPO = Path(__file__).resolve().parents[2]

SERVER = (
    "python3 -c 'import os, socket; s = socket.socket(); "
    "s.bind((os.environ[\"HANDSHAKE_SERVER_ADDR\"], 8080)); s.listen(); c, _ = s.accept(); "
    "c.sendall(c.recv(100).upper())'"
)
CLIENT = (
    "import os, socket, sys, time\n"
    "s = socket.socket(); s.bind((os.environ['HANDSHAKE_CLIENT_ADDR'], 0))\n"
    "started = time.monotonic(); s.connect((os.environ['HANDSHAKE_SERVER_ADDR'], 8080))\n"
    "print(round((time.monotonic() - started) * 1e3)); s.sendall(b'hello'); print(s.recv(100).decode())\n"
    "sys.exit(3)\n"
)


def handshake(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "handshake", *args], cwd=REPO, text=True, **kwargs)


def test_shim_runs_the_client_against_the_server_and_returns_its_status():
    run = handshake("shim", "--rtt", "50ms", "--server", SERVER, "--", "python3", "-c", CLIENT,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 3, err
    connect_ms, reply = out.split()
    assert 50 <= int(connect_ms) < 60
    assert reply == "HELLO"


def test_a_server_listening_on_every_address_is_seen_listening():
    """``openssl s_server -accept 4433`` (the README's example) binds [::]:4433, which is in the
    IPv6 socket table and takes IPv4 connections too: the shim must wait for it, not time out."""
    dual_stack = (
        "python3 -c 'import socket; s = socket.socket(socket.AF_INET6); "
        "s.bind((\"::\", 8080)); s.listen(); c, _ = s.accept(); c.sendall(c.recv(100).upper())'"
    )
    run = handshake("shim", "--rtt", "20ms", "--server", dual_stack, "--", "python3", "-c", CLIENT,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 3, err
    assert out.split()[1] == "HELLO"


def test_without_privileges_shim_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(privileges, "_effective_capabilities", lambda: 0)
    assert main(["shim", "--rtt", "10ms", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err == "handshake: error: handshake shim needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)" \
                  " to create network namespaces\n"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_a_process_without_capabilities_is_refused():
    run = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all",
                          sys.executable, "-m", "handshake", "shim", "--", "true"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "needs root" in run.stderr


def test_usage_errors_are_one_line():
    assert main(["shim", "--rtt", "10ms"]) == 2  # no command
    assert main(["shim", "--cleanup", "--", "true"]) == 2
    assert main(["shim", "--rtt", "10ms", "--", "/nonexistent/command"]) == 2
    assert main(["shim", "--capture", "/nonexistent/dir/x.pcap", "--", "true"]) == 2


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def started_run(*command: str) -> tuple[subprocess.Popen, list[str]]:
    """`handshake shim --rtt 10ms -- COMMAND`, once its namespaces and client process exist."""
    run = handshake("shim", "--rtt", "10ms", "--", *command, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = sorted(n for n in namespaces() if (o := owner_of(n)) is not None and o.pid == run.pid)
        if len(names) == 2 and pids_in(Namespace.open(names[0]).identity):
            return run, names
        time.sleep(0.02)
    run.kill()
    raise AssertionError("the run never got its namespaces up")


@pytest.mark.parametrize("reaper", ["next-run", "cleanup-flag"])
def test_a_sigkilled_run_leaves_namespaces_that_are_reaped(reaper, capsys):
    run, names = started_run("sleep", "30")
    client_pids = pids_in(Namespace.open(names[0]).identity)
    shim_pids = set(children(run.pid)) - set(client_pids)
    assert len(shim_pids) == 1
    run.kill()
    run.wait()
    assert set(names) <= namespaces()  # SIGKILL: nothing could clean up
    assert all(alive(pid) for pid in client_pids)  # the sleep lives on
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in shim_pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(alive(pid) for pid in shim_pids)  # the shim process saw its owner go
    if reaper == "next-run":
        with Topology(LinkConfig()):
            assert not set(names) & namespaces()
    else:
        assert main(["shim", "--cleanup"]) == 0
        assert capsys.readouterr().out.startswith("removed ")  # (a run going on at once may reap first)
    assert not set(names) & namespaces()
    time.sleep(0.05)
    assert not any(alive(pid) for pid in client_pids)


def test_a_sigkilled_run_not_yet_waited_for_is_reaped_by_the_first_cleanup(capsys):
    """Issue 15: killed, its owner is a zombie until its parent waits, and a zombie's PID still
    answers in /proc. The first --cleanup at once must take its namespaces all the same."""
    run, names = started_run("sleep", "30")
    client_pids = pids_in(Namespace.open(names[0]).identity)
    run.kill()
    deadline = time.monotonic() + 2
    while alive(run.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert os.path.exists(f"/proc/{run.pid}") and not alive(run.pid)  # a zombie: not waited for
    try:
        assert main(["shim", "--cleanup"]) == 0
        assert not set(names) & namespaces(), capsys.readouterr().out
        time.sleep(0.05)
        assert not any(alive(pid) for pid in client_pids)
    finally:
        run.wait()


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_a_signal_during_a_run_cleans_up(signum, status):
    run, names = started_run("sleep", "30")
    client_pids = pids_in(Namespace.open(names[0]).identity)
    if signum == signal.SIGINT:
        os.killpg(run.pid, signum)  # the terminal sends Ctrl-C to the whole foreground group
    else:
        run.send_signal(signum)
    assert run.wait(10) == status
    assert not set(names) & namespaces()
    assert not any(alive(pid) for pid in client_pids)
