"""`inspect` on captures from the wild, with tshark as the oracle.

Every file in tests/data/wild/ (public captures of browsers, curl, wolfSSL, TLS 1.3 drafts, QUIC v1
and v2: the JA4+ project's ``pcap/`` folder and Zeek's ``testing/btest/Traces/``, see the README
there) goes through `handshake inspect --format json` and through tshark 4.0. Per connection,
matched by transport and addresses, they must agree on what the packets show in clear: the TLS
version, SNI, the ALPN offer (and the choice, below TLS 1.3), resumption, HelloRetryRequest, the
early data offer, the QUIC version and Retry (tests/wild_oracle.py reads tshark's fields). No
traceback, and no "analysis failed" note. A connection only one of them sees is a failure too.

Differences that follow from what each tool is, and so are allowed (each said where it is used):
- UDP that is not QUIC (DNS, mDNS, SSDP…) is a tshark conversation but no connection `inspect`
  reports: the oracle counts only what tshark reads as QUIC.
- QUIC v1 and v2 carry TLS 1.3 and nothing older (RFC 9001 §4.2), so `inspect` says "1.3" for a
  QUIC connection whose ServerHello is not in the capture; tshark, reading TLS alone, says nothing.
- A connection whose capture holds no hello (it began mid-stream, or is not TLS) has no TLS facts
  for tshark; `inspect` must then claim none: no version, SNI or ALPN, no resumption, no early data
  offered (its report says resumed "no" and 0-RTT "none" there, which claims no TLS feature).

Issue 16 asks, besides, that every TLS session tshark finds (a TCP stream or QUIC connection
with a ClientHello, wherever in the stream it starts: after SOCKS or HTTP CONNECT, after STARTTLS,
on any port, with DECODE_AS giving tshark `-d` where it needs it) is a connection `inspect` reports
with the same TLS version and SNI; and that tshark has read every ClientHello the raw bytes show,
so that no session escapes both. Nothing here is marked as expected to fail: a disagreement is a
failure until `inspect` mends it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from handshake.cli import main

from .wild_oracle import TSHARK, OracleConnection, oracle_connections

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (CI: apt-get install tshark)")

WILD = Path(__file__).parent / "data" / "wild"
CAPTURES = sorted(path.name for path in WILD.iterdir() if path.suffix in (".pcap", ".pcapng"))
QUIC_VERSION_NAMES = {0x00000001: "1", 0x6B3343CF: "2"}

@pytest.fixture(scope="module")
def oracle() -> dict[str, list[OracleConnection]]:
    """tshark over every capture, four at a time (a run is mostly tshark starting up)."""
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(CAPTURES, pool.map(lambda name: oracle_connections(WILD / name), CAPTURES)))


def inspected(capsys, name: str) -> dict:
    assert main(["inspect", str(WILD / name), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return json.loads(captured.out)


def disagreements(theirs: list[OracleConnection], ours: dict) -> dict[str, dict[str, str]]:
    """Per connection (named by its client, or by both ends when tshark cannot tell the client),
    each fact on which `inspect`'s JSON and tshark differ."""
    found: dict[str, dict[str, str]] = {}
    unmatched = list(ours["connections"])
    for note in ours["notes"]:
        if "analysis failed" in note:
            found.setdefault("capture", {})["notes"] = note
    for conn in theirs:
        match = next((mine for mine in unmatched if mine["transport"] == conn.transport
                      and frozenset((mine["client"], mine["server"])) == conn.endpoints), None)
        name = conn.client or " ".join(sorted(conn.endpoints))
        if match is None:
            found[name] = {"connection": f"tshark sees {conn.transport} {sorted(conn.endpoints)}, inspect does not"}
            continue
        unmatched.remove(match)
        differ = {fact: f"tshark {want!r}, inspect {got!r}" for fact, want, got in _facts(conn, match) if want != got}
        if differ:
            found[match["client"] if conn.client is None else name] = differ
    for mine in unmatched:
        found[mine["client"]] = {"connection": f"inspect sees {mine['transport']} {mine['client']} → {mine['server']}, "
                                               "tshark does not"}
    return found


def _facts(conn: OracleConnection, mine: dict) -> list[tuple[str, object, object]]:
    """(fact, tshark's answer, inspect's answer), the answers put the same way."""
    failed = [note for note in mine["notes"] if "analysis failed" in note]
    facts: list[tuple[str, object, object]] = [("notes", [], failed)]
    if conn.client is not None:
        facts.append(("client", conn.client, mine["client"]))
    handshake_seen = bool(conn.client_hellos or conn.server_hellos)
    if conn.transport == "tcp" and not handshake_seen:
        # No hello in the capture: no TLS fact either way (see the module docstring).
        facts += [("tls_version", None, mine["tls_version"]), ("sni", None, mine["sni"]), ("alpn", None, mine["alpn"]),
                  ("alpn_offered", [], mine["alpn_offered"]),
                  ("hrr", "no HelloRetryRequest", "no HelloRetryRequest" if mine["hrr"] in (None, False) else mine["hrr"]),
                  ("resumed", "not resumed", "not resumed" if mine["resumed"] in (None, False) else mine["resumed"]),
                  ("early_data", "not offered",
                   "not offered" if mine["early_data"] in ("none", "unknown") else mine["early_data"])]
        return facts
    offered = conn.early_data_offered
    facts += [
        ("tls_version", conn.tls_version, mine["tls_version"]),
        ("sni", conn.sni, mine["sni"]),
        ("alpn", conn.alpn_selected, mine["alpn"]),
        ("resumed", conn.resumed, mine["resumed"]),
        # No HelloRetryRequest is known only where the first ClientHello and the server's answer are seen.
        ("hrr", True if conn.hrr else False if conn.client_hellos and conn.server_hellos else None, mine["hrr"]),
        # Offered or not; "sent", "accepted" and "rejected" all mean offered, "unknown" that the
        # ClientHello is not in the capture.
        ("early_data", "unknown" if offered is None else ("offered" if offered else "none"),
         mine["early_data"] if mine["early_data"] in ("none", "unknown") else "offered"),
    ]
    facts.append(("alpn_offered", list(conn.alpn_offered), mine["alpn_offered"]))
    if conn.transport == "tcp":
        return facts
    version = conn.quic_version
    facts += [
        ("quic_version", None if version is None else QUIC_VERSION_NAMES.get(version, f"0x{version:08x}"),
         mine["quic_version"]),
        ("retry", conn.quic_retry, mine["retry"]),
    ]
    return facts


@pytest.mark.parametrize("name", CAPTURES)
def test_inspect_agrees_with_tshark(capsys, oracle, name):
    ours = inspected(capsys, name)
    assert ours["connections"], "inspect found no connection"
    assert disagreements(oracle[name], ours) == {}


def tls_sessions(theirs: list[OracleConnection], ours: dict) -> dict[str, tuple[object, object]]:
    """Every connection with a ClientHello tshark read → (tshark's (version, SNI), inspect's
    (version, SNI) of the connection between the same ends, None if it reports none)."""
    found = {}
    for conn in theirs:
        if not conn.client_hellos:
            continue
        mine = next((mine for mine in ours["connections"] if mine["transport"] == conn.transport
                     and frozenset((mine["client"], mine["server"])) == conn.endpoints), None)
        name = f"{conn.transport} {conn.client or ' '.join(sorted(conn.endpoints))}"
        found[name] = ((conn.tls_version, conn.sni), None if mine is None else (mine["tls_version"], mine["sni"]))
    return found


@pytest.mark.parametrize("name", CAPTURES)
def test_every_tls_session_tshark_finds_has_its_version_and_sni(capsys, oracle, name):
    sessions = tls_sessions(oracle[name], inspected(capsys, name))
    wrong = {conn: f"tshark {theirs!r}, inspect {mine!r}" for conn, (theirs, mine) in sessions.items() if theirs != mine}
    assert wrong == {}


def test_the_tls_sessions_are_all_there(oracle):
    """What the check above covers: tshark's sessions in these captures, the SOCKS ones too."""
    sessions = {name: [conn for conn in conns if conn.client_hellos] for name, conns in oracle.items()}
    transports = [conn.transport for conns in sessions.values() for conn in conns]
    assert (transports.count("tcp"), transports.count("quic")) == (156, 52)
    assert sorted(conn.client for conn in sessions["ja4-socks-https-example.pcap"]) == [
        f"10.180.156.185:{port}" for port in (53554, 53555, 53556)]
    assert all(conn.tls_version == "1.0" and conn.sni == "www.example.com"
               for conn in sessions["ja4-socks-https-example.pcap"])


@pytest.mark.parametrize("name", CAPTURES)
def test_tshark_reads_every_client_hello_in_clear(oracle, name):
    """A TCP payload that begins with a ClientHello (by its bytes) in a stream where tshark read
    none: tshark needs `-d tcp.port==N,tls` in DECODE_AS (wild_oracle.py) for that port."""
    missed = {conn.key: sorted(conn.hello_in_clear) for conn in oracle[name]
              if conn.hello_in_clear and not conn.client_hellos}
    assert missed == {}


def test_a_client_hello_tshark_does_not_read_is_caught():
    """wolfSSL's TLS 1.3 on port 9090, which tshark finds by its heuristics, hidden by a planted
    decode-as (HTTP): the raw bytes still show the ClientHello tshark no longer reads."""
    right = oracle_connections(WILD / "zeek-tls-tls13_wolfssl.pcap")
    planted = oracle_connections(WILD / "zeek-tls-tls13_wolfssl.pcap", decode_as=("tcp.port==9090,http",))
    assert [(conn.hello_in_clear, len(conn.client_hellos)) for conn in right] == [({9090}, 1)]
    assert [(conn.hello_in_clear, len(conn.client_hellos)) for conn in planted] == [({9090}, 0)]


def test_every_capture_is_here():
    """CI runs on a clean clone: the captures must be in the repository, all 31 of them."""
    assert len(CAPTURES) == 31
    assert all(name.startswith(("ja4-", "zeek-")) for name in CAPTURES)
    readme = (WILD / "README.md").read_text()
    assert "FoxIO-LLC/ja4" in readme and "zeek/zeek" in readme


def test_the_drafts_are_named_and_not_resumed_by_their_session_id_echo(capsys):
    """draft-ietf-tls-tls13-19 (ServerHello without legacy_session_id, version 0x7f13 in its own
    field) and -23 (0x7f17 in supported_versions, the client's 32-byte session id echoed for
    middleboxes, which is no resumption)."""
    draft19 = inspected(capsys, "zeek-tls-tls-13draft19-early-data.pcap")["connections"]
    assert [(c["tls_version"], c["resumed"], c["early_data"]) for c in draft19] == [
        ("1.3-draft-19", False, "none"), ("1.3-draft-19", True, "sent")]
    draft23 = inspected(capsys, "zeek-tls-tls13draft23-chrome67.0.3368.0-canary.pcap")["connections"][0]
    assert (draft23["tls_version"], draft23["resumed"], draft23["sni"]) == ("1.3-draft-23", False,
                                                                           "tls13.crypto.mozilla.org")


def test_tcp_connections_report_the_alpn_offer(capsys):
    conn = inspected(capsys, "ja4-tls-alpn-h2.pcap")["connections"][0]
    assert conn["alpn_offered"] == ["h2", "http/1.1"]


# -- the oracle can fail ---------------------------------------------------------------------------

PLANTED = [
    # (capture, client, fact, wrong value)
    ("zeek-tls-tls13_wolfssl.pcap", "192.168.186.133:43056", "tls_version", "1.2"),
    ("ja4-browsers-x509.pcapng", "172.27.7.31:54524", "sni", "edge.example.com"),
    ("ja4-tls-alpn-h2.pcap", "[2001:4998:ef83:14:8000::100d]:64034", "alpn", "http/1.1"),
    ("ja4-latest.pcapng", "172.16.225.48:52938", "resumed", False),
    ("zeek-tls-tls1.2.pcap", "10.0.0.80:56637", "resumed", True),
    ("zeek-tls-tls-13draft19-early-data.pcap", "192.168.6.240:65504", "early_data", "none"),
    ("zeek-tls-tls-13draft19-early-data.pcap", "192.168.6.240:65503", "early_data", "sent"),
    ("zeek-tls-tls13_wolfssl.pcap", "192.168.186.133:43056", "hrr", True),
    ("zeek-quic-quicv2-http3-443.pcap", "127.0.0.1:50841", "quic_version", "1"),
    ("zeek-quic-curl-8.1.2-dev-http3-www-google-de.pcap", "172.17.0.2:34347", "retry", True),
    ("zeek-quic-curl-8.1.2-dev-http3-www-google-de.pcap", "172.17.0.2:34347", "alpn_offered", ["h3"]),
    # What inspect said before this branch: a draft named as nothing, its compatibility echo of
    # the session id taken for TLS 1.2 resumption.
    ("zeek-tls-tls-13draft19-early-data.pcap", "192.168.6.240:65503", "tls_version", None),
    ("zeek-tls-tls13draft23-chrome67.0.3368.0-canary.pcap", "192.168.86.23:63449", "resumed", True),
    ("ja4-tls3.pcapng", "192.168.1.169:63249", "sni", "darksail.ai"),  # plain HTTP claimed TLS
    ("ja4-tls3.pcapng", "192.168.1.169:63249", "notes", ["analysis failed at the end (ValueError: planted)"]),
]


@pytest.mark.parametrize("name, client, fact, wrong", PLANTED, ids=[f"{p[2]}-{i}" for i, p in enumerate(PLANTED)])
def test_a_planted_wrong_answer_is_caught(capsys, oracle, name, client, fact, wrong):
    ours = inspected(capsys, name)
    conn = next(c for c in ours["connections"] if c["client"] == client)
    assert conn[fact] != wrong
    conn[fact] = wrong
    found = disagreements(oracle[name], ours)
    assert list(found.get(client, {})) == [fact]


def test_a_connection_inspect_drops_or_invents_is_caught(capsys, oracle):
    ours = inspected(capsys, "zeek-tls-google-duplicate.pcap")
    dropped = ours["connections"].pop(0)
    assert list(disagreements(oracle["zeek-tls-google-duplicate.pcap"], ours)) == [dropped["client"]]
    ours["connections"].append(dict(dropped, client="192.168.4.149:1", server="74.125.239.129:443"))
    assert set(disagreements(oracle["zeek-tls-google-duplicate.pcap"], ours)) == {dropped["client"],
                                                                                 "192.168.4.149:1"}


def test_https_through_socks_proxies_is_read_inside_the_tunnel(capsys):
    """The JA4 project's SOCKS capture: SOCKS4 (request 04 01 01bb 5db8d877, empty user id),
    SOCKS4a (DSTIP 0.0.0.1, then "www.example.com") and SOCKS5 (methods 00 01, no authentication)
    to port 1080, each granted (90; REP 0), then TLS 1.0 to www.example.com. The proxy's round
    trips are named, and the count of the HTTPS request inside includes them."""
    conns = inspected(capsys, "ja4-socks-https-example.pcap")["connections"]
    assert [(c["prelude"], c["tls_version"], c["sni"]) for c in conns] == [
        ("socks4", "1.0", "www.example.com"), ("socks4a", "1.0", "www.example.com"),
        ("socks5", "1.0", "www.example.com")]
    assert [c["causes"][0] for c in conns] == ["through a SOCKS4 proxy: 1 round trip",
                                               "through a SOCKS4a proxy: 1 round trip",
                                               "through a SOCKS5 proxy: 2 round trips"]
    # TCP 1, the proxy's 1 (SOCKS5: 2), TLS 1.0's 2, the request's 1, and one more where the
    # server's certificate flight waited for ACKs (the cause each row gives).
    assert [(c["round_trips"], c["setup_round_trips"]) for c in conns] == [(6, 5), (6, 5), (7, 6)]
    assert all("server flight over the initial congestion window: it waited for ACKs" in c["causes"] for c in conns)
