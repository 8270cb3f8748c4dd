"""The response in records nobody can open: causality and timing instead of the key log.

Without keys a TLS 1.3 connection's records after the handshake are all "application data" to
the eye (RFC 8446 §5.2: the true type is inside the encryption), and so are a TLS 1.2
connection's, tickets aside; a QUIC connection's 1-RTT packets are opaque altogether. What the
capture still shows (DESIGN.md §6):

- **Which client record is the request.** TLS 1.2: the client's first ApplicationData record
  (its type is in clear). TLS 1.3: the record after the client's Finished, which is the first
  encrypted client record of exactly a Finished's size (4 + the suite's hash length, plus the
  inner type byte and the 16-byte tag), or, with client certificates first, the first of that
  size among the client's first few records. QUIC: the client's first 1-RTT (short header)
  packet, which the client can only send once it has the server's handshake flight.
- **Causality.** A server record whose first packet's ACK number does not cover the request was
  sent before the request reached the server: it is not the answer (nginx sends its HTTP/2
  SETTINGS the moment a TLS 1.2 handshake ends, a round trip before it has the request). QUIC
  has no clear ACK for 1-RTT packets, so there the times say it: a server packet that left
  before the request could have reached the server (``PathLeg.before_it_arrived``) is not the
  answer.
- **Timing.** What a server sends *at once* on the client's Finished and request — TLS 1.3
  NewSessionTickets, HTTP/2 SETTINGS / SETTINGS ACK / WINDOW_UPDATE — is its own chatter when a
  later record follows after server time (``server_time.PathLeg``): the answer is then that
  later record, provided the client sent nothing in between that could be another request (a
  record bigger than HTTP/2's control frames), and nothing it could be the at-once reaction to
  (an ACK that opened the server's congestion window, which clocks out a long answer), and only
  after a quiet spell (a paced answer follows its first packets closely). Within
  the at-once records, one too big for chatter (``CHATTER_MAX``: a ticket or a SETTINGS frame
  is a few hundred bytes at most) is the answer itself. Where no later record follows, the first record
  after the request is the answer, and its time is the chatter's within the same burst. QUIC
  servers chatter the same way on the client's Finished: HANDSHAKE_DONE, NEW_TOKEN,
  NEW_CONNECTION_ID, tickets. A QUIC server must send HANDSHAKE_DONE the moment its handshake
  completes (RFC 9001 §4.1.2), in one burst with the rest of its chatter; so within the
  at-once spell, a packet that follows after a pause longer than the wire explains
  (``GROUP_GAP_S`` plus its own serialization at the bottleneck, from ``PathLeg``'s packet
  pairs), while all before it were chatter-sized (``GROUP_CHATTER_MAX``; a full packet is an
  answer going on), is the answer the server computed meanwhile (``grouped``).

So a count stays a count without keys, its basis "inferred"; what a key log would settle is
whether the at-once records were the answer, and a TLS 1.3 alert or HTTP/2 GOAWAY that is the
only later record (both shorter than any answer, so never taken for one).
"""

from __future__ import annotations

from typing import Final

from .server_time import PathLeg

TLS13_RECORD_OVERHEAD: Final = 17
"""RFC 8446 §5.2: the inner content type byte and the AEAD tag (16 bytes for every TLS 1.3 suite
but CCM_8, which nothing deploys)."""
SMALL_CLIENT_RECORD: Final = 24
"""Plaintext bytes at or under which a client record after the request is HTTP/2 control (SETTINGS
ACK 9, WINDOW_UPDATE or RST_STREAM 13, PING 17) or an alert (2), not another request."""
SMALLEST_ANSWER: Final = 19
"""Plaintext bytes of the shortest HTTP answer ("HTTP/1.1 200 OK\\r\\n\\r\\n"); a TLS alert (2),
an HTTP/2 GOAWAY or PING (17) is shorter."""
SMALLEST_ANSWER_RECORD: Final = 10
"""Plaintext bytes under which a TLS record cannot start an answer: an HTTP/2 HEADERS frame is a
9-byte frame header and at least one byte of HPACK (an HTTP/1.x status line is longer still),
while a SETTINGS ACK is the header alone (nginx sent one 2 ms ahead of its answer to chromium)."""
CHATTER_MAX: Final = 1500
"""Plaintext bytes above which an at-once server record is no ticket (RFC 8446 §4.6.1: a
lifetime, a nonce and an opaque ticket, a few hundred bytes from every server seen) and no
HTTP/2 SETTINGS, WINDOW_UPDATE or PING: it is the answer."""
GROUP_GAP_S: Final = 0.001
"""Seconds of pause (beyond the wire's own) after which an at-once packet starts a group of its
own: packets of one burst leave microseconds apart; aioquic's answer followed its HANDSHAKE_DONE
by 1.3 ms on this machine and by 3-9 ms in CI."""
GROUP_CHATTER_MAX: Final = 1000
"""Plaintext bytes at or under which a QUIC packet may be chatter (the largest packet Google sent
at once on curl's request, before its answer after server time, was 641 bytes: the wild
captures); a fuller packet is an answer going on."""
_CLIENT_RECORDS_BEFORE_FINISHED: Final = 4
"""Client records (Certificate, CertificateVerify) that may precede its Finished."""
_KEPT_CLIENT_PACKETS: Final = 32

NONE: Final = 0
FIRST: Final = 1
"""The first record after the request: the answer, maybe to be replaced by a later one."""
LATER: Final = 2
"""A record after server time, replacing an at-once first one: the answer, finally."""


class KeylessResponse:
    """Fed a TLS connection's undecrypted records in capture order, finds the request and the
    answer as the module docstring says (sans-IO)."""

    def __init__(self, grouped: bool = False) -> None:
        self.grouped = grouped
        """The server's chatter leaves in one burst ahead of the answer (QUIC): see the module."""
        self._chatter_sized = True
        """Every at-once packet so far was small enough to be chatter (``GROUP_CHATTER_MAX``)."""
        self.request_end: int | None = None
        """Client stream offset just past the request record."""
        self.request_time = -1.0
        """Capture time of the packet that completed the request record."""
        self.request_round: int | None = None
        self.final = False
        """The answer cannot change any more."""
        self.at_once_records = 0
        """Records the server sent at once on the request (before the answer, when ``replaced``)."""
        self.replaced = ""
        """Why the answer is a later record than the first after the request (LATER): "time"
        (it came after server time), "size" (too big for chatter) or "group" (after a pause
        within the at-once burst); "" if it is the first."""
        self._client_records = 0
        self._finished_seen = False
        self._answer_time = -1.0
        self._last_server_time = -1.0
        self._client_data_since = False
        self._client_seen: list[float] = []
        """When the client's latest packets (ACKs too) after the request were seen (the last
        ``_KEPT_CLIENT_PACKETS``)."""

    def client_packet(self, time: float) -> None:
        """Any client packet, pure ACKs included (called for every one)."""
        if self.request_end is not None and time > self.request_time:
            seen = self._client_seen
            seen.append(time)
            if len(seen) > _KEPT_CLIENT_PACKETS:
                del seen[0]

    def client_record(self, tls13: bool, plaintext_bytes: int, fragment_bytes: int, finished_bytes: int | None,
                      end_offset: int, time: float, rnd: int, start_offset: int | None = None) -> bool:
        """A client record that carries no visible handshake type; True when it is the request,
        or the request's rest (``start_offset``, where streams have offsets: TCP)."""
        if tls13 and not self._finished_seen:
            self._client_records += 1
            if fragment_bytes == finished_bytes or finished_bytes is None or \
                    self._client_records >= _CLIENT_RECORDS_BEFORE_FINISHED:
                self._finished_seen = True
            return False
        if self.request_end is None:
            self.request_end, self.request_time, self.request_round = end_offset, time, rnd
            return True
        if start_offset == self.request_end and not self.final and plaintext_bytes > SMALL_CLIENT_RECORD and \
                self.request_round is not None and rnd > self.request_round:
            # The request's rest, right behind it in the stream but a round later (Nagle's
            # algorithm held it for the ACK of the first part): the answer is to the whole, and
            # what the server sent at once on the first part was its own (tickets, HTTP/2 control).
            self.request_end, self.request_time, self.request_round = end_offset, time, rnd
            self._answer_time = -1.0
            self.at_once_records = 0
            self._client_seen.clear()
            return True
        if self._answer_time >= 0 and time > self.request_time:
            if plaintext_bytes <= 2:
                self.final = True  # the client's close_notify: it has what it came for
            elif plaintext_bytes > SMALL_CLIENT_RECORD:
                self._client_data_since = True
        return False

    def server_record(self, plaintext_bytes: int, start_time: float, had_request: bool, path: PathLeg,
                      chatter: bool) -> int:
        """A server record (``start_time``: when the packet that carried its first byte was
        seen; ``had_request``: whether the server provably had the request when it sent that
        packet): NONE, FIRST or LATER.

        ``chatter``: the server may send records of its own after the handshake (TLS 1.3 tickets,
        HTTP/2): an at-once first record may then give way to a later one."""
        if self.final or self.request_end is None or not had_request or plaintext_bytes <= 2:
            return NONE
        if not self.grouped and plaintext_bytes < SMALLEST_ANSWER_RECORD:
            return NONE  # an HTTP/2 SETTINGS ACK: whenever it comes, it starts no answer
        at_once = path.at_once(start_time, self.request_time)
        if self._answer_time >= 0 and (not at_once or self.grouped) and plaintext_bytes < SMALLEST_ANSWER:
            # Too small to be an answer, and no part of the at-once burst (or in QUIC's, whose
            # pauses count): an HTTP/2 PING, a QPACK instruction on HTTP/3's encoder stream, an
            # alert. Passed over, so that an answer close behind it (aioquic: its encoder
            # stream's 4 bytes and an ACK, then the HEADERS) is still judged by the quiet before it.
            return NONE
        quiet_before = start_time - self._last_server_time
        self._last_server_time = start_time
        if self._answer_time < 0:
            self._answer_time = start_time
            self.at_once_records = 1
            self._chatter_sized = plaintext_bytes <= GROUP_CHATTER_MAX
            if not chatter or at_once is not True or plaintext_bytes > CHATTER_MAX:
                self.final = True
            return FIRST
        if at_once:
            if plaintext_bytes > CHATTER_MAX:
                self.final, self.replaced = True, "size"
                return LATER
            if self.grouped and self._chatter_sized and plaintext_bytes >= SMALLEST_ANSWER and \
                    quiet_before > GROUP_GAP_S + path.wire_time(plaintext_bytes):
                self.final, self.replaced = True, "group"
                return LATER
            self._chatter_sized = self._chatter_sized and plaintext_bytes <= GROUP_CHATTER_MAX
            self.at_once_records += 1
            return NONE
        if quiet_before <= path.tolerance_s or any(
                path.at_once(start_time, seen) is not False and not path.before_it_arrived(start_time, seen)
                for seen in self._client_seen):
            # Close behind the records before it (paced out) or clocked out by a client ACK: the
            # rest of an answer already begun, not one that waited for server time.
            self.final = True
            return NONE
        if self._client_data_since:
            self.final = True  # an answer to something else: the first stands
            return NONE
        self.final, self.replaced = True, "time"
        return LATER

    def note(self, unit: str, chatter: str) -> str:
        """What an inferred count rests on, in words (``unit``: "record", "1-RTT packet";
        ``chatter``: what the server sends of its own)."""
        if not self.replaced:
            return _FIRST_NOTES.get(unit) or _first_note(unit)
        how = _HOW.get(self.replaced) or f"too big to be its own ({chatter})"
        before = "the one" if self.at_once_records == 1 else f"the {self.at_once_records}"
        were = "was" if self.at_once_records == 1 else "were"
        what = (f"the first {unit} the server sent {how}; {before} it sent at once on the request before it "
                f"{were} taken for its own")
        return f"inferred without a key log: the response is {what}; the key log would settle it"


_HOW: Final = {"time": "after server time", "group": "after a pause within its at-once burst"}


def _first_note(unit: str) -> str:
    return (f"inferred without a key log: the response is the first {unit} the server sent after it had the "
            "request; the key log would settle it")


_FIRST_NOTES: Final = {unit: _first_note(unit) for unit in ("record", "1-RTT packet")}
"""The common note, made once (a capture of thousands of connections repeats it)."""
