"""Real TLS conversations made in memory with the stdlib ssl module, for the analyzer's tests.

Client and server are ``SSLObject``s over ``MemoryBIO``s; every time one side has written, its
bytes are recorded as a chunk of its direction's stream and handed to the other side, so the
chunks come in the order a capture on the wire would show them.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTNAME = "example.test"
REQUEST = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway P-256 certificate for HOSTNAME (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def make_contexts(
    cert_file: Path, key_file: Path, keylog_file: Path, version: ssl.TLSVersion
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client, server) contexts pinned to one TLS version; the client logs its secrets."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=str(cert_file))
    client.minimum_version = client.maximum_version = version
    client.keylog_filename = str(keylog_file)
    client.set_alpn_protocols(["h2", "http/1.1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(cert_file), str(key_file))
    server.minimum_version = server.maximum_version = version
    server.set_alpn_protocols(["http/1.1"])
    return client, server


@dataclass
class Exchange:
    """One recorded connection: handshake, one request, one response, close_notify both ways."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    response_start: int = 0
    """s2c stream offset of the first byte of the record(s) carrying the response."""
    response_end: int = 0
    """s2c stream offset just past them."""
    session: ssl.SSLSession | None = None
    session_reused: bool = False
    version: str | None = None
    cipher: str | None = None
    """OpenSSL's name of the negotiated suite."""

    def stream(self, direction: str) -> bytes:
        return b"".join(data for d, data in self.chunks if d == direction)


def run_exchange(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    response: bytes = RESPONSE,
) -> Exchange:
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=HOSTNAME, session=session)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    exchange = Exchange()
    offsets = {"c2s": 0, "s2c": 0}

    def carry() -> None:
        for direction, source, sink in (("c2s", client_out, server_in), ("s2c", server_out, client_in)):
            data = source.read()
            if data:
                exchange.chunks.append((direction, data))
                offsets[direction] += len(data)
                sink.write(data)

    def attempt(action) -> bool:
        try:
            action()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        return True

    client_done = server_done = False
    for _ in range(20):
        client_done = client_done or attempt(client.do_handshake)
        carry()
        server_done = server_done or attempt(server.do_handshake)
        carry()
        if client_done and server_done:
            break
    assert client_done and server_done, "handshake did not finish"

    client.write(REQUEST)
    carry()
    received = b""
    while len(received) < len(REQUEST):
        received += server.read(65536)
    carry()
    exchange.response_start = offsets["s2c"]
    server.write(response)
    carry()
    exchange.response_end = offsets["s2c"]
    answer = b""
    while len(answer) < len(response):
        answer += client.read(65536)
    carry()

    exchange.session = client.session
    exchange.session_reused = client.session_reused
    exchange.version = client.version()
    exchange.cipher = client.cipher()[0]
    # Close cleanly: a session freed before SSL_shutdown is not resumable.
    attempt(client.unwrap)
    carry()
    attempt(server.unwrap)
    carry()
    attempt(client.unwrap)
    return exchange
