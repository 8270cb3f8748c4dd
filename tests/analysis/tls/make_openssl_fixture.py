"""Record real TLS 1.3 0-RTT conversations between `openssl s_client` and `openssl s_server`.

The stdlib ssl module cannot send early data, so the 0-RTT tests replay byte streams recorded
once with this script (run by hand: ``python tests/analysis/tls/make_openssl_fixture.py``). Both
programs talk through a small relay on 127.0.0.1 that records each direction's chunks in the
order they arrived; s_client writes the key log. Loopback only: nothing leaves the machine.

Connections recorded (sessions all come from the first one):
- ``full_key_update``: full handshake (ChaCha20-Poly1305), request, response, then the server
  asks for a KeyUpdate and both sides send one more record under the updated keys.
- ``early_data_accepted``: same server, PSK + 0-RTT request, accepted.
- ``early_data_rejected``: another server process (AES-128-GCM, other ticket keys): the PSK is
  unknown there, so the 0-RTT request is rejected and the handshake is full.
- ``early_data_hrr``: a server that only takes P-256 answers the X25519 key share with a
  HelloRetryRequest, which rejects the 0-RTT request too.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "tls13_openssl_0rtt.json"
REQUEST = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
LOOPBACK = "127.0.0.1"


def _relay(listener: socket.socket, server_port: int, chunks: list[list[str]]) -> None:
    client, _ = listener.accept()
    listener.close()
    server = socket.create_connection((LOOPBACK, server_port))
    peers = {client: ("c2s", server), server: ("s2c", client)}
    readable = {client, server}
    while readable:
        ready, _, _ = select.select(list(readable), [], [], 5)
        if not ready:
            break
        for sock in ready:
            direction, other = peers[sock]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                readable.discard(sock)
                try:
                    other.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            chunks.append([direction, data.hex()])
            try:
                other.sendall(data)
            except OSError:
                pass
    client.close()
    server.close()


def _start_server(workdir: Path, *options: str) -> tuple[subprocess.Popen, int]:
    probe = socket.socket()
    probe.bind((LOOPBACK, 0))
    port = probe.getsockname()[1]
    probe.close()
    command = ["openssl", "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", "cert.pem", "-key", "key.pem"]
    server = subprocess.Popen(
        command + list(options), cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    return server, port


def _connection(workdir: Path, server: subprocess.Popen, port: int, client_options: list[str], steps) -> list[list[str]]:
    chunks: list[list[str]] = []
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(1)
    relay = threading.Thread(target=_relay, args=(listener, port, chunks))
    relay.start()
    command = ["openssl", "s_client", "-connect", f"{LOOPBACK}:{listener.getsockname()[1]}"]
    command += ["-servername", "example.test", "-keylogfile", "client.keylog", *client_options]
    client = subprocess.Popen(command, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for who, data, delay_s in steps:
        time.sleep(delay_s)
        pipe = client.stdin if who == "client" else server.stdin
        if data is None:
            pipe.close()
        else:
            pipe.write(data)
            pipe.flush()
    client.wait(10)
    relay.join(10)
    return chunks


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        workdir = Path(name)
        subprocess.run(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem"
            " -out cert.pem -days 2 -subj /CN=example.test",
            shell=True, cwd=workdir, check=True, capture_output=True,
        )
        (workdir / "request.txt").write_bytes(REQUEST)
        early = ["-sess_in", "session.pem", "-early_data", "request.txt"]
        answer_then_close = [("server", RESPONSE, 0.4), ("client", None, 0.4)]
        connections = {}

        server, port = _start_server(
            workdir, "-early_data", "-max_early_data", "16384", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"
        )
        connections["full_key_update"] = _connection(
            workdir, server, port, ["-sess_out", "session.pem"],
            [("client", REQUEST, 0.0), ("server", RESPONSE, 0.4), ("server", b"K\n", 0.3),
             ("server", b"after update\n", 0.2), ("client", b"bye\n", 0.2), ("client", None, 0.3)],
        )
        connections["early_data_accepted"] = _connection(workdir, server, port, early, answer_then_close)
        server.kill()

        server, port = _start_server(workdir, "-early_data", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
        connections["early_data_rejected"] = _connection(workdir, server, port, early, answer_then_close)
        server.kill()

        server, port = _start_server(workdir, "-early_data", "-groups", "P-256")
        connections["early_data_hrr"] = _connection(workdir, server, port, early, answer_then_close)
        server.kill()

        version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
        fixture = {
            "generated_by": "tests/analysis/tls/make_openssl_fixture.py",
            "openssl": version,
            "request": REQUEST.decode(),
            "response": RESPONSE.decode(),
            "keylog": (workdir / "client.keylog").read_text(),
            "connections": connections,
        }
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)


if __name__ == "__main__":
    main()
