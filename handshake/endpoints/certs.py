"""Certificate chains made at run time: CA -> N intermediates -> leaf.

Key type and chain length are scenario knobs because the server's Certificate message size
decides whether its flight fits the TCP initial window or the QUIC anti-amplification limit.
Chains are cached per process: an RSA-2048 key takes tens of ms to generate. Every chain of a
kind has the same size in every process: serial numbers of a fixed length, and ECDSA signatures
drawn until one has the longest DER encoding (a byte or two of difference moved aioquic's
packets, and QUIC pages in virtual time differed from process to process by up to 7 ms).
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._files import create_private_file

KEY_TYPES = ("p256", "rsa2048")
T = TypeVar("T")
MAX_SIGNATURE_DRAWS = 64
"""Full-length ECDSA signatures come one draw in four; after this many a shorter one is kept."""


def longest_ecdsa_signature(curve_bits: int) -> int:
    """DER bytes of the longest ECDSA signature on a curve of ``curve_bits``: a SEQUENCE of two
    INTEGERs each with a leading 0 (72 for P-256)."""
    integer = (curve_bits + 7) // 8 + (curve_bits % 8 == 0)  # a leading 0 keeps a top-bit-set r or s positive
    content = 2 * (2 + integer)  # two INTEGERs: tag, length, value
    return content + (2 if content < 128 else 3)  # SEQUENCE header


def drawn_until_longest(draw: Callable[[], T], signature_of: Callable[[T], bytes], curve_bits: int) -> T:
    """``draw()`` again (a fresh ECDSA signing) until its signature has the longest encoding, at
    most ``MAX_SIGNATURE_DRAWS`` times: the certificates and the CertificateVerify alike."""
    longest = longest_ecdsa_signature(curve_bits)
    for _ in range(MAX_SIGNATURE_DRAWS):
        drawn = draw()
        if len(signature_of(drawn)) >= longest:
            break
    return drawn


@dataclass(frozen=True)
class ChainFiles:
    """Where ``CertChain.write`` put the PEM files."""

    key: Path
    """Leaf private key (PKCS#8 PEM, mode 0600)."""
    chain: Path
    """Leaf certificate then intermediates, as a server sends them."""
    ca: Path
    """The trust anchor a client verifies against."""


@dataclass(frozen=True)
class CertChain:
    """A server identity: leaf key, the certificates it sends, and the CA that signed them."""

    key_type: str
    server_name: str
    leaf_key_pem: bytes
    chain_pem: bytes
    """Leaf first, then intermediates up towards the CA (the CA itself is not sent)."""
    ca_pem: bytes
    der_sizes: tuple[int, ...]
    """DER length of each certificate the server sends (leaf, then intermediates)."""

    @property
    def chain_der_bytes(self) -> int:
        """Certificate bytes on the wire, before the Certificate message's own framing."""
        return sum(self.der_sizes)

    def write(self, directory: str | os.PathLike[str]) -> ChainFiles:
        """Write key, chain and CA PEM files into ``directory``; the key file is created 0600."""
        directory = Path(directory)
        files = ChainFiles(directory / "leaf.key", directory / "chain.pem", directory / "ca.pem")
        create_private_file(files.key, self.leaf_key_pem)
        files.chain.write_bytes(self.chain_pem)
        files.ca.write_bytes(self.ca_pem)
        return files


@dataclass(frozen=True, eq=False)
class ClientIdentity:
    """What every client config starts from (stdlib TLS, libssl 0-RTT, QUIC): the CA it verifies
    the server against, the name it asks for, where its key log goes."""

    ca_pem: bytes | None
    """None: the system's trust store (a real server's public chain)."""
    server_name: str = "server.test"
    keylog_path: str | os.PathLike[str] | None = None
    verify: bool = True
    """False: accept any certificate (``probe --insecure``)."""
    alpn: tuple[str, ...] = ()
    """Protocols offered in ALPN over TCP (("h2", "http/1.1") for a real server); none by default."""
    path: str = "/"
    """What the GET asks for."""
    authority: str | None = None
    """The HTTP authority (Host), when not ``server_name`` (a port other than 443)."""

    @property
    def http_authority(self) -> str:
        return self.authority or self.server_name

    @classmethod
    def for_chain(cls, chain: CertChain, **kwargs) -> Self:
        """A client that trusts ``chain``'s CA and asks for its name."""
        return cls(ca_pem=chain.ca_pem, server_name=chain.server_name, **kwargs)


def make_chain(key_type: str = "p256", intermediates: int = 1, server_name: str = "server.test") -> CertChain:
    """Return a (process-cached) chain; see the module docstring for why it is cached."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")
    if intermediates < 0:
        raise ValueError(f"intermediates must be >= 0, got {intermediates}")
    return _make_chain(key_type, intermediates, server_name)


@functools.lru_cache(maxsize=32)
def _make_chain(key_type: str, intermediates: int, server_name: str) -> CertChain:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = _new_key(key_type)
    ca_name = _name("handshake test CA")
    ca_cert = _sign(ca_name, ca_key, ca_name, ca_key, now, ca=True)

    issuer_name, issuer_key, issuer_cert = ca_name, ca_key, ca_cert
    sent: list[x509.Certificate] = []
    for depth in range(intermediates, 0, -1):
        key = _new_key(key_type)
        name = _name(f"handshake test intermediate {depth}")
        cert = _sign(name, key, issuer_name, issuer_key, now, ca=True, issuer_cert=issuer_cert)
        sent.append(cert)
        issuer_name, issuer_key, issuer_cert = name, key, cert

    leaf_key = _new_key(key_type)
    leaf = _sign(_name(server_name), leaf_key, issuer_name, issuer_key, now, ca=False,
                 issuer_cert=issuer_cert, server_name=server_name)
    sent = [leaf, *reversed(sent)]
    return CertChain(
        key_type=key_type,
        server_name=server_name,
        leaf_key_pem=leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in sent),
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        der_sizes=tuple(len(c.public_bytes(serialization.Encoding.DER)) for c in sent),
    )


def _new_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sign(subject, key, issuer, issuer_key, now, *, ca: bool, issuer_cert=None, server_name=None) -> x509.Certificate:
    """One certificate with the extensions a strict verifier (RFC 5280) expects."""
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() | 1 << 158)  # 159 bits always: 20 DER bytes
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_cert is not None:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    rsa_leaf = not ca and isinstance(key, rsa.RSAPrivateKey)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=rsa_leaf,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    if server_name is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        return drawn_until_longest(lambda: builder.sign(issuer_key, hashes.SHA256()),
                                   lambda cert: cert.signature, issuer_key.curve.key_size)
    return builder.sign(issuer_key, hashes.SHA256())
