"""The virtual clock against an endpoint timer that firing does not move (found with aioquic:
its loss timer, sent_time + delay, can fall on an instant where its own check,
sent_time <= now - delay, is false in floating point). A real clock moves on; so must this one."""

from __future__ import annotations

from handshake.net.link import LinkConfig
from handshake.net.sim import STUCK_FIRINGS, TIMER_NUDGE_S, Simulation
from handshake.net.tcp import TcpConfig

SENT, DELAY = 0.1, 0.7  # 0.1 + 0.7 == 0.7999999999999999, yet 0.7999999999999999 - 0.7 < 0.1


class FloatTimer:
    """A datagram endpoint with one timer due, by its own test, only once now - DELAY >= SENT."""

    def __init__(self) -> None:
        self.fired_at: float | None = None
        self.calls = 0

    def start(self, now: float) -> None: ...

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        return []

    def get_timer(self) -> float | None:
        return None if self.fired_at is not None else SENT + DELAY

    def handle_timer(self, now: float) -> None:
        self.calls += 1
        assert self.calls < 1000, "the clock never moved past a timer that would not fire"
        if SENT <= now - DELAY:
            self.fired_at = now

    def next_event(self) -> None:
        return None


def test_a_timer_that_will_not_fire_at_its_instant_fires_a_microsecond_later():
    assert SENT + DELAY - DELAY < SENT  # the float trap itself
    sim = Simulation(LinkConfig(delay_s=0.01), client_tcp=TcpConfig(), server_tcp=TcpConfig())
    endpoint = FloatTimer()
    sim.client.bind_udp(endpoint)
    sim.run(lambda: endpoint.fired_at is not None, limit_s=5)
    assert endpoint.fired_at is not None
    assert SENT + DELAY < endpoint.fired_at <= SENT + DELAY + TIMER_NUDGE_S * 1.001
    assert endpoint.calls == 1 + STUCK_FIRINGS + 1  # its instant, the repeats there, a microsecond on
