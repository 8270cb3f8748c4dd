"""NSS key log files: the secrets a TLS stack wrote out, keyed by the ClientHello random.

The format (``SSLKEYLOGFILE``; draft-ietf-tls-keylogfile) is one ``LABEL <client_random hex>
<secret hex>`` per line. A log usually holds many connections, so secrets are looked up by the
32-byte client random of the ClientHello that opened the connection. Reading a key log never
raises: a capture's key log is user input, and one bad line must not hide the good ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_CLIENT_RANDOM_BYTES: Final = 32

_LABELS: Final = {
    "CLIENT_RANDOM": "master_secret",
    "CLIENT_EARLY_TRAFFIC_SECRET": "client_early_traffic_secret",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": "client_handshake_traffic_secret",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": "server_handshake_traffic_secret",
    "CLIENT_TRAFFIC_SECRET_0": "client_traffic_secret_0",
    "SERVER_TRAFFIC_SECRET_0": "server_traffic_secret_0",
    "EXPORTER_SECRET": "exporter_secret",
}


@dataclass(frozen=True)
class ConnectionSecrets:
    """Every secret the key log holds for one connection (one client random)."""

    client_random: bytes
    """The ClientHello random (32 bytes) the log lines were keyed by."""
    master_secret: bytes | None = None
    """TLS 1.2 master secret (label CLIENT_RANDOM, 48 bytes)."""
    client_early_traffic_secret: bytes | None = None
    """TLS 1.3 key for 0-RTT data and EndOfEarlyData (RFC 8446 §7.1)."""
    client_handshake_traffic_secret: bytes | None = None
    """TLS 1.3 key for the client's Finished (and certificate, when asked)."""
    server_handshake_traffic_secret: bytes | None = None
    """TLS 1.3 key for EncryptedExtensions through the server's Finished."""
    client_traffic_secret_0: bytes | None = None
    """TLS 1.3 key for the client's application data."""
    server_traffic_secret_0: bytes | None = None
    """TLS 1.3 key for the server's application data, 0.5-RTT data and tickets."""
    exporter_secret: bytes | None = None
    """TLS 1.3 exporter master secret (not used to decrypt records)."""

    def __reduce__(self) -> tuple[type[ConnectionSecrets], tuple[bytes | None, ...]]:
        # Compiled, the frozen class cannot be rebuilt field by field: pickled as its arguments,
        # for the processes and cluster workers that read an archive's files.
        return (ConnectionSecrets, (self.client_random, self.master_secret, self.client_early_traffic_secret,
                                    self.client_handshake_traffic_secret, self.server_handshake_traffic_secret,
                                    self.client_traffic_secret_0, self.server_traffic_secret_0, self.exporter_secret))


class KeyLog:
    """The connections of one or more key log files, looked up by client random."""

    def __init__(self, connections: dict[bytes, ConnectionSecrets] | None = None) -> None:
        self._connections: dict[bytes, ConnectionSecrets] = dict(connections or {})

    def __reduce__(self) -> tuple[type[KeyLog], tuple[dict[bytes, ConnectionSecrets]]]:
        return (KeyLog, (self._connections,))

    def get(self, client_random: bytes) -> ConnectionSecrets | None:
        """The secrets logged for the connection whose ClientHello carried ``client_random``."""
        return self._connections.get(bytes(client_random))

    def merged(self, other: KeyLog) -> KeyLog:
        """Both logs in one; ``other`` wins where both hold a secret for the same label."""
        combined = KeyLog(self._connections)
        for random, secrets in other._connections.items():
            combined._connections[random] = _merge(combined._connections.get(random), secrets)
        return combined

    def add(self, other: KeyLog) -> None:
        """Add ``other``'s secrets to this log, in place; where both hold a secret for the same
        label and connection, this log's stays. A capture's embedded secrets are added to the
        log a reader already holds (the user's ``--keylog``), and connections whose
        ClientHello comes later find them there."""
        for random, secrets in other._connections.items():
            self._connections[random] = _merge(secrets, self._connections.get(random))

    def copy(self) -> KeyLog:
        return KeyLog(self._connections)

    def secrets(self) -> int:
        """How many secrets the log holds, over all its connections."""
        return sum(getattr(secrets, name) is not None
                   for secrets in self._connections.values() for name in _LABELS.values())

    def __contains__(self, client_random: object) -> bool:
        return isinstance(client_random, (bytes, bytearray)) and bytes(client_random) in self._connections

    def __len__(self) -> int:
        return len(self._connections)

    def __repr__(self) -> str:
        return f"KeyLog({len(self)} connections)"


def parse_keylog(text: str) -> KeyLog:
    """Read NSS key log text; comments, unknown labels and malformed lines are skipped.

    A later line for the same label and client random replaces an earlier one, as in Wireshark.
    """
    found: dict[bytes, dict[str, bytes]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[0].startswith("#"):
            continue
        label, random_hex, secret_hex = fields
        field = _LABELS.get(label)
        if field is None:
            continue
        try:
            client_random = bytes.fromhex(random_hex)
            secret = bytes.fromhex(secret_hex)
        except ValueError:
            continue
        if len(client_random) != _CLIENT_RANDOM_BYTES or not secret:
            continue
        found.setdefault(client_random, {})[field] = secret
    return KeyLog(
        {random: ConnectionSecrets(client_random=random, **fields) for random, fields in found.items()}
    )


def _merge(old: ConnectionSecrets | None, new: ConnectionSecrets | None) -> ConnectionSecrets:
    """Both connections' secrets in one; ``new``'s where both hold one."""
    if old is None or new is None:
        merged = new if old is None else old
        assert merged is not None
        return merged
    fields = {name: getattr(new, name) or getattr(old, name) for name in _LABELS.values()}
    return ConnectionSecrets(client_random=new.client_random, **fields)
