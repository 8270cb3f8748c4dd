"""Pages on the kernel engine (issue 12): the same loads as the simulator's over real Linux TCP
and UDP behind the shim, and the same page_ms within 5 % (median of 5) where the sim's TCP
carries the page as Linux does -- beyond the time the endpoints' own code ran before the page's
last byte, which the sim's virtual clock has none of and which only ever adds (h2 and aioquic
are pure Python: 20-50 ms for HTTP/2 here, 75-95 ms for HTTP/3, much of it while the network
was busy anyway).

Measured here at 100 ms RTT (medians of 3 at first): 10x20KB over HTTP/1.1 922 ms against the
sim's 900, over HTTP/2 724 against 700, over HTTP/3 677 against 662; in CI HTTP/2 once took
735.6 (5.1 % over, with 21-51 ms of endpoint code). A 30x50KB page is not held
to it yet: its medians agree (HTTP/1.1 1435, HTTP/2 1028, HTTP/3 1010 ms against 1400, 1000 and
965), but about one HTTP/2 run in five takes Linux a round trip more (1121-1186 ms): the client's
receive window (autotuning starts at 64 KB and grows with what the application read in the last
round trip) held a flight at 66-98 KB instead of the 133 KB slow start had ready; the sim's
receiver, whose application reads at once, offers what Linux's fast runs do. Both engines run
CUBIC (the kernel engine's own sockets choose it).
"""

from __future__ import annotations

import statistics

import pytest

from handshake.analysis.quic.flows import quic_flows
from handshake.analysis.tcp.flows import tcp_flows
from handshake.kernel.engine import KernelSession
from handshake.net.link import LinkConfig
from handshake.page import HTTP1_CONNECTIONS, parse_page
from handshake.runner import RunOptions, row_from_run, run_sim
from handshake.variants import CATALOG

LINK = LinkConfig.from_rtt(0.1)
PAGE = parse_page("10x20KB")
RUNS = 5
AGREEMENT = 0.05
CASES = {"tls13 + HTTP/1.1": ("tls13", "1.1"), "tls13 + HTTP/2": ("tls13", "2"), "quic + HTTP/3": ("quic", "2")}


@pytest.fixture(scope="module")
def kernel_pages():
    """Each case run RUNS times in one pair of namespaces (the fixture of ``conftest`` checks
    that they are gone after)."""
    out = {}
    with KernelSession(LINK) as session:
        for name, (variant, http) in CASES.items():
            options = RunOptions(page=PAGE, http=http)
            out[name] = [session.run(CATALOG[variant], LINK, options) for _ in range(RUNS)]
    return out


@pytest.mark.parametrize("name", CASES)
def test_the_kernel_loads_the_page_as_the_sim_does(kernel_pages, name):
    variant, http = CASES[name]
    runs = kernel_pages[name]
    assert all(run.error is None for run in runs), [run.error for run in runs]
    rows = [row_from_run(run) for run in runs]
    sim = row_from_run(run_sim(CATALOG[variant], LINK, RunOptions(page=PAGE, http=http)))
    assert {row.round_trips for row in rows} == {sim.round_trips}
    assert {row.http for row in rows} == {sim.http}
    kernel_ms = statistics.median(row.page_ms for row in rows)  # type: ignore[type-var]
    busy_ms = statistics.median(run.endpoint_busy_page_s * 1000 for run in runs)  # type: ignore[operator]
    assert sim.page_ms is not None
    seen = ([row.page_ms for row in rows], f"endpoint code {busy_ms:.1f} ms", sim.page_ms)
    assert kernel_ms >= (1 - AGREEMENT) * sim.page_ms, seen
    assert kernel_ms <= (1 + AGREEMENT) * sim.page_ms + busy_ms, seen


def test_http1_opens_six_connections_and_http2_one(kernel_pages):
    """Every connection of the measured page is in the trace, and none of another run."""
    for name, connections in (("tls13 + HTTP/1.1", HTTP1_CONNECTIONS), ("tls13 + HTTP/2", 1)):
        for run in kernel_pages[name]:
            flows = tcp_flows(run.trace.packets)
            first = next(i for i, flow in enumerate(flows) if flow.client[1] == run.client_port)
            assert len(flows) - first == connections
    for run in kernel_pages["quic + HTTP/3"]:
        assert len(quic_flows(run.trace.packets)) == 1


def test_a_lost_answer_segment_blocks_http2_streams_on_real_tcp():
    """One server segment among the objects after the HTML dropped by the shim: Linux resends it
    and the client's receive queue holds the records behind it; over HTTP/2 the trace shows
    streams that waited for another's bytes (``analysis.http.head_of_line``), without the drop
    none; over HTTP/3 no stream waits for another's (QUIC orders each stream on its own)."""
    drop = RunOptions(page=PAGE, http="2", drops=("server-data:60",))
    with KernelSession(LINK) as session:
        lost = session.run(CATALOG["tls13"], LINK, drop)
        clean = session.run(CATALOG["tls13"], LINK, RunOptions(page=PAGE, http="2"))
        quic = session.run(CATALOG["quic"], LINK, drop)
    assert lost.dropped == ("server-data:60",) and quic.dropped == ("server-data:60",)
    row = row_from_run(lost)
    assert row.head_of_line_ms is not None and row.head_of_line_ms > 0, row.causes
    assert any(cause.startswith("head-of-line blocking: ") for cause in row.causes), row.causes
    assert row_from_run(clean).head_of_line_ms == 0.0
    quic_row = row_from_run(quic)
    assert quic_row.head_of_line_ms == 0.0, quic_row.causes
    assert not any("head-of-line" in cause for cause in quic_row.causes)


LOSS_POSITIONS = (5, 13, 29, 49, 101, 121)
"""Server packets whose loss costs Linux the same in every run (4 of 4 each: 1512-1529, 1316-1318,
910-912, 810-812, 811-812 and 810-813 ms; the sim 1500, 1300, 900, 800, 800, 800). Others, such
as 9, 25 and 45, cost Linux a round trip more in some runs and not in others."""
SAME_REPAIR_MS = 60
"""A round trip is 100: within this, both engines paid the same round trips for the loss."""


def test_a_lost_segment_costs_both_engines_the_same_round_trips():
    """SACK and RACK in the sim's TCP against Linux's: one server packet dropped, the page ends
    within SAME_REPAIR_MS of the sim's on real TCP (a recovery by timeout would be 300 ms or more
    late), and the client offered the window Linux does (64,240 bytes in its SYN, 64,512 after)."""
    sim_ms, kernel_ms = {}, {}
    with KernelSession(LINK) as session:
        for n in LOSS_POSITIONS:
            options = RunOptions(page=PAGE, http="2", drops=(f"server-data:{n}",))
            sim_ms[n] = row_from_run(run_sim(CATALOG["tls13"], LINK, options)).page_ms
            run = session.run(CATALOG["tls13"], LINK, options)
            assert run.error is None and run.dropped == (f"server-data:{n}",)
            kernel_ms[n] = row_from_run(run)
            windows = [packet.segment.window << (10 if not packet.segment.syn else 0)
                       for packet in tcp_flows(run.trace.packets)[-1].packets if packet.from_client][:2]
            assert windows == [64240, 64512], windows
    gaps = {n: kernel_ms[n].page_ms - sim_ms[n] for n in LOSS_POSITIONS}
    assert all(-5 < gap < SAME_REPAIR_MS for gap in gaps.values()), (gaps, sim_ms)
