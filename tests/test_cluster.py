"""`--cluster` (issue 13): the same runs on a Dask cluster as on the local process pool, every
run accounted for when a worker dies, one line for a scheduler that cannot be reached, and no
Dask at all on the default path. The clusters here are LocalClusters: workers on this machine,
talking over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from handshake.cli import main
from handshake.cluster import cluster_client
from handshake.net.link import LinkConfig
from handshake.runner import RunOptions
from handshake.teach.sweep import sweep, sweep_chunks
from handshake.variants import select

REPO = Path(__file__).resolve().parents[1]
LOSSY = LinkConfig.from_rtt(0.1, loss=0.05)
RTTS = [rtt_ms / 1000 for rtt_ms in range(10, 110, 10)]


@pytest.fixture(scope="module")
def client():
    with cluster_client("local:2") as client:
        yield client


def test_a_local_cluster_gives_the_same_200_runs_as_the_process_pool(client):
    variants = select("tls13,quic")
    pool = sweep(variants, LOSSY, RunOptions(), RTTS, seeds=10, jobs=2)
    cluster = sweep(variants, LOSSY, RunOptions(), RTTS, seeds=10, cluster=client)
    assert len(pool) == 200
    assert cluster == pool
    assert any(point.causes for point in pool)  # the loss made some runs differ from others


def test_a_worker_killed_mid_sweep_loses_no_run(client):
    """Dask reschedules the dead worker's tasks; a task that failed on every try would come back
    as runs carrying the error. Either way every run is in the output."""
    variants = select("tls12,tls13")
    pids = client.run(os.getpid)
    chunks = sweep_chunks(variants, LOSSY, RunOptions(), RTTS, seeds=20, cluster=client)
    points = list(next(chunks))
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    for chunk in chunks:
        points.extend(chunk)
    expected = {(v.name, round(rtt * 1000, 6), LOSSY.seed + s) for v in variants for rtt in RTTS for s in range(20)}
    assert len(points) == len(expected) == 400
    assert {(p.variant, p.rtt_ms, p.seed) for p in points} == expected
    assert [p for p in points if p.error is not None] == []  # rescheduled, not failed


def test_the_cli_streams_the_same_rows_on_a_cluster(capsys):
    argv = ["sweep", "--rtt", "20ms:100ms:40ms", "--variants", "tls13,quic", "--seeds", "3", "--loss", "5%",
            "--format", "jsonl"]
    assert main(argv) == 0
    local = sorted(capsys.readouterr().out.splitlines())
    assert main([*argv, "--cluster", "local:2"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == local
    assert len(local) == 18 and json.loads(local[0])["error"] is None


def test_an_unreachable_scheduler_is_one_line_and_exit_2(capsys):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["sweep", "--rtt", "10ms:20ms:10ms", "--variants", "http", "--cluster", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"handshake: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")


@pytest.mark.parametrize("address, message", [
    ("nowhere", "--cluster takes a scheduler address (tcp://host:8786) or local:N, not 'nowhere'"),
    ("local:0", "--cluster local:N takes 1 to 256 workers, not 0"),
])
def test_a_bad_cluster_address_is_one_line_and_exit_2(capsys, address, message):
    assert main(["sweep", "--rtt", "10ms:20ms:10ms", "--variants", "http", "--cluster", address]) == 2
    assert capsys.readouterr().err == f"handshake: error: {message}\n"


def test_jobs_and_a_cluster_do_not_mix(capsys):
    assert main(["sweep", "--rtt", "10ms:20ms:10ms", "--jobs", "2", "--cluster", "local:1"]) == 2
    assert "--jobs is for local processes" in capsys.readouterr().err


def test_the_default_path_imports_no_dask():
    code = ("import sys; from handshake.cli import main; "
            "assert main(['sweep', '--rtt', '10ms:30ms:10ms', '--variants', 'http', '--format', 'csv']) == 0; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')], 'dask imported'")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def twenty_two_captures(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Every variant's capture twice (no loss; 5 % loss), and one key log for all of them."""
    from handshake.runner import compare

    clean, lossy = tmp_path_factory.mktemp("clean"), tmp_path_factory.mktemp("lossy")
    compare(select(None), LinkConfig.from_rtt(0.1), capture_dir=clean)
    compare(select(None), LinkConfig.from_rtt(0.1, loss=0.05, seed=3), capture_dir=lossy)
    keys = tmp_path_factory.mktemp("keys") / "all.keylog"
    keys.write_text("".join(p.read_text() for d in (clean, lossy) for p in sorted(d.glob("*.keylog"))))
    return clean, lossy, keys


def test_inspect_over_22_files_on_a_cluster_gives_the_same_connections(twenty_two_captures, capsys):
    clean, lossy, keys = twenty_two_captures
    argv = ["inspect", str(clean), str(lossy), "--keylog", str(keys), "--format", "json"]
    assert main(argv) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*argv, "--cluster", "local:2"]) == 0
    on_cluster = json.loads(capsys.readouterr().out)
    assert len(local["files"]) == 22 and on_cluster == local
    assert sum(c["early_data"] == "accepted" for c in local["connections"]) >= 6  # the key log reached the workers


def test_one_file_on_a_cluster_is_shared_among_the_workers_by_shards(twenty_two_captures, capsys):
    clean, _, keys = twenty_two_captures
    one = str(clean / "tls13-resume.pcap")
    assert main(["inspect", one, "--keylog", str(keys), "--format", "json"]) == 0
    local = json.loads(capsys.readouterr().out)["connections"]
    assert main(["inspect", one, "--keylog", str(keys), "--format", "json", "--cluster", "local:2"]) == 0
    on_cluster = json.loads(capsys.readouterr().out)
    assert [{k: v for k, v in c.items() if k != "file"} for c in on_cluster["connections"]] == local
    assert len(local) == 2
