"""`handshake inspect` over an archive (issue 13): many files, directories and globs read as one,
each connection tagged with its file, a summary across them, and a bad file named, not fatal."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from handshake.archive import capture_files, inspect_archive, variant_label
from handshake.cli import main
from handshake.errors import UsageError
from handshake.runner import compare
from handshake.variants import CATALOG, select

WILD = Path(__file__).resolve().parent / "data" / "wild"
"""The public captures of browsers, curl and servers (a copy of ../shared/captures-wild)."""


@pytest.fixture(scope="module")
def catalog_captures(tmp_path_factory) -> Path:
    """One pcap and key log per variant of the catalog, as `compare --capture` writes them."""
    directory = tmp_path_factory.mktemp("catalog")
    compare(select(None), __import__("handshake.net.link", fromlist=["LinkConfig"]).LinkConfig.from_rtt(0.1),
            capture_dir=directory)
    keys = directory / "all.keylog"
    keys.write_text("".join(path.read_text() for path in sorted(directory.glob("*.keylog"))))
    return directory


def run_json(capsys, *argv: object) -> tuple[int, dict, str]:
    status = main(["inspect", *map(str, argv), "--format", "json"])
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if captured.out else {}, captured.err


def single(capsys, path: Path, *extra: object) -> list[dict]:
    assert main(["inspect", str(path), *map(str, extra), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["connections"]


def test_a_directory_reads_as_the_files_one_by_one_each_connection_tagged(catalog_captures, capsys):
    status, archive, err = run_json(capsys, catalog_captures, "--keylog", catalog_captures / "all.keylog")
    assert (status, err) == (0, "")
    pcaps = sorted(str(p) for p in catalog_captures.glob("*.pcap"))
    assert archive["files"] == pcaps
    expected = []
    for pcap in pcaps:
        expected += [{"file": pcap, **conn} for conn in single(capsys, Path(pcap), "--keylog", catalog_captures / "all.keylog")]
    assert archive["connections"] == expected


def test_each_variant_is_named_as_the_catalog_names_it(catalog_captures, capsys):
    _, archive, _ = run_json(capsys, catalog_captures, "--keylog", catalog_captures / "all.keylog")
    measured = {}
    for conn in archive["connections"]:
        measured[Path(conn["file"]).stem] = variant_label(conn)  # the last connection of a file is the measured one
    assert measured == {name: name for name in CATALOG if name != "http"} | {"http": "tcp, no TLS version seen"}
    summary = archive["summary"]
    assert summary["connections"] == len(archive["connections"]) == sum(summary["variants"].values())
    tls13 = next(g for g in summary["by_tls_version"] if (g["transport"], g["tls_version"]) == ("tcp", "1.3"))
    assert tls13["connections"] == sum(1 for c in archive["connections"]
                                       if c["transport"] == "tcp" and c["tls_version"] == "1.3")


def test_without_the_key_log_0rtt_is_offered_and_unconfirmed(catalog_captures, capsys):
    _, archive, _ = run_json(capsys, catalog_captures / "tls13-0rtt.pcap", catalog_captures / "tls13.pcap")
    labels = [variant_label(c) for c in archive["connections"]]
    assert labels == ["tls13", "tls13-0rtt-unconfirmed", "tls13"]


def test_globs_directories_and_files_in_the_order_given_each_once(catalog_captures, tmp_path):
    nested = tmp_path / "day" / "hour"
    nested.mkdir(parents=True)
    for name in ("tls12.pcap", "quic.pcap"):
        shutil.copy(catalog_captures / name, nested / name)
    (nested / "notes.txt").write_text("not a capture")
    first = str(catalog_captures / "tls13.pcap")
    files = capture_files([first, str(tmp_path / "**" / "*.pcap"), str(tmp_path), first])
    assert files == [first, str(nested / "quic.pcap"), str(nested / "tls12.pcap")]
    with pytest.raises(UsageError, match=r"no capture file matches .*\*\.pcapng"):
        capture_files([str(tmp_path / "*.pcapng")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no capture file .* under"):
        capture_files([str(tmp_path / "empty")])


def test_a_bad_file_is_named_on_stderr_the_others_still_count_and_the_status_is_2(catalog_captures, tmp_path, capsys):
    shutil.copy(catalog_captures / "tls13.pcap", tmp_path / "good.pcap")
    (tmp_path / "bad.pcap").write_bytes(b"this is not a capture at all")
    status, archive, err = run_json(capsys, tmp_path)
    assert status == 2
    assert [c["file"] for c in archive["connections"]] == [str(tmp_path / "good.pcap")]
    assert err.count("\n") == 1 and err.startswith(f"handshake: error: {tmp_path / 'bad.pcap'}: ")
    assert any(note.startswith(f"{tmp_path / 'bad.pcap'}: not read: ") for note in archive["notes"])


def test_every_file_bad_prints_only_the_errors(tmp_path, capsys):
    for name in ("a.pcap", "b.pcap"):
        (tmp_path / name).write_bytes(b"\0" * 10)
    assert main(["inspect", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("handshake: error: ") == 2


def test_one_process_and_several_give_the_same_answer(catalog_captures):
    files = capture_files([str(catalog_captures)])
    one = inspect_archive(files, jobs=1, progress=False)
    two = inspect_archive(files, jobs=2, progress=False)
    as_dicts = lambda archive: {path: [c.report.as_dict() for c in inspection.connections]  # noqa: E731
                                for path, inspection in archive.inspections.items()}
    assert as_dicts(one) == as_dicts(two) and len(one.inspections) == len(files)


def test_a_progress_bar_on_a_terminal_none_in_a_pipe(catalog_captures, capsys):
    files = capture_files([str(catalog_captures)])
    inspect_archive(files, jobs=1, progress=True)
    assert f"| 0/{len(files)} [" in capsys.readouterr().err  # the bar (tqdm redraws it at most every 0.1 s)
    inspect_archive(files, jobs=1)  # stderr is captured here, not a terminal
    assert capsys.readouterr().err == ""


def test_the_table_has_a_file_column_and_the_summary(catalog_captures, capsys):
    assert main(["inspect", str(catalog_captures / "quic.pcap"), str(catalog_captures / "tls12.pcap")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 of 2 files read, ")
    assert out.split("\n")[2].split()[0] == "file"
    assert "summary: 2 connections; variants seen: quic 1, tls12 1" in out
    assert "tcp TLS 1.2: 1 connection, 1 counted: median 4 round trips, TTFB 400.0 ms" in out


def test_csv_puts_the_file_first(catalog_captures, capsys):
    assert main(["inspect", str(catalog_captures / "quic.pcap"), str(catalog_captures / "http.pcap"), "--format", "csv"]) == 0
    header, *rows = capsys.readouterr().out.strip().split("\n")
    assert header.startswith("file,transport,")
    assert len(rows) == 2 and rows[-1].startswith(str(catalog_captures / "http.pcap"))


def test_the_wild_captures_read_as_one_archive_give_each_files_connections(capsys):
    status, archive, err = run_json(capsys, WILD)
    assert (status, err) == (0, "")
    for path in archive["files"]:
        assert [c for c in archive["connections"] if c["file"] == path] == [
            {"file": path, **conn} for conn in single(capsys, Path(path))]
    assert os.path.basename(archive["files"][0]).startswith("ja4-")


def test_csv_and_json_lines_are_written_file_by_file_and_match_the_document(catalog_captures, tmp_path, capsys):
    shutil.copytree(catalog_captures, tmp_path / "archive")
    (tmp_path / "archive" / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 7)
    status, document, _ = run_json(capsys, tmp_path / "archive")
    assert status == 2
    assert main(["inspect", str(tmp_path / "archive"), "--format", "jsonl"]) == 2
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == document["connections"]
    summary_lines = [line for line in err.splitlines() if line.startswith(("summary:", "  "))]
    assert summary_lines[0] == f"summary: {len(document['connections'])} connections; variants seen: " + ", ".join(
        f"{label} {count}" for label, count in document["summary"]["variants"].items())
    assert err.splitlines()[-1].startswith(f"handshake: error: {tmp_path / 'archive' / 'broken.pcap'}: ")
    assert main(["inspect", str(tmp_path / "archive"), "--format", "csv"]) == 2
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split(",")[:3] == ["file", "transport", "client"] and len(rows) == len(document["connections"])


def test_json_lines_for_one_file(catalog_captures, capsys):
    one = catalog_captures / "tls13-resume.pcap"
    assert main(["inspect", str(one), "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == single(capsys, one)
