"""Run variants on an engine and turn each trace into a comparison row.

A warm variant first makes one connection to fetch what it needs (a session ticket, a TFO
cookie, or both); the row counts only the connection after it. Rows are counted from the trace
by ``analysis``, the same code that reads a user's pcap.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from handshake.analysis.http.head_of_line import (HeadOfLineBlocking, combined, head_of_line_blocking,
                                                  quic_head_of_line_blocking)
from handshake.analysis.report import ConnectionReport
from handshake.analysis.tcp.connection import analyze_tcp_flow
from handshake.analysis.tcp.flows import TcpFlow, tcp_flows
from handshake.analysis.keylog import KeyLog, parse_keylog
from handshake.analysis.quic.connection import analyze_quic_flow, quic_flows
from handshake.analysis.quic.flows import QuicFlow
from handshake.endpoints.certs import make_chain
from handshake.endpoints.events import ResponseReceived
from handshake.net.link import LinkConfig
from handshake.net.drops import PacketDropper
from handshake.net.sim import SERVER_ADDR, Session, Simulation, SimulationTimeout
from handshake.net.tcp import TcpConfig
from handshake.page import after_the_html, page_end
from handshake.trace.record import Trace
from handshake.variant_run import RunOptions, VariantEndpoints, VariantRun
from handshake.variants import Variant

if TYPE_CHECKING:  # aioquic costs ~0.12 s to import: only QUIC variants load it
    from handshake.endpoints.quic_client import QuicHttpClient

__all__ = [
    "RESPONSE_LIMIT_S", "CLOSE_LIMIT_S", "RunOptions", "VariantEndpoints", "VariantRun", "Row", "compare",
    "row_from_run", "run_sim", "summarize_runs", "write_capture", "http_version",
]

RESPONSE_LIMIT_S = 300.0
"""Virtual seconds a connection may take to get its response (six SYN retries take 127 s)."""
CLOSE_LIMIT_S = 10.0


@dataclass
class Row:
    """One line of the comparison (DESIGN.md §3 ROW)."""

    variant: str
    transport: str
    tls_version: str | None
    http: str | None
    """The HTTP version the trace shows was spoken ("1.1", "2", "3"): ALPN's choice, HTTP/1.1
    where none was made; None where the trace cannot tell."""
    round_trips: int | None
    expected_round_trips: int
    setup_round_trips: int | None
    expected_setup_round_trips: int
    ttfb_ms: float | None
    bytes_client: int
    bytes_server: int
    packets: int
    causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resumed: bool | None = None
    early_data: str = "none"
    tfo: str = "none"
    warmup_connections: int = 0
    server_ms: float | None = None
    """How long the server held the request before its first response byte, as the analysis
    reads it from the trace (``ConnectionReport.server_s``), never the knob's value."""
    page_ms: float | None = None
    """With ``--page``: from the first packet to the last byte of the page's last object, read
    from the trace (``page.page_end``); None otherwise."""
    head_of_line_ms: float | None = None
    """With ``--page`` over HTTP/2 or HTTP/3: how long streams' arrived bytes waited behind other
    streams' missing ones, summed over streams, read from the trace (``analysis.http.head_of_line``;
    HTTP/3's is 0 by QUIC's per-stream order and HTTP/1.1's by one answer at a time per
    connection, which the count shows rather than assumes); None where it was not measured (no
    page, no key for the records)."""
    spread: dict[str, Any] | None = None
    """With several seeded runs: {"runs", "complete", "ttfb_ms": [min, median, max], "round_trips": [min, max]}."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.spread is None:
            del out["spread"]
        if self.page_ms is None:
            del out["page_ms"]  # a page run's field (JSON contract, DESIGN.md §3)
        if self.head_of_line_ms is None:
            del out["head_of_line_ms"]  # an HTTP/2 page's
        return out


def _responses(session: Session) -> int:
    """Responses complete on a connection."""
    return sum(isinstance(e, ResponseReceived) for e in session.events)


def _close(sim: Simulation, sessions: list[Session]) -> None:
    for session in sessions:
        session.close()
    try:
        sim.run(lambda: all(session.closed for session in sessions), CLOSE_LIMIT_S)
    except SimulationTimeout:
        pass  # a lossy link may leave the FIN exchange unfinished; the responses are what counts


def _close_quic(sim: Simulation, client: QuicHttpClient, port: int) -> None:
    """Close, let the CONNECTION_CLOSE cross, and unbind: the client's timers must not run on
    into the next connection."""
    client.close()
    try:
        sim.run(lambda: sim.wire_is_quiet, CLOSE_LIMIT_S)
    except SimulationTimeout:
        pass
    sim.client.udp.pop(port, None)


def _tcp_exchange(sim: Simulation, endpoints: VariantEndpoints, ticket: Any, want_ticket: bool) -> Any:
    """One TCP connection: connect, wait for the whole response, close. Returns the session ticket."""
    session = sim.client.connect(SERVER_ADDR, endpoints.port, endpoints.client(ticket))
    sim.run(lambda: _responses(session) > 0, RESPONSE_LIMIT_S + endpoints.options.server_time_s)
    _close(sim, [session])
    return session.endpoint.session if want_ticket else None  # type: ignore[attr-defined]


def _quic_connection(sim: Simulation, endpoints: VariantEndpoints, ticket: Any, want_ticket: bool,
                     path: str = "/", then: list[str] | None = None) -> tuple[int, Any]:
    """One QUIC connection: wait for the response (``path``; then, for a page, every target of
    ``then`` at once), and the ticket, which may come a round trip later (DESIGN.md §4); close,
    and let the CONNECTION_CLOSE cross. Returns the client's port and the ticket (None unless
    wanted)."""
    client = endpoints.quic_client(ticket, path=path)
    binding = sim.client.bind_udp(client)
    limit = RESPONSE_LIMIT_S + endpoints.options.server_time_s
    sim.run(lambda: client.response is not None, limit)
    if then is not None:
        client.fetch(then)
        sim.run(lambda: client.done, limit)
    if want_ticket:
        sim.run(lambda: client.session_ticket is not None, CLOSE_LIMIT_S)
    _close_quic(sim, client, binding.port)
    return binding.port, client.session_ticket if want_ticket else None


def _quic_exchange(sim: Simulation, endpoints: VariantEndpoints, ticket: Any, want_ticket: bool) -> Any:
    """One QUIC connection for one answer (``_quic_connection``). Returns the ticket."""
    return _quic_connection(sim, endpoints, ticket, want_ticket)[1]


def _tcp_page(sim: Simulation, endpoints: VariantEndpoints, ticket: Any) -> int:
    """A page over TCP (``page.py``): the HTML on the first connection, then every other object
    at once -- on it over HTTP/2; over it and up to five more over HTTP/1.1, each paying its own
    handshake with what the variant carries (the warm-up's ticket, the TFO cookie). Returns the
    first connection's client port."""
    page = endpoints.options.page
    assert page is not None
    targets = page.targets
    limit = RESPONSE_LIMIT_S + endpoints.options.server_time_s
    first = sim.client.connect(SERVER_ADDR, endpoints.port, endpoints.client(ticket, path=targets[0]))
    sim.run(lambda: _responses(first) > 0, limit)
    plan = after_the_html(targets, getattr(first.endpoint, "alpn", None) == "h2")
    first.endpoint.fetch(plan[0])  # type: ignore[attr-defined]
    sessions, wanted = [first], [1 + len(plan[0])]
    for share in plan[1:]:
        endpoint = endpoints.client(ticket, path=share[0])
        endpoint.fetch(share[1:])  # type: ignore[attr-defined]
        sessions.append(sim.client.connect(SERVER_ADDR, endpoints.port, endpoint))
        wanted.append(len(share))
    sim.run(lambda: all(_responses(s) >= n for s, n in zip(sessions, wanted)), limit)
    _close(sim, sessions)
    return first.tcp.local_port


def _quic_page(sim: Simulation, endpoints: VariantEndpoints, ticket: Any) -> int:
    """A page over QUIC: the HTML, then every other object at once, a stream each. Returns the
    connection's client port."""
    page = endpoints.options.page
    assert page is not None
    targets = page.targets
    return _quic_connection(sim, endpoints, ticket, False, targets[0], targets[1:])[0]


def run_sim(variant: Variant, link: LinkConfig, options: RunOptions | None = None) -> VariantRun:
    """Run one variant on the virtual-time engine."""
    options = options or RunOptions()
    dropper = PacketDropper(options.drops)
    with tempfile.TemporaryDirectory(prefix="handshake-") as workdir:
        keylog_path = Path(workdir) / "keys.log"
        endpoints = VariantEndpoints(variant, options, keylog_path)
        tcp = TcpConfig(fastopen=variant.tfo)
        client_tcp = replace(tcp, nodelay=options.nodelay)
        sim = Simulation(link, client_tcp=client_tcp, server_tcp=tcp, drop=dropper, seed=link.seed)
        if variant.transport == "quic":
            sim.server.bind_udp(endpoints.quic_server(), endpoints.port)
            exchange = _quic_exchange
        else:
            sim.server.listen(endpoints.port, endpoints.server)
            exchange = _tcp_exchange
        warmups = 0
        error = None
        client_port: int | None = None
        try:
            ticket = None
            if variant.warm and not options.cold:
                ticket = exchange(sim, endpoints, None, variant.resume)
                warmups = 1
            dropper.armed = True
            if options.page is None:
                exchange(sim, endpoints, ticket, False)
            else:
                client_port = (_quic_page if variant.transport == "quic" else _tcp_page)(sim, endpoints, ticket)
        except SimulationTimeout as timeout:
            error = str(timeout)
        keylog = keylog_path.read_text() if keylog_path.exists() else ""
    return VariantRun(variant, Trace(list(sim.trace), keylog), warmups, error, tuple(dropper.dropped), options,
                      client_port=client_port)


_Flow = TypeVar("_Flow", TcpFlow, QuicFlow)


def _measured(flows: list[_Flow], client_port: int | None) -> _Flow | None:
    """The last flow from ``client_port`` (None: the last flow); None if there is none."""
    for flow in reversed(flows):
        if client_port is None or flow.client[1] == client_port:
            return flow
    return None


_HTTP_BY_ALPN = {"h2": "2", "h3": "3", "http/1.1": "1.1"}


def http_version(report: ConnectionReport) -> str | None:
    """What HTTP the connection spoke, by ALPN (RFC 7301): without a choice, TLS over TCP and
    plain TCP speak HTTP/1.1; a QUIC connection always chooses (RFC 9114 §3.1)."""
    if report.alpn is not None:
        return _HTTP_BY_ALPN.get(report.alpn, report.alpn)
    if report.transport == "tcp" and (report.tls_version is None or report.round_trips is not None):
        return "1.1"
    return None


def _page_ms(flows: list[TcpFlow] | list[QuicFlow], measured: TcpFlow | QuicFlow, start: float) -> float | None:
    """From the first packet of the page's first connection to the last byte of its last object
    (``page.page_end``), over that connection and those opened after it."""
    ends = []
    began = False
    for flow in flows:
        began = began or flow is measured
        if began:
            ends.append(page_end(flow))
    if not ends or any(end is None for end in ends):
        return None
    return round((max(e for e in ends if e is not None) - start) * 1000, 3)


def page_head_of_line(flows: list[TcpFlow] | list[QuicFlow], measured: TcpFlow | QuicFlow,
                      keylog: KeyLog | None) -> HeadOfLineBlocking | None:
    """Head-of-line blocking over a page's connections: the measured one and those after it."""
    if isinstance(measured, TcpFlow):
        parts = [head_of_line_blocking(flow, keylog) for flow in flows[flows.index(measured):]]  # type: ignore[arg-type]
        return None if None in parts else combined([part for part in parts if part is not None])
    return quic_head_of_line_blocking(measured, keylog)


@dataclass(frozen=True)
class MeasuredPage:
    """A page run's lanes, as the row's head-of-line count read them (for ``explain``'s waterfall)."""

    blocking: HeadOfLineBlocking | None
    start_s: float
    """When the measured connection's first packet was seen."""


def row_from_run(run: VariantRun) -> Row:
    """Count the measured connection of a run's trace: the one from its client port where the run
    knows it, else the last."""
    return measure_run(run)[0]


def measure_run(run: VariantRun) -> tuple[Row, MeasuredPage | None]:
    """``row_from_run``, and with ``--page`` what its head-of-line count found, so that a
    waterfall need not read the page again."""
    variant = run.variant
    keylog = parse_keylog(run.trace.keylog) if run.trace.keylog else None
    report: ConnectionReport | None = None
    flows: list[TcpFlow] | list[QuicFlow]
    measured: TcpFlow | QuicFlow | None
    if variant.transport == "quic":
        flows = quic_flows(run.trace.packets)
        measured = quic = _measured(flows, run.client_port)
        report = analyze_quic_flow(quic, keylog) if quic else None
    else:
        flows = tcp_flows(run.trace.packets)
        measured = flow = _measured(flows, run.client_port)
        report = analyze_tcp_flow(flow, keylog) if flow else None
    page_ms = blocking = page = None
    if run.options.page is not None and measured is not None and report is not None and not run.error:
        page_ms = _page_ms(flows, measured, report.start_time)
        blocking = page_head_of_line(flows, measured, keylog)
        page = MeasuredPage(blocking, measured.start_time if isinstance(measured, QuicFlow) else measured.packets[0].time)
    if report is None:
        report = ConnectionReport(transport=variant.transport, client="-", server="-", start_time=0.0)
    notes = list(report.notes)
    causes = list(report.causes)
    if run.warmup_connections:
        notes.append("after a warm-up connection")
    if run.options.cold and variant.warm:
        notes.append("cold: no warm-up")
    # What the variant meant to use but the trace shows it did not (a cold start, a refused ticket).
    if variant.resume and report.resumed is False:
        causes.append("no session resumed: a full handshake")
    if variant.early_data and report.early_data == "none":
        causes.append("no ticket with early data: the request waited for the handshake")
    upload = run.options.upload
    if upload is not None and upload.split and variant.transport == "quic":
        notes.append("--split-writes: QUIC has no Nagle's algorithm, so the body left at once")
    if blocking is not None and blocking.cause is not None:
        causes.append(blocking.cause)
    elif blocking is not None and blocking.own_waited_s:
        waited, own_ms = len(blocking.own_waited_s), blocking.own_total_s * 1000
        notes.append("no head-of-line blocking: " + (
            f"{waited} streams waited {own_ms:.0f} ms in total, each for its own lost bytes only" if waited > 1
            else f"1 stream waited {own_ms:.0f} ms for its own lost bytes only"))
    if run.options.hrr and variant.transport == "quic":
        notes.append("--hrr: aioquic has no HelloRetryRequest (client or server), so QUIC cannot show it")
    for selector in run.dropped:
        notes.append(f"dropped {selector}")
    for selector in [s for s in run.options.drops if s not in run.dropped]:
        notes.append(f"--drop {selector}: no such packet in this variant")
    if run.error:
        notes.append(f"incomplete: {run.error}")
    if run.endpoint_busy_s is not None and report.ttfb_s is not None:
        notes.append(f"endpoint code ran {run.endpoint_busy_s * 1000:.1f} ms before the first response byte")
    if run.endpoint_busy_page_s is not None and page_ms is not None:
        notes.append(f"endpoint code ran {run.endpoint_busy_page_s * 1000:.1f} ms before the page's last byte")
    return Row(
        variant=variant.name,
        transport=report.transport,
        tls_version=report.tls_version,
        http=http_version(report),
        round_trips=report.round_trips,
        expected_round_trips=variant.expected_round_trips,
        setup_round_trips=report.setup_round_trips,
        expected_setup_round_trips=variant.expected_setup_round_trips,
        ttfb_ms=report.ttfb_ms,
        bytes_client=report.bytes_client,
        bytes_server=report.bytes_server,
        packets=report.packets,
        causes=causes,
        notes=notes,
        resumed=report.resumed,
        early_data=report.early_data,
        tfo=report.tfo,
        warmup_connections=run.warmup_connections,
        server_ms=report.server_ms,
        page_ms=page_ms,
        head_of_line_ms=None if blocking is None else round(blocking.total_s * 1000, 3),
    ), page


def write_capture(run: VariantRun, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``VARIANT.pcap`` (raw IP, the client's view) and ``VARIANT.keylog`` (NSS format, mode 0600)."""
    from handshake.endpoints._files import create_private_file
    from handshake.trace.pcap import PcapWriter

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    pcap_path = out / f"{run.variant.name}.pcap"
    with PcapWriter(pcap_path) as writer:
        for packet in run.trace.packets:
            writer.write(packet.time, packet.data)
    keylog_path = create_private_file(out / f"{run.variant.name}.keylog", run.trace.keylog.encode())
    return pcap_path, keylog_path


def _cause_kind(cause: str) -> str:
    """A cause without its per-run details ("client SYN retransmitted (first after 1.000 s)" → "client SYN
    retransmitted"; "head-of-line blocking: 7 streams of 10 waited …" → "head-of-line blocking")."""
    kind = cause.split(" (")[0]
    kind = re.sub(r": [^:]*\d[^:]*$", "", kind)
    return re.sub(r" \d+ times$", "", kind)


def summarize_runs(rows: list[Row]) -> Row:
    """One row for many seeded runs of a variant: medians, with the spread beside them."""
    complete = [r for r in rows if r.round_trips is not None and r.ttfb_ms is not None]
    first = complete[0] if complete else rows[0]
    causes: dict[str, int] = {}
    for row in rows:
        for kind in dict.fromkeys(_cause_kind(c) for c in row.causes):
            causes[kind] = causes.get(kind, 0) + 1
    ttfbs = sorted(r.ttfb_ms for r in complete)  # type: ignore[misc]
    trips = sorted(r.round_trips for r in complete)  # type: ignore[misc]
    summary = Row(**{**first.as_dict(), "spread": None})
    summary.causes = [f"{kind} (in {n} of {len(rows)} runs)" for kind, n in causes.items()]
    summary.notes = [n for n in first.notes if not n.startswith("incomplete")]
    if complete:
        summary.ttfb_ms = statistics.median(ttfbs)
        summary.round_trips = statistics.median_low(trips)
        summary.bytes_client = int(statistics.median(r.bytes_client for r in complete))
        summary.bytes_server = int(statistics.median(r.bytes_server for r in complete))
        summary.packets = int(statistics.median(r.packets for r in complete))
        server = [r.server_ms for r in complete if r.server_ms is not None]
        summary.server_ms = statistics.median(server) if server else None
    pages = sorted(r.page_ms for r in complete if r.page_ms is not None)
    summary.page_ms = statistics.median(pages) if pages else None
    blocked = [r.head_of_line_ms for r in complete if r.head_of_line_ms is not None]
    summary.head_of_line_ms = statistics.median(blocked) if blocked else None
    summary.spread = {
        "runs": len(rows),
        "complete": len(complete),
        "ttfb_ms": [ttfbs[0], summary.ttfb_ms, ttfbs[-1]] if complete else None,
        "round_trips": [trips[0], trips[-1]] if complete else None,
    }
    if pages:
        summary.spread["page_ms"] = [pages[0], summary.page_ms, pages[-1]]
    if blocked:
        blocked.sort()
        summary.spread["head_of_line_ms"] = [blocked[0], summary.head_of_line_ms, blocked[-1]]
    if len(complete) < len(rows):
        summary.notes.append(f"{len(rows) - len(complete)} of {len(rows)} runs got no response")
    return summary


ENGINES = ("sim", "kernel")


def compare(
    variants: list[Variant],
    link: LinkConfig,
    *,
    options: RunOptions | None = None,
    capture_dir: str | os.PathLike[str] | None = None,
    runs: int = 1,
    engine: str = "sim",
) -> list[Row]:
    """Run every variant on the same network and count each one's round trips.

    With ``runs`` > 1 each variant runs with seeds seed, seed+1, ... and its row gives medians
    and the spread; captures are written for the first run only. ``engine``: "sim" (virtual
    time) or "kernel" (real sockets in network namespaces behind the delay shim; needs root).
    """
    if any(variant.transport == "quic" for variant in variants):
        from handshake.endpoints.quic_config import check_quic_chain

        chosen = options or RunOptions()
        check_quic_chain(make_chain(chosen.key_type, chosen.intermediates))  # before any variant runs
    if engine == "kernel":
        from handshake.kernel.engine import KernelSession  # root-only machinery: loaded on demand

        with KernelSession(link) as session:
            return _compare(variants, link, session.run, options, capture_dir, runs)
    if engine != "sim":
        raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
    return _compare(variants, link, run_sim, options, capture_dir, runs)


def _compare(
    variants: list[Variant],
    link: LinkConfig,
    run_variant: Callable[[Variant, LinkConfig, RunOptions | None], VariantRun],
    options: RunOptions | None,
    capture_dir: str | os.PathLike[str] | None,
    runs: int,
) -> list[Row]:
    rows = []
    for variant in variants:
        per_seed = []
        for index in range(runs):
            run = run_variant(variant, replace(link, seed=link.seed + index), options)
            if capture_dir is not None and index == 0:
                write_capture(run, capture_dir)
            per_seed.append(row_from_run(run))
        rows.append(per_seed[0] if runs == 1 else summarize_runs(per_seed))
    return rows
