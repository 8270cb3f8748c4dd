"""TCP connections: flows, stream reassembly, the round-trip counter and the per-connection verdict."""
