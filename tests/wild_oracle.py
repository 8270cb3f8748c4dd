"""tshark's reading of a capture, connection by connection: the oracle of tests/test_inspect_wild.py.

One tshark run per file, ``-T fields`` with every occurrence of every field (``-E occurrence=a``) joined
by the unit separator, one line per frame. The facts are then read from those fields by the protocol's
own rules, not by this project's code:

- TLS version: the ServerHello's supported_versions (RFC 8446 §4.2.1) or, without it, its version
  field (TLS 1.2 and older, and TLS 1.3 drafts before 22, which put 0x7fNN there).
- Resumption: TLS 1.3 (and drafts): the ServerHello carries pre_shared_key (§4.2.11). TLS 1.2 and
  older: the server echoes the client's non-empty session id (RFC 5246 §7.4.1.3), or, when the
  client offered none (a ticket, RFC 5077 §3.4), goes from ServerHello to ChangeCipherSpec without a
  Certificate (the abbreviated handshake, RFC 5246 §7.3).
- HelloRetryRequest: a ServerHello with the special random (RFC 8446 §4.1.3), or the draft-era
  message of its own (type 6, drafts before 22).
- Early data offered: the ClientHello's early_data extension (§4.2.10).
- QUIC: the version of the server's long headers (else the client's), a Retry packet (v1 type 3,
  v2 type 0: RFC 9000 §17.2.5, RFC 9369 §3.2); its TLS in the Initials, which tshark opens itself.

Where TLS runs: tshark finds it on its registered ports, by its heuristics (TLS on 9090, 13443,
5228, 64132 in these captures) and behind the protocols it dissects first (SOCKS on 1080 hands the
rest of the stream to TLS, as STARTTLS does for SMTP, IMAP, POP3, XMPP). Where a capture needs more,
DECODE_AS gives tshark its `-d tcp.port==N,tls`. Whether that is enough is checked, not assumed:
every TCP payload that begins with a ClientHello (a TLS handshake record whose first message is
type 1, RFC 8446 §5.1 and §4, or an SSLv2-format CLIENT-HELLO, RFC 6101 Appendix E.2) is noted per
connection from the raw bytes (``hello_in_clear``), and a connection with one that tshark does not
read as a ClientHello is one the oracle would miss (tests/test_inspect_wild.py fails on it).

Why not pyshark (setup.cfg named it, nothing imported it): measured on these 31 files, pyshark 0.6 took
14 s (JSON mode) or 20 s (PDML mode) to merely iterate the packets, against 6 s for tshark itself;
its JSON mode nests each extension under a subtree named by its display text, so a field has to be
hunted for; and it fails where this test must not: FileCapture raises "There is no current event
loop" once anything in the process has called asyncio.run(), "This event loop is already running"
inside a running loop, and TSharkCrashException on a file cut short in a packet (tshark itself
prints the frames before the cut, exits 2 and says why). So the oracle calls tshark directly.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TSHARK = shutil.which("tshark")

FIELDS = (
    "frame.number", "frame.protocols",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.stream", "tcp.flags.syn", "tcp.flags.ack",
    "udp.srcport", "udp.dstport",
    "quic.connection.number", "quic.version", "quic.long.packet_type", "quic.long.packet_type_v2",
    "tls.record.content_type",
    "tls.handshake.type", "tls.handshake.version", "tls.handshake.random", "tls.handshake.session_id",
    "tls.handshake.extension.type", "tls.handshake.extensions.supported_version",
    "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
    "tcp.payload",
)
DECODE_AS: dict[str, tuple[str, ...]] = {
    # Chromecast's Cast channel (8009) and Google's mobile push (5228, mtalk) run TLS, which
    # tshark reads on neither port (both streams began before the capture: no hello, so no TLS
    # facts either way, but their records are TLS, not "data").
    "ja4-tls3.pcapng": ("tcp.port==8009,tls", "tcp.port==5228,tls"),
}
"""Capture → tshark's ``-d`` decode-as rules for TLS on ports it does not recognise by itself."""
PAYLOAD_HEAD = 12
"""Hex digits of each TCP payload kept: the 6 bytes that tell a ClientHello."""
SEPARATOR = "\x1f"
"""Between the occurrences of one field in a frame (a character no field value holds)."""

CLIENT_HELLO, SERVER_HELLO, DRAFT_HELLO_RETRY_REQUEST, ENCRYPTED_EXTENSIONS, CERTIFICATE = 1, 2, 6, 8, 11
CHANGE_CIPHER_SPEC = 20
EXT_PRE_SHARED_KEY, EXT_EARLY_DATA, EXT_SUPPORTED_VERSIONS = 41, 42, 43
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
"""RFC 8446 §4.1.3: SHA-256("HelloRetryRequest")."""
QUIC_V1, QUIC_V2 = 0x00000001, 0x6B3343CF
RETRY_TYPE = {QUIC_V1: 3, QUIC_V2: 0}


def version_name(code: int) -> str:
    """The name a person would say: "1.2", "1.3", "1.3-draft-23" (0x7f17, the IETF drafts),
    "1.3-fb-draft-23" (0xfb17, Facebook's experiments on a draft), "ssl3"."""
    known = {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0", 0x0300: "ssl3", 0x0002: "ssl2"}
    if code in known:
        return known[code]
    if code >> 8 == 0x7F:
        return f"1.3-draft-{code & 0xFF}"
    if code >> 8 == 0xFB:
        return f"1.3-fb-draft-{code & 0xFF}"
    return f"0x{code:04x}"


def endpoint(address: str, port: int) -> str:
    """As `inspect` writes one: 192.0.2.1:443, [2001:db8::1]:443."""
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


@dataclass
class Frame:
    number: int
    source: str
    destination: str
    values: dict[str, list[str]]

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def first(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None

    def ints(self, name: str) -> list[int]:
        return [int(value, 0) for value in self.all(name)]


@dataclass
class Hello:
    frame: int
    version: int
    random: str
    session_id: str
    extensions: list[int]
    supported_versions: list[int]
    sni: str | None
    alpn: list[str]


@dataclass
class OracleConnection:
    """What tshark shows of one TCP connection (tcp.stream) or QUIC connection."""

    transport: str
    key: str
    """tcp.stream or quic.connection.number, to name it in a failure."""
    endpoints: frozenset[str]
    client: str | None = None
    """Known from a SYN, a ClientHello or a client Initial; None when neither is in the capture."""
    frames: list[int] = field(default_factory=list)
    client_hellos: list[Hello] = field(default_factory=list)
    hello_in_clear: set[int] = field(default_factory=set)
    """Server ports of the payloads that begin with a ClientHello by their raw bytes (to be
    compared with what tshark reads as one)."""
    server_hellos: list[Hello] = field(default_factory=list)
    draft_hrr: bool = False
    server_certificate_frame: int | None = None
    server_ccs_frame: int | None = None
    quic_client_version: int | None = None
    quic_server_version: int | None = None
    quic_retry: bool = False
    encrypted_alpn: str | None = None
    """TLS 1.3: the ALPN of EncryptedExtensions, which tshark reads where the capture carries its
    own key log (a pcapng Decryption Secrets Block)."""

    # -- the facts ------------------------------------------------------------------------------

    @property
    def server_hello(self) -> Hello | None:
        """The ServerHello that is not a HelloRetryRequest."""
        return next((hello for hello in self.server_hellos if hello.random != HRR_RANDOM), None)

    @property
    def negotiated(self) -> int | None:
        """The version the server chose: its ServerHello's, or its HelloRetryRequest's when the
        capture ends before the ServerHello (the HRR names it too, RFC 8446 §4.1.4)."""
        hello = self.server_hello or (self.server_hellos[0] if self.server_hellos else None)
        if hello is None:
            return None
        if EXT_SUPPORTED_VERSIONS in hello.extensions and hello.supported_versions:
            return hello.supported_versions[0]
        return hello.version

    @property
    def tls13(self) -> bool:
        code = self.negotiated
        return code is not None and (code == 0x0304 or code >> 8 in (0x7F, 0xFB))

    @property
    def tls_version(self) -> str | None:
        code = self.negotiated
        if code is None and self.transport == "quic" and self.quic_version in (QUIC_V1, QUIC_V2):
            return "1.3"  # RFC 9001 §4.2: QUIC v1 (and v2, RFC 9369 §3) carries TLS 1.3 and nothing older
        return None if code is None else version_name(code)

    @property
    def sni(self) -> str | None:
        return self.client_hellos[0].sni if self.client_hellos else None

    @property
    def alpn_offered(self) -> tuple[str, ...]:
        return tuple(self.client_hellos[0].alpn) if self.client_hellos else ()

    @property
    def alpn_selected(self) -> str | None:
        """In clear only below TLS 1.3 (1.3 moves it into EncryptedExtensions, §4.3.1, which
        only keys open)."""
        hello = self.server_hello
        if self.tls13:
            return self.encrypted_alpn
        if hello is None or not hello.alpn:
            return None
        return hello.alpn[0]

    @property
    def hrr(self) -> bool:
        return self.draft_hrr or any(hello.random == HRR_RANDOM for hello in self.server_hellos)

    @property
    def resumed(self) -> bool | None:
        """None where the capture cannot tell (no ServerHello, or a TLS 1.2 capture that stops
        before the server's next message)."""
        hello = self.server_hello
        if hello is None:
            return None
        if self.tls13:
            return EXT_PRE_SHARED_KEY in hello.extensions
        offered = self.client_hellos[0].session_id if self.client_hellos else ""
        if offered:
            return hello.session_id == offered
        if self.server_certificate_frame is not None:
            return False
        if self.server_ccs_frame is not None:
            return True
        return None

    @property
    def early_data_offered(self) -> bool | None:
        if not self.client_hellos:
            return None
        return EXT_EARLY_DATA in self.client_hellos[0].extensions

    @property
    def quic_version(self) -> int | None:
        return self.quic_server_version if self.quic_server_version is not None else self.quic_client_version


def tshark_frames(capture: Path, decode_as: tuple[str, ...] | None = None) -> tuple[list[Frame], str]:
    """Every frame of the capture with the fields above, and what tshark said on stderr (it
    reads a file cut short up to the cut, says so and exits 2: that is not a failure here).
    ``decode_as``: tshark's ``-d`` rules, by default the capture's in DECODE_AS."""
    command = [TSHARK, "-r", str(capture), "-n", "-T", "fields", "-E", "occurrence=a",
               "-E", f"aggregator={SEPARATOR}", "-E", "separator=/t", "-E", "quote=n"]
    for rule in DECODE_AS.get(capture.name, ()) if decode_as is None else decode_as:
        command += ["-d", rule]
    for name in FIELDS:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode not in (0, 2):
        raise RuntimeError(f"tshark failed on {capture}: {result.stderr.strip()}")
    frames = []
    for line in result.stdout.splitlines():
        cells = line.split("\t")
        values = {name: cell.split(SEPARATOR) for name, cell in zip(FIELDS, cells) if cell}
        if "tcp.payload" in values:
            values["tcp.payload"] = [values["tcp.payload"][-1][:PAYLOAD_HEAD]]
        if "icmp" in values.get("frame.protocols", [""])[0].split(":"):
            continue  # an ICMP error quotes a header of the connection: not one of its packets
        # Tunnels: the innermost header is the connection's (its last occurrence).
        source = values.get("ipv6.src", values.get("ip.src", [None]))[-1]
        destination = values.get("ipv6.dst", values.get("ip.dst", [None]))[-1]
        if source is None or destination is None:
            continue
        frames.append(Frame(int(values["frame.number"][0]), source, destination, values))
    return frames, result.stderr


def oracle_connections(capture: Path, decode_as: tuple[str, ...] | None = None) -> list[OracleConnection]:
    """tshark's TCP connections (its tcp.stream) and QUIC connections (quic.connection.number),
    in the order of their first frame. UDP that tshark does not read as QUIC (DNS, mDNS…) is no
    connection for either."""
    frames, _ = tshark_frames(capture, decode_as)
    connections: dict[tuple[str, str], OracleConnection] = {}
    for frame in frames:
        if "tcp.stream" in frame.values:
            transport, key = "tcp", frame.values["tcp.stream"][-1]
            ports = int(frame.values["tcp.srcport"][-1]), int(frame.values["tcp.dstport"][-1])
        elif "quic.connection.number" in frame.values:
            transport, key = "quic", frame.values["quic.connection.number"][0]
            ports = int(frame.values["udp.srcport"][-1]), int(frame.values["udp.dstport"][-1])
        else:
            continue
        source, destination = endpoint(frame.source, ports[0]), endpoint(frame.destination, ports[1])
        conn = connections.get((transport, key))
        if conn is None:
            conn = connections[(transport, key)] = OracleConnection(transport, key, frozenset((source, destination)))
        conn.frames.append(frame.number)
        _read_frame(conn, frame, source, destination)
    return list(connections.values())


def _read_frame(conn: OracleConnection, frame: Frame, source: str, destination: str) -> None:
    if conn.transport == "tcp" and frame.first("tcp.flags.syn") in ("1", "True"):
        from_client = frame.first("tcp.flags.ack") not in ("1", "True")
        if conn.client is None:
            conn.client = source if from_client else destination
    payload = frame.first("tcp.payload")
    if payload is not None and starts_client_hello(bytes.fromhex(payload)):
        conn.hello_in_clear.add(int(frame.values["tcp.dstport"][-1]))
    types = frame.ints("tls.handshake.type")
    if conn.transport == "quic":
        _read_quic(conn, frame, source, destination, types)
    if CLIENT_HELLO in types and conn.client is None:
        conn.client = source
    from_client = conn.client == source
    if CLIENT_HELLO in types and from_client:
        conn.client_hellos.append(_hello(frame))
    if not from_client and conn.client is not None:
        if SERVER_HELLO in types:
            conn.server_hellos.append(_hello(frame))
        if DRAFT_HELLO_RETRY_REQUEST in types:
            conn.draft_hrr = True
        if ENCRYPTED_EXTENSIONS in types and conn.encrypted_alpn is None:
            alpn = frame.all("tls.handshake.extensions_alpn_str")
            conn.encrypted_alpn = alpn[0] if alpn else None
        if CERTIFICATE in types and conn.server_certificate_frame is None:
            conn.server_certificate_frame = frame.number
        if CHANGE_CIPHER_SPEC in frame.ints("tls.record.content_type") and conn.server_ccs_frame is None:
            conn.server_ccs_frame = frame.number


def starts_client_hello(head: bytes) -> bool:
    """Whether a TCP payload begins with a ClientHello: a TLS handshake record (type 22, version
    3.x, RFC 8446 §5.1) whose message is type 1 (§4), or an SSLv2-format record, 2-byte header with
    the high bit set, whose message is CLIENT-HELLO (1) for version 2 or 3.x (RFC 6101 E.2)."""
    if len(head) < 6:
        return False
    if head[0] == 22 and head[1] == 3 and head[2] <= 4:
        return head[5] == 1
    return bool(head[0] & 0x80) and head[2] == 1 and (head[3], head[4]) in ((0, 2), (3, 0), (3, 1), (3, 2), (3, 3))


def _read_quic(conn: OracleConnection, frame: Frame, source: str, destination: str, types: list[int]) -> None:
    versions = [v for v in frame.ints("quic.version") if v != 0]  # 0: Version Negotiation
    if not versions:
        return
    if conn.client is None:
        # The first long header with a version: the client's Initial, unless it carries the
        # ServerHello (the capture missed the client's first packets).
        conn.client = destination if SERVER_HELLO in types else source
    if conn.client == source:
        if conn.quic_client_version is None:
            conn.quic_client_version = versions[0]
        return
    conn.quic_server_version = versions[-1]
    # The packet types are listed per long header, in the order of the versions.
    raw = frame.ints("quic.long.packet_type_v2") if versions[0] == QUIC_V2 else frame.ints("quic.long.packet_type")
    if RETRY_TYPE.get(versions[0]) in raw:
        conn.quic_retry = True


def _hello(frame: Frame) -> Hello:
    """A ClientHello or ServerHello from its frame's fields (a frame carries the hellos of one
    side only; a TLS 1.2 flight's other messages carry none of these fields)."""
    return Hello(
        frame=frame.number,
        version=int(frame.first("tls.handshake.version") or "0", 0),
        random=frame.first("tls.handshake.random") or "",
        session_id=frame.first("tls.handshake.session_id") or "",
        extensions=frame.ints("tls.handshake.extension.type"),
        supported_versions=frame.ints("tls.handshake.extensions.supported_version"),
        sni=frame.first("tls.handshake.extensions_server_name"),
        alpn=frame.all("tls.handshake.extensions_alpn_str"),
    )
