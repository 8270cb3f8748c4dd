"""The row counts the run's own connection (issue 15): a kernel trace under loss may also hold
a straggler of an earlier run (its server's retransmitted FIN, and the client's ACK), which
starts later than the measured connection and so is the trace's last flow."""

from __future__ import annotations

import dataclasses

from scapy.layers.inet import IP, TCP

from handshake.analysis.tcp.flows import tcp_flows
from handshake.connections import IP_PROTOCOL, of_connections
from handshake.net.link import LinkConfig
from handshake.runner import run_sim, row_from_run
from handshake.trace.record import Trace, TracedPacket
from handshake.variants import CATALOG


def _with_straggler(run, port: int):
    """The run's trace with an earlier connection's retransmitted FIN-ACK and its ACK after it."""
    flow = tcp_flows(run.trace.packets)[-1]
    (client, _), (server, server_port) = flow.client, flow.server
    end = run.trace.packets[-1].time
    fin = IP(src=server, dst=client) / TCP(sport=server_port, dport=port, flags="FA", seq=5000, ack=900)
    ack = IP(src=client, dst=server) / TCP(sport=port, dport=server_port, flags="A", seq=900, ack=5001)
    packets = [*run.trace.packets, TracedPacket(end + 0.01, bytes(fin)), TracedPacket(end + 0.06, bytes(ack))]
    return dataclasses.replace(run, trace=Trace(packets, run.trace.keylog))


def test_the_row_is_the_connection_from_the_runs_client_port_not_the_last_flow():
    run = run_sim(CATALOG["tls13"], LinkConfig.from_rtt(0.1))
    measured_port = tcp_flows(run.trace.packets)[-1].client[1]
    straggling = _with_straggler(run, measured_port - 1)
    assert tcp_flows(straggling.trace.packets)[-1].client[1] == measured_port - 1
    # Without the port the straggler is taken: no response, no count (what issue 15 saw).
    assert row_from_run(straggling).round_trips is None
    row = row_from_run(dataclasses.replace(straggling, client_port=measured_port))
    assert (row.round_trips, row.ttfb_ms) == (3, row_from_run(run).ttfb_ms)


def test_a_kernel_run_keeps_only_the_packets_of_the_connections_it_opened():
    """The straggler is kept out of the run's trace (and so out of its capture), not only out of
    its row. The sim's addresses are the kernel engine's, so a sim trace stands in for a kernel one."""
    run = run_sim(CATALOG["tls13-resume"], LinkConfig.from_rtt(0.1))
    flows = tcp_flows(run.trace.packets)
    assert len(flows) == 2  # the warm-up and the measured connection
    ports = {(IP_PROTOCOL["tcp"], flow.client[1]) for flow in flows}
    straggling = _with_straggler(run, min(ports)[1] - 1)
    own = of_connections([(p.time, p.data) for p in straggling.trace.packets], ports)
    assert [data for _, data in own] == [p.data for p in run.trace.packets]
    assert len(straggling.trace.packets) == len(own) + 2
    first = min(ports)
    assert of_connections(own, {first}) == [
        (t, data) for t, data in own if tcp_flows([TracedPacket(t, data)])[0].client[1] == first[1]]
    # The same port over the other protocol is another connection: a QUIC one keeps none of these.
    assert of_connections(own, {(IP_PROTOCOL["quic"], port) for _, port in ports}) == []
