"""Nagle's algorithm as a trace shows it: a client segment that left the moment the ACK of the
short segment before it arrived, a round later, though nothing in that ACK was news to the client.

Nagle (RFC 896; Linux's ``tcp_nagle_check``, Minshall's variant) holds a segment shorter than
the MSS while an earlier short one is unacknowledged, unless the socket has TCP_NODELAY. Held,
the data leaves when the ACK comes in; the peer may delay that ACK (Linux: 40 ms and more, when
it has nothing to send), which is the classic stall. A capture shows neither the writes nor the
socket option, so the watch reads the signature:

- a short client segment went out, and no more than nine segments' worth were unacknowledged
  until the server acknowledged it (a congestion window, ten segments at least before a loss,
  RFC 6928, did not hold the client back);
- the next segment continues the stream right after all the client sent, a round later;
- it left at once (``PathLeg.client_at_once``) on the first server packet acknowledging the
  short one.

A bare ACK, with no server data after it, carries nothing the client could have waited for, so
such a release is Nagle's. An ACK riding on data, or followed by some (TLS 1.3 tickets, an
HTTP/2 SETTINGS ACK), might have been awaited, so it counts only where the held segment
continues a request already begun (the caller decides: a client does not wait for the server's
words in the middle of its own request). Sans-IO.
"""

from __future__ import annotations

from typing import Final

from ..server_time import PathLeg

DELAYED_ACK_NOTE_S: Final = 0.010
"""An ACK the server held this long was a delayed one (Linux's are 40 ms and more): below it,
the ACK left as the data arrived (a quick ACK, or one riding on data sent at once)."""


class NagleHold:
    """A client segment Nagle's algorithm held for the ACK of the one before it."""

    __slots__ = ("round", "waited_s", "ack_delay_s", "bare_release", "in_request")

    def __init__(self, round: int, waited_s: float, ack_delay_s: float | None, bare_release: bool) -> None:
        self.round = round
        """The held segment's round (one past the one before it)."""
        self.waited_s = waited_s
        """From the segment before it to it, at the capture point."""
        self.ack_delay_s = ack_delay_s
        """How long the server held the segment before it before the ACK that released this one
        (a delayed ACK); None where the path is not measured."""
        self.bare_release = bare_release
        """The release was a bare ACK (not one riding on data)."""
        self.in_request = False
        """The held segment continued a request already begun (its second write)."""

    @property
    def cause(self) -> str:
        """"Nagle: the request's second write waited 142 ms for the ACK of its first, which the
        server delayed 42 ms", or "...: a round trip" where the ACK left at once."""
        held = "the request's second write" if self.in_request else "a client write"
        before = "its first" if self.in_request else "the short segment before it"
        line = f"Nagle: {held} waited {self.waited_s * 1000:.0f} ms for the ACK of {before}"
        delay = self.ack_delay_s
        if self.bare_release and delay is not None and delay >= DELAYED_ACK_NOTE_S:
            return f"{line}, which the server delayed {delay * 1000:.0f} ms"
        return f"{line}: a round trip"


class _Short:
    """The newest short client segment (Linux's ``snd_sml``: Nagle holds data while it is out)."""

    __slots__ = ("end", "time", "round", "peak")

    def __init__(self, end: int, time: float, round: int, in_flight: int) -> None:
        self.end, self.time, self.round = end, time, round
        self.peak = in_flight
        """The most client bytes unacknowledged since it was sent."""


INITIAL_WINDOW_SEGMENTS: Final = 10
"""RFC 6928's initial window: a congestion window is no smaller before any loss."""


class NagleWatch:
    """Fed the client's new data segments and the server's ACKs (client stream offsets), in
    capture order; names each segment that fits the signature."""

    def __init__(self) -> None:
        self._sent_end = -1
        """Client stream offset just past the newest data segment."""
        self._short: _Short | None = None
        self._acked = 0
        """The highest client stream offset the server acknowledged."""
        self._release: tuple[float, bool] | None = None
        """The first server packet to acknowledge ``_short``: (time, bare)."""

    def server_ack(self, acked: int, time: float, bare: bool) -> None:
        short, release = self._short, self._release
        if short is not None and release is None and acked >= short.end:
            self._release = (time, bare)
        elif release is not None and release[1] and not bare:
            # Data after the bare release: the client may have waited for it (a TLS client's
            # answer to the server's flight follows the ACK that came ahead of that flight).
            self._release = (release[0], False)
        self._acked = max(self._acked, acked)

    def client_data(self, start: int, end: int, time: float, rnd: int, smss: int, path: PathLeg) -> NagleHold | None:
        """A client segment of new data (``smss``: the payload of a full one); a hold where it
        fits the signature (the caller decides whether an ACK riding on data counts)."""
        short, release, sent_end = self._short, self._release, self._sent_end
        self._sent_end = end
        if end - start < smss:
            self._short, self._release = _Short(end, time, rnd, end - self._acked), None
        elif short is not None and release is None:
            short.peak = max(short.peak, end - self._acked)
        if short is None or release is None or start != sent_end or rnd <= short.round:
            return None
        if short.peak > (INITIAL_WINDOW_SEGMENTS - 1) * smss:
            return None  # a congestion window may have been full: it, not Nagle, may have held this
        released_at, bare = release
        if not path.client_at_once(time, released_at):
            return None  # the client took its time
        return NagleHold(rnd, time - short.time, path.server_time(released_at, short.time), bare)
