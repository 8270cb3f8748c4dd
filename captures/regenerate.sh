#!/usr/bin/env bash
# Regenerate the example captures: one pcap + NSS key log per variant, at 100 ms RTT on the
# virtual-time engine (deterministic timing; key material is fresh each time).
set -euo pipefail
cd "$(dirname "$0")"
rm -f ./*.pcap ./*.keylog
python3 -m handshake compare --rtt 100ms --capture . > summary.txt
cat summary.txt
