"""One real connection to the probed server: the project's own client endpoint over a real socket.

A TCP connection: a socket (bound to ``--interface`` first when given), TCP_NODELAY, with TFO
by Linux's ``TCP_FASTOPEN_CONNECT`` (the first send rides in the SYN when a cookie for the server
is cached, and asks for one otherwise), driven by ``socket_loop`` until the response is in, then
TCP_INFO is read, the session kept, and the client closes as browsers do: TLS close_notify, FIN,
and reading on until the server's FIN. A QUIC connection: a UDP socket and aioquic, closed with
CONNECTION_CLOSE once the response (and, for a warm-up, the ticket) is in.

What the client saw is kept (``Connection``): when the request left and the first response byte
came in, what the handshake settled, and what TCP_INFO says of TFO -- the basis of the counts
when no capture can be taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Final

from handshake.endpoints._base import TlsError
from handshake.endpoints.events import HandshakeCompleted, ResponseReceived
from handshake.socket_loop import TCP_FASTOPEN_CONNECT, SocketLoop, TcpChannel, UdpChannel

from .target import Target

__all__ = ["Connection", "tcp_connection", "quic_connection", "ProbeSocketError", "TFO_NO_COOKIE",
           "tfo_failure_reason"]

CLOSE_LIMIT_S: Final = 2.0
"""How long the close (and tickets after the response) may take."""
TICKET_LIMIT_S: Final = 2.0
"""QUIC: how long a warm-up waits after the response for the server's ticket."""
QUIC_ANSWER_S: Final = 3.0
"""QUIC: how long to wait for the server's first datagram before calling the port silent
(aioquic's own handshake timeout is the 60 s idle timeout)."""

# struct tcp_info (linux/tcp.h): the fields read here, by byte offset.
_TCP_INFO_BYTES: Final = 152
_TCPI_OPTIONS: Final = 5
_TCPI_FASTOPEN_FAIL: Final = 7
"""Byte holding delivery_rate_app_limited:1 then fastopen_client_fail:2 (Linux 5.5+)."""
_TCPI_MIN_RTT: Final = 148
TCPI_OPT_SYN_DATA: Final = 32
TFO_NO_COOKIE: Final = 1
_TFO_FAILURES: Final = {
    TFO_NO_COOKIE: "no cookie for this server: it granted none",
    2: "the server did not acknowledge the data in the SYN",
    3: "the SYN with data was retransmitted (something on the path drops TFO SYNs)",
}


class ProbeSocketError(OSError):
    """A socket could not be made where the probe was told to make it (``--interface``)."""


@dataclass
class Connection:
    """One connection the probe made, as its client saw it."""

    role: str
    """"warm-up" or "measured"."""
    transport: str
    client_port: int
    started_at: float
    """Monotonic time just before connect (TCP) or the first Initial (QUIC)."""
    connected_s: float | None = None
    """TCP without data in the SYN: connect() took this long (the SYN-ACK's round trip)."""
    request_ready_s: float | None = None
    """When the client could send its request: the read that completed the handshake (or the
    connect, for a request ready at the start), before the client's own computation."""
    request_left_s: float | None = None
    first_byte_s: float | None = None
    handshake: HandshakeCompleted | None = None
    response: ResponseReceived | None = None
    alpn: str | None = None
    tfo_data_acked: bool | None = None
    """TCP_INFO: the server acknowledged data sent in the SYN."""
    tfo_failure: int = 0
    """TCP_INFO's fastopen_client_fail (Linux 5.5+): 0, or why TFO did not carry the data."""
    min_rtt_s: float | None = None
    """The kernel's (TCP_INFO tcpi_min_rtt) or aioquic's minimum RTT sample."""
    error: str | None = None
    silent: bool = False
    """QUIC: not one datagram came back."""
    ticket: Any = None
    """What a next connection resumes with: ssl.SSLSession, EarlySession or SessionTicket."""


def tfo_failure_reason(code: int) -> str:
    return _TFO_FAILURES.get(code, "the data in the SYN was not acknowledged")


def _client_socket(target: Target, kind: int) -> socket.socket:
    sock = socket.socket(target.family, kind)
    if target.local_address is not None:
        try:
            sock.bind((target.local_address, 0))
        except OSError as error:
            sock.close()
            raise ProbeSocketError(error.errno, f"cannot bind to --interface {target.local_address}: "
                                                f"{error.strerror}") from None
    return sock


def _tcp_info(sock: socket.socket) -> tuple[bool, int, float | None]:
    """(data in the SYN acknowledged, fastopen_client_fail, min RTT in s) from TCP_INFO."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return False, 0, None
    acked = bool(info[_TCPI_OPTIONS] & TCPI_OPT_SYN_DATA)
    failure = (info[_TCPI_FASTOPEN_FAIL] >> 1) & 0x3 if len(info) > _TCPI_FASTOPEN_FAIL else 0
    min_rtt = None
    if len(info) >= _TCPI_MIN_RTT + 4:
        (microseconds,) = struct.unpack_from("=I", info, _TCPI_MIN_RTT)
        min_rtt = microseconds / 1e6 if microseconds and microseconds != 0xFFFFFFFF else None
    return acked, failure, min_rtt


def _settle(connection: Connection, times: Any, events: list, connected_at: float | None = None) -> None:
    start = connection.started_at
    if times.request_ready_at is not None:
        connection.request_ready_s = max(times.request_ready_at, connected_at or start) - start
    if times.request_left_at is not None:
        connection.request_left_s = times.request_left_at - start
    if times.first_byte_at is not None:
        connection.first_byte_s = times.first_byte_at - start
    connection.handshake = next((e for e in events if isinstance(e, HandshakeCompleted)), None)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def tcp_connection(target: Target, endpoint: Any, *, tfo: bool, role: str, limit_s: float) -> Connection:
    """Connect, fetch, read TCP_INFO, close. Errors are the connection's ``error``, one line."""
    sock = _client_socket(target, socket.SOCK_STREAM)
    loop = SocketLoop()
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tfo:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        sock.setblocking(False)
        started = time.monotonic()
        status = sock.connect_ex(target.endpoint())  # TFO: 0, the SYN waits for the first send
        connection = Connection(role, "tcp", sock.getsockname()[1], started)
        if status not in (0, errno.EINPROGRESS):
            connection.error = f"connect: {os.strerror(status)}"
            return connection
        channel = TcpChannel(sock, endpoint, server=False, connecting=status != 0)
        loop.add(channel)
        try:
            channel.start(time.monotonic())
            done = loop.run(lambda: channel.response is not None or channel.peer_closed, limit_s)
            if channel.response is None:
                connection.error = ("the server closed the connection before the response" if done
                                    else f"no response in {limit_s:g} s")
        except (OSError, TlsError, ValueError) as error:  # refused, reset, TLS alert, bad HTTP
            connection.error = _one_line(error)
        if channel.connected_at is not None:
            connection.connected_s = channel.connected_at - started
        connection.response = channel.response
        _settle(connection, channel.times, channel.events, channel.connected_at)
        connection.alpn = getattr(endpoint, "alpn", None)
        connection.tfo_data_acked, connection.tfo_failure, connection.min_rtt_s = _tcp_info(sock)
        if connection.error is None:
            connection.ticket = getattr(endpoint, "session", None)  # before the close, which frees the TLS state
            with contextlib.suppress(OSError, TlsError, ValueError):
                channel.close_write(goodbye=True)
                loop.run(lambda: channel.closed, CLOSE_LIMIT_S)
        return connection
    finally:
        loop.close()
        sock.close()
        with contextlib.suppress(Exception):
            endpoint.close()


def quic_connection(target: Target, client: Any, *, role: str, limit_s: float, want_ticket: bool) -> Connection:
    """One QUIC connection: fetch, wait for the ticket if asked, CONNECTION_CLOSE."""
    sock = _client_socket(target, socket.SOCK_DGRAM)
    loop = SocketLoop()
    try:
        sock.setblocking(False)
        sock.connect(client.server_addr)  # only the server's datagrams, and its ICMP errors, come in
        connection = Connection(role, "quic", sock.getsockname()[1], time.monotonic())
        channel = UdpChannel(sock, client)
        loop.add(channel)
        try:
            channel.start(time.monotonic())
            answer_s = min(limit_s, QUIC_ANSWER_S)
            if not loop.run(lambda: channel.datagrams_in > 0, answer_s):
                connection.silent = True
                connection.error = f"nothing answered on UDP port {client.server_addr[1]} in {answer_s:g} s"
            elif not loop.run(lambda: client.response is not None, limit_s):
                connection.error = f"no HTTP/3 response in {limit_s:g} s"
            elif want_ticket:
                loop.run(lambda: client.session_ticket is not None, TICKET_LIMIT_S)
        except (OSError, TlsError, ValueError) as error:
            connection.error = _one_line(error)
        connection.response = client.response
        _settle(connection, channel.times, channel.events)
        connection.alpn = "h3" if client.handshake_complete else None
        rtt_min = getattr(getattr(client.quic, "_loss", None), "_rtt_min", None)
        connection.min_rtt_s = rtt_min if rtt_min not in (None, float("inf")) else None
        connection.ticket = client.session_ticket
        with contextlib.suppress(Exception):
            client.close()
            channel.flush(time.monotonic())
        return connection
    finally:
        loop.close()
        sock.close()
