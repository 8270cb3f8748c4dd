"""Drive a client and a server against each other in memory, flight by flight.

A flight is what one side has to send after consuming everything the peer sent, so the flight
index counts half round trips: events seen after flight 2 cost one round trip, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handshake.endpoints import Event, StreamEndpoint


@dataclass
class Transcript:
    flights: list[tuple[str, bytes]] = field(default_factory=list)
    """("client"|"server", bytes) in the order they were delivered."""
    events: list[tuple[str, int, Event]] = field(default_factory=list)
    """(side, number of flights delivered so far, event)."""

    def of(self, side: str, kind: type) -> list[Event]:
        return [event for who, _, event in self.events if who == side and isinstance(event, kind)]

    def flight_of(self, side: str, kind: type) -> int:
        """How many flights had been delivered when ``side`` first reported ``kind``."""
        return next(n for who, n, event in self.events if who == side and isinstance(event, kind))

    def sent_by(self, side: str) -> int:
        return sum(len(data) for who, data in self.flights if who == side)


def exchange(client: StreamEndpoint, server: StreamEndpoint, *, chunk_bytes: int | None = None) -> Transcript:
    """Start both, then shuttle data_to_send between them until neither has anything to say.

    ``chunk_bytes`` splits every flight into pieces of that size, the way TCP segments would.
    """
    transcript = Transcript()
    server.start(0.0)
    client.start(0.0)
    return shuttle(client, server, transcript, chunk_bytes=chunk_bytes)


def shuttle(client: StreamEndpoint, server: StreamEndpoint, transcript: Transcript, *,
            chunk_bytes: int | None = None) -> Transcript:
    """Shuttle data_to_send between two started endpoints until neither has anything to say
    (again after a ``fetch``), adding to ``transcript``."""
    now = 0.001 * len(transcript.flights)
    while True:
        moved = False
        for name, sender, receiver in (("client", client, server), ("server", server, client)):
            data = sender.data_to_send()
            if data:
                moved = True
                transcript.flights.append((name, data))
                step = chunk_bytes or len(data)
                for offset in range(0, len(data), step):
                    now += 0.001
                    receiver.receive(data[offset : offset + step], now)
            _collect(transcript, "client", client)
            _collect(transcript, "server", server)
        if not moved:
            return transcript


def _collect(transcript: Transcript, name: str, endpoint: StreamEndpoint) -> None:
    while (event := endpoint.next_event()) is not None:
        transcript.events.append((name, len(transcript.flights), event))


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in a byte stream (RFC 8446 §5.1)."""
    records = []
    offset = 0
    while offset + 5 <= len(data):
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        records.append((data[offset], length))
        offset += 5 + length
    assert offset == len(data), "stream does not end on a record boundary"
    return records


@dataclass
class Wire:
    """Flights on a path with a fixed one-way delay, and the endpoints' timers (a server holding its
    answer): what left when, and when each event happened."""

    sent: list[tuple[float, str, bytes]] = field(default_factory=list)
    """(time, "client"|"server", bytes) in the order they left."""
    events: list[tuple[float, str, Event]] = field(default_factory=list)

    def time_of(self, side: str, kind: type) -> float:
        return next(t for t, who, event in self.events if who == side and isinstance(event, kind))

    def sent_by(self, side: str) -> list[tuple[float, bytes]]:
        return [(t, data) for t, who, data in self.sent if who == side]


def timed_exchange(client: StreamEndpoint, server: StreamEndpoint, delay_s: float, limit_s: float = 10.0) -> Wire:
    """Start both at time 0, then deliver every flight ``delay_s`` after it left and fire the
    endpoints' timers when due (``get_timer`` / ``handle_timer``), in time order, until nothing
    is left to happen."""
    wire = Wire()
    pending: list[tuple[float, int, str, bytes]] = []  # (arrival, order, receiver, data)
    sides = {"client": client, "server": server}
    server.start(0.0)
    client.start(0.0)
    now = 0.0

    def flush() -> None:
        for name, endpoint in sides.items():
            data = endpoint.data_to_send()
            if data:
                wire.sent.append((now, name, data))
                pending.append((now + delay_s, len(wire.sent), "server" if name == "client" else "client", data))
            while (event := endpoint.next_event()) is not None:
                wire.events.append((now, name, event))

    flush()
    while True:
        timers = [t for e in sides.values() if (t := getattr(e, "get_timer", lambda: None)()) is not None]
        due = [t for t, *_ in pending] + timers
        if not due:
            return wire
        now = max(now, min(due))
        assert now <= limit_s, f"not done after {limit_s} s"
        pending.sort()
        while pending and pending[0][0] <= now:
            _, _, receiver, data = pending.pop(0)
            sides[receiver].receive(data, now)
        for endpoint in sides.values():
            timer = getattr(endpoint, "get_timer", lambda: None)()
            if timer is not None and timer <= now:
                endpoint.handle_timer(now)  # type: ignore[attr-defined]
        flush()
