"""What comes before TLS in a TCP stream that does not start with it: a proxy's tunnel set-up
(HTTP CONNECT, SOCKS 4/4a/5) or a protocol's upgrade to TLS (STARTTLS in SMTP, IMAP, POP3,
XMPP; FTP's AUTH TLS; LDAP's StartTLS).

Sans-IO: ``PreludeReader.feed`` takes each direction's stream bytes in order and says whether the
stream is still in a prelude (PENDING), switched to TLS (SWITCHED: the client's TLS bytes begin at
``client_offset``, the server's at ``server_offset``), never will (REFUSED: the proxy or server
said no, with ``reason``), or is no prelude this reader knows (NONE: read the stream as today).
The verdict is a function of the bytes alone, whatever the segment boundaries: each feed parses
both directions' bytes so far from the start (a prelude is a few hundred bytes, held up to
_MAX_BYTES), and the first verdict other than PENDING is final.

``may_start`` is the cheap test a connection runs once, on its first bytes that do not start
TLS: only a stream that could begin a prelude gets a reader, so plain HTTP (``GET /``, h2c's
``PRI *``) never does.
"""

from __future__ import annotations

from typing import Final

PENDING: Final = 0
SWITCHED: Final = 1
REFUSED: Final = 2
NONE: Final = 3

_MAX_BYTES: Final = 1 << 15
"""Bytes of each direction a prelude may take before the reader gives up (an SMTP session that
never says STARTTLS carries mail, not a prelude)."""

_CONNECT: Final = b"CONNECT "
_SOCKS4_REPLIES: Final = {90: "granted", 91: "rejected or failed", 92: "no identd on the client",
                          93: "identd disagreed"}
_SOCKS5_REPLIES: Final = {1: "general SOCKS server failure", 2: "connection not allowed by ruleset",
                          3: "network unreachable", 4: "host unreachable", 5: "connection refused",
                          6: "TTL expired", 7: "command not supported", 8: "address type not supported"}
"""RFC 1928 §6's REP field."""
_LDAP_STARTTLS_OID: Final = b"1.3.6.1.4.1.1466.20037"
"""RFC 4511 §4.14.1: the StartTLS extended request's requestName."""

DESCRIPTIONS: Final = {
    "http-connect": "through an HTTP proxy",
    "socks4": "through a SOCKS4 proxy",
    "socks4a": "through a SOCKS4a proxy",
    "socks5": "through a SOCKS5 proxy",
    "starttls-smtp": "STARTTLS (SMTP)",
    "starttls-imap": "STARTTLS (IMAP)",
    "starttls-pop3": "STLS (POP3)",
    "starttls-xmpp": "STARTTLS (XMPP)",
    "starttls-ftp": "AUTH TLS (FTP)",
    "starttls-ldap": "StartTLS (LDAP)",
}
"""The ``prelude`` field's values, and how a row's cause names them."""


def may_start(from_client: bool, data: bytes) -> bool:
    """Whether a stream whose first bytes are ``data`` (from the client or not) could begin a
    prelude: a byte test or two, as it runs on every connection that does not start with TLS."""
    if not data:
        return False
    first = data[0]
    if from_client:
        if first == 0x43:  # "C"
            return _CONNECT.startswith(data[:8])
        if first == 4:
            return len(data) < 2 or data[1] == 1
        if first == 5:
            return len(data) < 2 or data[1] != 0
        if first == 0x30:  # an LDAPMessage is a BER SEQUENCE
            return True
        return first == 0x3C  # "<": XMPP's stream header
    # The server speaks first: a greeting (SMTP and FTP "220", IMAP "* OK", POP3 "+OK").
    return first in (0x32, 0x2A, 0x2B)


class _Step:
    """Where a parse got to: the bytes it used of each direction, and its verdict so far."""

    __slots__ = ("client", "server", "verdict", "reason")

    def __init__(self) -> None:
        self.client = 0
        self.server = 0
        self.verdict = PENDING
        self.reason = ""


class PreludeReader:
    """One TCP connection's prelude, fed both directions' bytes in order (sans-IO)."""

    def __init__(self) -> None:
        self._client = bytearray()
        self._server = bytearray()
        self._server_first: bool | None = None
        """Whether the server spoke first (a greeting: SMTP, FTP, IMAP, POP3) or the client."""
        self.verdict = PENDING
        self.kind: str | None = None
        """A key of DESCRIPTIONS, once the bytes say which prelude this is."""
        self.client_offset = -1
        """Client stream offset of its first TLS byte (SWITCHED)."""
        self.server_offset = -1
        self.reason = ""
        """What the peer refused, in words (REFUSED), or why the last attempt failed while a
        client may still try again (an HTTP proxy's 407)."""

    @property
    def description(self) -> str:
        return DESCRIPTIONS.get(self.kind or "", "a prelude before TLS")

    def leftover(self, from_client: bool) -> bytes:
        """The bytes fed up to the switch to TLS (SWITCHED) that lie past it, in ``from_client``'s
        direction (a client that sent its ClientHello without waiting); later feeds are not kept."""
        if self.verdict != SWITCHED:
            return b""
        if from_client:
            return bytes(self._client[self.client_offset:])
        return bytes(self._server[self.server_offset:])

    def held(self, from_client: bool) -> bytes:
        """Every byte fed in a direction (kept until the verdict, up to _MAX_BYTES)."""
        return bytes(self._client if from_client else self._server)

    def feed(self, from_client: bool, data: bytes) -> int:
        """Take the next ``data`` bytes of one direction; returns the verdict."""
        if self.verdict != PENDING:
            return self.verdict
        if self._server_first is None and data:
            self._server_first = not from_client
        buffer = self._client if from_client else self._server
        buffer += data
        if len(buffer) > _MAX_BYTES:
            self.verdict = REFUSED if self.kind is not None else NONE
            self.reason = f"no switch to TLS in its first {_MAX_BYTES} bytes"
            if self.verdict == REFUSED:
                self.drop_bytes()
            return self.verdict
        client, server = bytes(self._client), bytes(self._server)
        step = _Step()
        try:
            kind = self._parse(client, server, step)
        except (IndexError, ValueError):  # a parser's own slip on odd bytes is no prelude
            kind, step.verdict = None, NONE
        if kind is not None:
            self.kind = kind
        if step.reason:
            self.reason = step.reason
        self.verdict = step.verdict
        if step.verdict == SWITCHED:
            self.client_offset, self.server_offset = step.client, step.server
        elif step.verdict == REFUSED:
            self.drop_bytes()
        return self.verdict

    def drop_bytes(self) -> None:
        """Let the bytes held go (a switch's leftovers taken, or a refusal): a connection keeps
        its reader, for its report, to its end."""
        self._client = bytearray()
        self._server = bytearray()

    def _parse(self, client: bytes, server: bytes, step: _Step) -> str | None:
        if self._server_first is None:
            return None
        if not self._server_first:
            first = client[0]
            if first == 0x43:
                return _http_connect(client, server, step)
            if first == 4:
                return _socks4(client, server, step)
            if first == 5:
                return _socks5(client, server, step)
            if first == 0x30:
                return _ldap(client, server, step)
            if first == 0x3C:
                return _xmpp(client, server, step)
        else:
            first = server[0]
            if first == 0x32:
                return _smtp_or_ftp(client, server, step)
            if first == 0x2A:
                return _imap(client, server, step)
            if first == 0x2B:
                return _pop3(client, server, step)
        step.verdict = NONE
        return None


# -- HTTP CONNECT (RFC 9110 §9.3.6) -----------------------------------------------------------

def _head_end(data: bytes, start: int) -> int:
    """Offset just past an HTTP message head beginning at ``start`` (its blank line), or -1."""
    end = data.find(b"\r\n\r\n", start)
    return -1 if end < 0 else end + 4


def _status(data: bytes, start: int) -> int:
    """The status code of the response head at ``start`` (-1: not an HTTP/1.x status line)."""
    line = data[start:start + 12]
    if len(line) < 12 or not line.startswith(b"HTTP/1.") or line[8] != 0x20 or not line[9:12].isdigit():
        return -1
    return int(line[9:12])


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0


def _http_connect(client: bytes, server: bytes, step: _Step) -> str | None:
    """``CONNECT host:port HTTP/1.x`` … blank line; the proxy's reply … blank line. A 2xx opens
    the tunnel (its head has no body, §9.3.6); 1xx are interim; another status is a refusal the
    client may answer with a new CONNECT on the same connection (407, then credentials)."""
    c = s = 0
    while True:
        if len(client) - c < len(_CONNECT):
            if not _CONNECT.startswith(client[c:]):
                step.verdict = NONE if c == 0 else REFUSED
            return "http-connect" if c else None
        if not client.startswith(_CONNECT, c):
            step.verdict = NONE if c == 0 else REFUSED
            return "http-connect" if c else None
        end = _head_end(client, c)
        if end < 0:
            line_end = client.find(b"\r\n", c)
            if line_end >= 0 and b" HTTP/1." not in client[c:line_end]:
                step.verdict = NONE if c == 0 else REFUSED
            return "http-connect"
        if b" HTTP/1." not in client[c:client.find(b"\r\n", c)]:
            step.verdict = NONE if c == 0 else REFUSED
            return "http-connect" if c else None
        c = end
        while True:  # the replies to this request: interim ones, then the final one
            if len(server) - s < 12:
                return "http-connect"
            status = _status(server, s)
            if status < 0:
                step.verdict, step.reason = REFUSED, "the proxy's reply is not HTTP/1.x"
                return "http-connect"
            head_end = _head_end(server, s)
            if head_end < 0:
                return "http-connect"
            if 100 <= status < 200:
                s = head_end
                continue
            if 200 <= status < 300:
                step.client, step.server, step.verdict = c, head_end, SWITCHED
                return "http-connect"
            step.reason = f"CONNECT refused ({status})"
            s = head_end + _content_length(server[s:head_end])
            if s > len(server):
                return "http-connect"
            break
        if c == len(client):
            return "http-connect"  # the client may try again, or close: the end tells


# -- SOCKS 4 and 4a (de-facto spec: "SOCKS: A protocol for TCP proxy across firewalls") --------

def _nul_end(data: bytes, start: int, limit: int) -> int:
    """Offset just past the NUL that ends a string at ``start``; -1 if not yet in; -2 if none
    within ``limit`` bytes."""
    end = data.find(b"\x00", start, start + limit)
    if end >= 0:
        return end + 1
    return -1 if len(data) - start < limit else -2


def _socks4(client: bytes, server: bytes, step: _Step) -> str | None:
    """VN=4 CD=1 DSTPORT DSTIP USERID NUL (4a: DSTIP 0.0.0.x, x ≠ 0, then the host name and a
    NUL); the reply is 8 bytes, VN 0 and CD 90 when granted."""
    if len(client) < 2:
        return None
    if client[1] != 1:
        step.verdict = NONE
        return None
    if len(client) < 8:
        return "socks4"
    end = _nul_end(client, 8, 256)
    kind = "socks4"
    if end >= 0 and client[4:7] == b"\x00\x00\x00" and client[7] != 0:
        kind = "socks4a"
        end = _nul_end(client, end, 256)
    if end == -2:
        step.verdict = NONE
        return None
    if end < 0 or len(server) < 8:
        return kind
    if server[0] not in (0, 4) or server[1] not in _SOCKS4_REPLIES:
        step.verdict, step.reason = REFUSED, "the proxy's reply is not SOCKS4"
    elif server[1] != 90:
        step.verdict, step.reason = REFUSED, f"request {_SOCKS4_REPLIES[server[1]]} ({server[1]})"
    else:
        step.client, step.server, step.verdict = end, 8, SWITCHED
    return kind


# -- SOCKS5 (RFC 1928, RFC 1929) ----------------------------------------------------------------

def _socks5_address_end(data: bytes, at: int) -> int:
    """Offset just past ATYP, the address and the port at ``at`` (-1: not yet in; -2: no such
    address type)."""
    if len(data) <= at:
        return -1
    atyp = data[at]
    if atyp == 1:
        end = at + 1 + 4 + 2
    elif atyp == 4:
        end = at + 1 + 16 + 2
    elif atyp == 3:
        if len(data) <= at + 1:
            return -1
        end = at + 2 + data[at + 1] + 2
    else:
        return -2
    return end if len(data) >= end else -1


def _socks5(client: bytes, server: bytes, step: _Step) -> str | None:
    """Greeting (VER 5, NMETHODS, METHODS) and the method chosen; RFC 1929's username and
    password where the proxy chose 0x02; then CONNECT (VER 5, CMD 1, RSV, address, port) and
    its reply (REP 0: succeeded). A client may send its request before the method reply."""
    if len(client) < 2:
        return None
    c = 2 + client[1]
    if client[1] == 0:
        step.verdict = NONE
        return None
    if len(client) < c:
        return "socks5"
    if len(server) < 2:
        return "socks5"
    if server[0] != 5:
        step.verdict, step.reason = REFUSED, "the proxy's reply is not SOCKS5"
        return "socks5"
    method, s = server[1], 2
    if method == 0xFF:
        step.verdict, step.reason = REFUSED, "no acceptable authentication method (0xff)"
        return "socks5"
    if method not in client[2:c]:
        step.verdict, step.reason = REFUSED, f"the proxy chose method {method:#04x}, not one offered"
        return "socks5"
    if method == 2:  # RFC 1929 §2: VER 1, ULEN, UNAME, PLEN, PASSWD; reply VER, STATUS
        if len(client) < c + 2:
            return "socks5"
        plen_at = c + 2 + client[c + 1]
        if len(client) <= plen_at:
            return "socks5"
        c = plen_at + 1 + client[plen_at]
        if len(client) < c or len(server) < s + 2:
            return "socks5"
        if server[s + 1] != 0:
            step.verdict, step.reason = REFUSED, f"username/password refused (status {server[s + 1]})"
            return "socks5"
        s += 2
    elif method != 0:
        step.verdict, step.reason = REFUSED, f"authentication method {method:#04x} is not read here"
        return "socks5"
    if len(client) < c + 4:
        return "socks5"
    if client[c] != 5 or client[c + 1] != 1:
        step.verdict, step.reason = REFUSED, "no CONNECT request (only CONNECT opens a tunnel)"
        return "socks5"
    request_end = _socks5_address_end(client, c + 3)
    if request_end == -2:
        step.verdict, step.reason = REFUSED, "the request's address type is not RFC 1928's"
        return "socks5"
    if request_end < 0 or len(server) < s + 4:
        return "socks5"
    if server[s] != 5:
        step.verdict, step.reason = REFUSED, "the proxy's reply is not SOCKS5"
        return "socks5"
    rep = server[s + 1]
    if rep != 0:
        step.verdict = REFUSED
        step.reason = f"CONNECT failed: {_SOCKS5_REPLIES.get(rep, 'unassigned reply')} ({rep:#04x})"
        return "socks5"
    reply_end = _socks5_address_end(server, s + 3)
    if reply_end == -2:
        step.verdict, step.reason = REFUSED, "the reply's address type is not RFC 1928's"
    elif reply_end > 0:
        step.client, step.server, step.verdict = request_end, reply_end, SWITCHED
    return "socks5"


# -- line protocols: SMTP (RFC 3207), FTP (RFC 4217), IMAP (RFC 3501), POP3 (RFC 2595) ----------

def _line_end(data: bytes, start: int) -> int:
    """Offset just past the CRLF (or bare LF) ending the line at ``start``, or -1."""
    end = data.find(b"\n", start)
    return -1 if end < 0 else end + 1


def _reply_end(server: bytes, start: int) -> int:
    """Offset just past an SMTP or FTP reply at ``start`` (RFC 5321 §4.2.1, RFC 959 §4.2: lines
    "NNN-…" until "NNN …"), or -1; -2 if it is no such reply."""
    first = server[start:start + 4]
    if len(first) < 4:
        return -1 if first.isdigit() or not first else -2
    if not first[:3].isdigit() or first[3] not in b" -\r\n":
        return -2
    code = first[:3]
    at = start
    while True:
        end = _line_end(server, at)
        if end < 0:
            return -1
        if server[at:at + 3] == code and server[at + 3:at + 4] != b"-":
            return end
        at = end


def _smtp_or_ftp(client: bytes, server: bytes, step: _Step) -> str | None:
    """A "220" greeting, then one reply per client command (in order, pipelined or not);
    ``STARTTLS`` answered 220 (SMTP, RFC 3207 §4) or ``AUTH TLS`` answered 234 (FTP, RFC 4217
    §4) switches at the end of that command and of its reply."""
    s = _reply_end(server, 0)
    if s == -2 or server[:3] != b"220"[:len(server[:3])]:
        step.verdict = NONE
        return None
    if s < 0:
        return None
    c = 0
    kind: str | None = None
    while True:
        end = _line_end(client, c)
        if end < 0:
            return kind
        command = client[c:end].strip().upper()
        if command in (b"EHLO", b"HELO", b"LHLO") or command.startswith((b"EHLO ", b"HELO ", b"LHLO ")):
            kind = kind or "starttls-smtp"
        elif command.startswith((b"USER ", b"PASS ")):
            kind = kind or "starttls-ftp"
        elif command == b"DATA":
            step.verdict, step.reason = REFUSED, "mail sent in clear (DATA before any STARTTLS)"
            return kind or "starttls-smtp"
        reply = _reply_end(server, s)
        if reply == -2:
            step.verdict, step.reason = REFUSED, "a reply that is not SMTP/FTP"
            return kind
        if reply < 0:
            return "starttls-smtp" if command == b"STARTTLS" else "starttls-ftp" if command.startswith(
                b"AUTH TLS") or command.startswith(b"AUTH SSL") else kind
        code = server[s:s + 3]
        if command == b"STARTTLS":
            if code == b"220":
                step.client, step.server, step.verdict = end, reply, SWITCHED
            else:
                step.verdict, step.reason = REFUSED, f"STARTTLS refused ({code.decode('ascii')})"
            return "starttls-smtp"
        if command in (b"AUTH TLS", b"AUTH SSL", b"AUTH TLS-C"):
            if code == b"234":
                step.client, step.server, step.verdict = end, reply, SWITCHED
            else:
                step.verdict, step.reason = REFUSED, f"AUTH TLS refused ({code.decode('ascii')})"
            return "starttls-ftp"
        c, s = end, reply


def _imap(client: bytes, server: bytes, step: _Step) -> str | None:
    """A ``* OK`` greeting; the client's ``tag STARTTLS`` (RFC 3501 §6.2.1) answered by the
    server's line ``tag OK`` switches at the end of both lines."""
    if not b"* OK".startswith(server[:4].upper()):
        step.verdict = NONE
        return None
    if _line_end(server, 0) < 0:
        return None
    c = 0
    while True:
        end = _line_end(client, c)
        if end < 0:
            return "starttls-imap"
        tag, _, command = client[c:end].strip().partition(b" ")
        if command.upper() == b"STARTTLS" and tag:
            break
        c = end
    s = 0
    while True:
        line_end = _line_end(server, s)
        if line_end < 0:
            return "starttls-imap"
        answer_tag, _, status = server[s:line_end].partition(b" ")
        if answer_tag == tag:
            if status[:2].upper() == b"OK":
                step.client, step.server, step.verdict = end, line_end, SWITCHED
            else:
                step.verdict, step.reason = REFUSED, f"STARTTLS refused ({status.split(b' ')[0].decode('latin-1')})"
            return "starttls-imap"
        s = line_end


def _pop3(client: bytes, server: bytes, step: _Step) -> str | None:
    """A ``+OK`` greeting, one response per command (CAPA's +OK is multi-line, ended by a lone
    "."); ``STLS`` answered +OK (RFC 2595 §4) switches."""
    if not b"+OK".startswith(server[:3]):
        step.verdict = NONE
        return None
    s = _line_end(server, 0)
    if s < 0:
        return None
    c = 0
    while True:
        end = _line_end(client, c)
        if end < 0:
            return "starttls-pop3"
        command = client[c:end].strip().upper()
        reply = _line_end(server, s)
        if reply < 0:
            return "starttls-pop3"
        ok = server[s:s + 3] == b"+OK"
        if command == b"STLS":
            if ok:
                step.client, step.server, step.verdict = end, reply, SWITCHED
            else:
                step.verdict, step.reason = REFUSED, "STLS refused (-ERR)"
            return "starttls-pop3"
        if ok and command in (b"CAPA", b"LIST", b"UIDL"):
            close = server.find(b"\r\n.\r\n", reply - 2)
            if close < 0:
                return "starttls-pop3"
            reply = close + 5
        c, s = end, reply


# -- XMPP (RFC 6120 §5.4.2) ---------------------------------------------------------------------

def _element_end(data: bytes, name: bytes) -> tuple[int, int]:
    """(start, end) of the first ``<name …/>`` or ``<name …>…</name>`` element (end -1: not in
    yet; start -1: no such element yet)."""
    start = data.find(b"<" + name)
    while start >= 0 and data[start + 1 + len(name):start + 2 + len(name)] not in (b" ", b"/", b">", b""):
        start = data.find(b"<" + name, start + 1)
    if start < 0:
        return -1, -1
    close = data.find(b">", start)
    if close < 0:
        return start, -1
    if data[close - 1] == 0x2F:  # "/>"
        return start, close + 1
    end = data.find(b"</" + name + b">", close)
    return start, (-1 if end < 0 else end + len(name) + 3)


def _xmpp(client: bytes, server: bytes, step: _Step) -> str | None:
    """The client's stream header, its ``<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>``,
    and the server's ``<proceed/>`` (or ``<failure/>``): TLS begins after each."""
    if not (b"<?xml".startswith(client[:5]) or b"<stream:stream".startswith(client[:14])):
        step.verdict = NONE
        return None
    _, c = _element_end(client, b"starttls")
    if c < 0:
        return "starttls-xmpp"
    proceed_at, s = _element_end(server, b"proceed")
    failure_at, failed = _element_end(server, b"failure")
    if failure_at >= 0 and (proceed_at < 0 or failure_at < proceed_at):
        if failed >= 0:
            step.verdict, step.reason = REFUSED, "STARTTLS refused (<failure/>)"
        return "starttls-xmpp"
    if s >= 0:
        step.client, step.server, step.verdict = c, s, SWITCHED
    return "starttls-xmpp"


# -- LDAP StartTLS (RFC 4511 §4.14, BER per X.690) -----------------------------------------------

def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the BER element at ``at``; end -1 if not all in yet, -2 if no
    definite length (LDAP uses only definite ones, RFC 4511 §5.1)."""
    if len(data) < at + 2:
        return -1, -1, -1
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        start, length = at + 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            return tag, -1, -2
        if len(data) < at + 2 + count:
            return tag, -1, -1
        start, length = at + 2 + count, int.from_bytes(data[at + 2:at + 2 + count], "big")
    end = start + length
    return tag, start, (end if len(data) >= end else -1)


def _ldap(client: bytes, server: bytes, step: _Step) -> str | None:
    """The first LDAPMessage is an ExtendedRequest ([APPLICATION 23]) named StartTLS's OID; the
    server's ExtendedResponse ([APPLICATION 24]) with resultCode success (0) switches."""
    tag, start, end = _tlv(client, 0)
    if end == -2:
        step.verdict = NONE
        return None
    if end < 0:
        return None
    _, _, id_end = _tlv(client, start)  # messageID
    if id_end < 0 or id_end >= end:
        step.verdict = NONE
        return None
    op, op_start, op_end = _tlv(client, id_end)
    if op != 0x77 or op_end < 0 or _LDAP_STARTTLS_OID not in client[op_start:op_end]:
        step.verdict = NONE
        return None
    tag, start, s = _tlv(server, 0)
    if s == -2 or (tag >= 0 and tag != 0x30):
        step.verdict, step.reason = REFUSED, "the server's answer is not an LDAPMessage"
        return "starttls-ldap"
    if s < 0:
        return "starttls-ldap"
    _, _, id_end = _tlv(server, start)
    op, op_start, op_end = _tlv(server, id_end) if id_end > 0 else (-1, -1, -1)
    code_tag, code_start, code_end = _tlv(server, op_start) if op == 0x78 and op_end > 0 else (-1, -1, -1)
    if code_tag != 0x0A or code_end != code_start + 1:
        step.verdict, step.reason = REFUSED, "the server's answer is no ExtendedResponse"
    elif server[code_start] != 0:
        step.verdict, step.reason = REFUSED, f"StartTLS refused (resultCode {server[code_start]})"
    else:
        step.client, step.server, step.verdict = end, s, SWITCHED
    return "starttls-ldap"
