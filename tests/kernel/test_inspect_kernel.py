"""`inspect` on captures the kernel engine wrote: the rows `compare --engine kernel` printed,
from real Linux TCP/TFO/UDP packets (times on the monotonic clock, written to the microsecond)."""

from __future__ import annotations

import json

import pytest

from handshake.cli import main
from handshake.kernel.engine import KernelSession
from handshake.net.link import LinkConfig
from handshake.runner import row_from_run, write_capture
from handshake.variants import CATALOG

from tests.test_inspect import INTENT_CAUSES, PARITY_KEYS


@pytest.fixture(scope="module")
def kernel_runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("kernel-captures")
    link = LinkConfig.from_rtt(0.05)
    out = {}
    with KernelSession(link) as session:
        for name, variant in CATALOG.items():
            run = session.run(variant, link)
            pcap, keylog = write_capture(run, directory)
            out[name] = (row_from_run(run).as_dict(), pcap, keylog)
    return out


@pytest.mark.parametrize("variant", list(CATALOG))
def test_inspect_reports_the_row_compare_printed_for_a_kernel_run(kernel_runs, capsys, variant):
    row, pcap, keylog = kernel_runs[variant]
    assert main(["inspect", str(pcap), "--keylog", str(keylog), "--format", "json"]) == 0
    measured = json.loads(capsys.readouterr().out)["connections"][-1]
    expected = {key: row[key] for key in PARITY_KEYS}
    expected["causes"] = [c for c in row["causes"] if c not in INTENT_CAUSES]
    assert {key: measured[key] for key in PARITY_KEYS} == expected
