"""A forward proxy for the real-peer tests (``python3 forward_proxy.py connect|socks5 ADDR PORT``):
HTTP CONNECT (RFC 9110 §9.3.6) or SOCKS5 without authentication (RFC 1928), then bytes copied
both ways. Run in the server namespace, it stands for the corporate proxy in front of a client: its
own round trips are on the path the capture sees, the TLS session runs inside its tunnel.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def log(line: str) -> None:
    sys.stderr.write(f"{time.monotonic():.6f} {line}\n")
    sys.stderr.flush()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def tunnel(client: tuple[asyncio.StreamReader, asyncio.StreamWriter], host: str, port: int,
                 reply: bytes) -> None:
    """Connect to host:port, send the client ``reply``, then copy until both sides are done."""
    upstream = await asyncio.open_connection(host, port)
    client[1].write(reply)
    await client[1].drain()
    await asyncio.gather(pipe(client[0], upstream[1]), pipe(upstream[0], client[1]))
    upstream[1].close()


async def http_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if method != b"CONNECT":
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        return
    host, _, port = target.decode().rpartition(":")
    log(f"CONNECT {host}:{port}")
    await tunnel((reader, writer), host.strip("[]"), int(port), ESTABLISHED)


async def socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    version, count = await reader.readexactly(2)
    methods = await reader.readexactly(count)
    if version != 5 or 0 not in methods:
        writer.write(b"\x05\xff")
        return
    writer.write(b"\x05\x00")  # no authentication required
    _, command, _, atyp = await reader.readexactly(4)
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
    else:
        host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
    (port,) = struct.unpack(">H", await reader.readexactly(2))
    if command != 1:
        writer.write(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
        return
    log(f"SOCKS5 CONNECT {host}:{port}")
    bound = socket.inet_aton(writer.get_extra_info("sockname")[0])
    await tunnel((reader, writer), host, port, b"\x05\x00\x00\x01" + bound + struct.pack(">H", 0))


async def main(mode: str, address: str, port: int) -> None:
    handler = http_connect if mode == "connect" else socks5

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as exc:
            log(f"dropped: {exc!r}")
        finally:
            writer.close()

    server = await asyncio.start_server(serve, address, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
