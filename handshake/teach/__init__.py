"""Teaching views on top of the engines: RTT budgets and sweeps of TTFB against RTT."""
