"""Capture files: what PcapWriter writes, tshark reads; what others write, iter_capture reads."""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import subprocess
import tracemalloc
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.trace.packet import (
    ACK, PSH, SYN, PacketError, TcpSegment, UdpDatagram, decode, fastopen_option, mss_option,
    tcp_packet, udp_packet,
)
from handshake.trace import pcap
from handshake.trace.pcap import (
    LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL,
    LINKTYPE_RAW, CaptureError, CapturedFrame, PcapWriter, TruncatedCapture,
    UnsupportedLinkType, check_linktype, ip_payload, iter_capture,
)

SYN_PKT = tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, 1, 0, SYN, b"",
                     (mss_option(1460), fastopen_option()))
DATA_PKT = tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, 2, 9, PSH | ACK, b"GET / HTTP/1.1\r\n")
UDP6_PKT = udp_packet("2001:db8::1", "2001:db8::2", 4433, 443, b"\xc3" * 1200)

tshark_path = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(tshark_path is None,
                                  reason="tshark not installed (apt-get install -y tshark)")


def tshark_fields(path, *fields: str, options: tuple[str, ...] = (),
                  display_filter: str | None = None) -> list[list[str]]:
    cmd = [tshark_path, "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for opt in options:
        cmd += ["-o", opt]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("|") for line in out.splitlines()]


def frames_of(data: bytes) -> list[CapturedFrame]:
    return list(iter_capture(io.BytesIO(data)))


# --- hand-built files: classic pcap in any byte order, pcapng block by block ----------------

def classic_pcap(records, *, order="<", magic=0xA1B2C3D4, linktype=LINKTYPE_RAW,
                 extra=b"") -> bytes:
    """records: (sec, frac, data[, orig_len]); ``extra`` goes after each record header
    (Kuznetzov's format has 8 more bytes there)."""
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for sec, frac, data, *orig in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data), orig[0] if orig else len(data))
                   + extra + data)
    return b"".join(out)


def block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                 + option(order, 4, b"handshake tests") + option(order, 0, b""))


def idb(order: str, linktype: int, *, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:
    opts = option(order, 2, b"eth0")
    if tsresol is not None:
        opts += option(order, 9, bytes((tsresol,)))
    if tsoffset is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset))
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts
                 + option(order, 0, b""))


def epb(order: str, if_id: int, ticks: int, data: bytes, orig_len: int | None = None) -> bytes:
    return block(order, 6, struct.pack(order + "IIIII", if_id, ticks >> 32, ticks & 0xFFFFFFFF,
                                       len(data), len(data) if orig_len is None else orig_len)
                 + data + b"\0" * (-len(data) % 4) + option(order, 1, b"a comment"))


def spb(order: str, data: bytes) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data)) + data)


def pb(order: str, if_id: int, ticks: int, data: bytes) -> bytes:
    return block(order, 2, struct.pack(order + "HHIIII", if_id, 0, ticks >> 32,
                                       ticks & 0xFFFFFFFF, len(data), len(data)) + data)


def ethernet(payload: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    head = bytes.fromhex("020000000002" "020000000001")
    for tpid in tags:
        head += struct.pack("!HH", tpid, 42)
    return head + struct.pack("!H", ethertype) + payload


def sll2(payload: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 1, 4, 6, bytes(8)) + payload


def two_section_pcapng() -> tuple[bytes, list[tuple]]:
    """Section 1 (little-endian): Ethernet at µs, RAW at ns, SLL2 at 2^-20 s with a 1000 s
    offset, among name-resolution, statistics, secrets and custom blocks; an obsolete PB.
    Section 2 (big-endian): NULL, an EPB and a Simple Packet Block."""
    le, be = "<", ">"
    data = b"".join([
        shb(le),
        idb(le, LINKTYPE_ETHERNET),
        idb(le, LINKTYPE_RAW, tsresol=9),
        block(le, 4, option(le, 1, b"\x0a\x00\x00\x01host\x00") + option(le, 0, b"")),  # NRB
        idb(le, LINKTYPE_LINUX_SLL2, tsresol=0x80 | 20, tsoffset=1000),
        epb(le, 0, 1_700_000_000_250_000, ethernet(SYN_PKT)),
        epb(le, 1, 1_700_000_000_123_456_789, DATA_PKT),
        block(le, 10, struct.pack(le + "II", 0x544C534B, 5) + b"CLIENT_RANDOM..."),  # DSB
        epb(le, 2, 3 << 19, sll2(SYN_PKT)),
        block(le, 5, struct.pack(le + "III", 0, 0, 0)),  # ISB
        block(le, 0x40000BAD, b"custom"),
        pb(le, 0, 2_000_000, ethernet(DATA_PKT)),
        shb(be),
        idb(be, LINKTYPE_NULL, snaplen=65535),
        epb(be, 0, 5_000_000, b"\x02\x00\x00\x00" + DATA_PKT, 999),
        spb(be, b"\x00\x00\x00\x02" + SYN_PKT),
    ])
    expected = [  # (time, linktype, ip packet, orig_len, interface)
        (1_700_000_000.25, LINKTYPE_ETHERNET, SYN_PKT, 14 + len(SYN_PKT), 0),
        (1_700_000_000.123456789, LINKTYPE_RAW, DATA_PKT, len(DATA_PKT), 1),
        (1001.5, LINKTYPE_LINUX_SLL2, SYN_PKT, 20 + len(SYN_PKT), 2),
        (2.0, LINKTYPE_ETHERNET, DATA_PKT, 14 + len(DATA_PKT), 0),
        (5.0, LINKTYPE_NULL, DATA_PKT, 999, 0),
        (None, LINKTYPE_NULL, SYN_PKT, 4 + len(SYN_PKT), 0),
    ]
    return data, expected


# --- writing ---------------------------------------------------------------------------------

def test_writer_writes_the_classic_header_and_records():
    buf = io.BytesIO()
    with PcapWriter(buf) as writer:
        writer.write(1.5, SYN_PKT)
    raw = buf.getvalue()
    assert raw[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)
    assert raw[24:40] == struct.pack("<IIII", 1, 500_000, len(SYN_PKT), len(SYN_PKT))
    assert raw[40:] == SYN_PKT
    assert not buf.closed  # the caller's file stays the caller's


def test_written_captures_read_back_exactly():
    for nanosecond, time in ((False, 1_700_000_000.123456), (True, 12.000000001)):
        buf = io.BytesIO()
        with PcapWriter(buf, nanosecond=nanosecond) as writer:
            writer.write(time, SYN_PKT)
            writer.write(time + 1, UDP6_PKT)
        frames = frames_of(buf.getvalue())
        assert [(f.linktype, f.data, f.orig_len) for f in frames] == \
            [(101, SYN_PKT, len(SYN_PKT)), (101, UDP6_PKT, len(UDP6_PKT))]
        assert frames[0].time == pytest.approx(time, abs=1e-9)
        assert frames[1].time == pytest.approx(time + 1, abs=1e-9)


def test_the_snap_length_cuts_data_and_orig_len_keeps_the_truth():
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=96) as writer:
        writer.write(0.0, UDP6_PKT)
    (frame,) = frames_of(buf.getvalue())
    assert frame.data == UDP6_PKT[:96] and frame.orig_len == len(UDP6_PKT)
    assert decode(frame.data, allow_truncated=True).transport.sport == 4433


def test_a_capture_file_is_created_world_readable_whatever_the_umask(tmp_path):
    path = tmp_path / "out.pcap"
    old = os.umask(0o077)
    try:
        with PcapWriter(path) as writer:
            writer.write(0.0, SYN_PKT)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [f.data for f in iter_capture(path)] == [SYN_PKT]


def test_negative_timestamps_are_refused():
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO()).write(-1.0, SYN_PKT)


@needs_tshark
def test_tshark_reads_what_the_writer_wrote(tmp_path):
    """tshark as the independent oracle: flags, TFO cookie request / cookie (RFC 7413 §4.1.1),
    and every checksum (RFC 791, 793, 768, 8200) verified good."""
    packets = [
        tcp_packet("10.0.0.1", "10.0.0.2", 40000, 443, 1, 0, SYN, b"",
                   (mss_option(1460), fastopen_option())),
        tcp_packet("10.0.0.2", "10.0.0.1", 443, 40000, 7, 2, SYN | ACK, b"",
                   (mss_option(1460), fastopen_option(b"\x01\x02\x03\x04\x05\x06\x07\x08"))),
        tcp_packet("10.0.0.1", "10.0.0.2", 40001, 443, 1, 0, SYN, b"\x16\x03\x01" + bytes(300),
                   (fastopen_option(b"\x01\x02\x03\x04\x05\x06\x07\x08"),)),
        tcp_packet("10.0.0.1", "10.0.0.2", 40002, 443, 1, 0, SYN, b"",
                   (fastopen_option(experimental=True),)),
        tcp_packet("2001:db8::1", "2001:db8::2", 40003, 443, 1, 0, SYN, b"x" * 1001,
                   (fastopen_option(b"\xaa" * 16, experimental=True),)),
        udp_packet("2001:db8::1", "2001:db8::2", 4433, 443, b"\xc3" * 1200),
        udp_packet("10.0.0.1", "10.0.0.2", 4433, 443, b"\xc3" * 1201),
    ]
    path = tmp_path / "tfo.pcap"
    with PcapWriter(path, nanosecond=True) as writer:
        for i, data in enumerate(packets):
            writer.write(1000.0 + i / 8, data)
    rows = tshark_fields(
        path, "frame.number", "frame.time_epoch", "tcp.flags", "tcp.options.tfo.request",
        "tcp.options.tfo.cookie", "ip.checksum.status", "tcp.checksum.status",
        "udp.checksum.status", "tcp.len",
        options=("ip.check_checksum:TRUE", "tcp.check_checksum:TRUE",
                 "udp.check_checksum:TRUE"))
    assert [r[0] for r in rows] == [str(i + 1) for i in range(len(packets))]
    assert [float(r[1]) for r in rows] == [1000.0 + i / 8 for i in range(len(packets))]
    tcp_rows = rows[:5]
    assert [int(r[2], 16) for r in tcp_rows] == [SYN, SYN | ACK, SYN, SYN, SYN]
    assert [(r[3], r[4]) for r in tcp_rows] == [
        ("1", ""), ("", "0102030405060708"), ("", "0102030405060708"), ("1", ""),
        ("", "aa" * 16)]
    assert [r[8] for r in tcp_rows] == ["0", "0", "303", "0", "1001"]
    good = "1"  # Wireshark's PROTO_CHECKSUM_E_GOOD
    assert all(r[5] == good for r in rows if r[5])  # IPv4 rows only
    assert [r[6] for r in tcp_rows] == [good] * 5
    assert [r[7] for r in rows[5:]] == [good, good]
    # ...and our own reader agrees with tshark on the same file.
    decoded = [decode(f.data) for f in iter_capture(path)]
    assert [p.transport.fastopen_cookie for p in decoded[:5]] == \
        [b"", b"\x01\x02\x03\x04\x05\x06\x07\x08", b"\x01\x02\x03\x04\x05\x06\x07\x08", b"",
         b"\xaa" * 16]


# --- reading classic pcap --------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic, frac, time", [(0xA1B2C3D4, 250_000, 7.25),
                                               (0xA1B23C4D, 250_000_001, 7.250000001)])
def test_classic_pcap_in_either_byte_order_and_resolution(order, magic, frac, time):
    data = classic_pcap([(7, frac, SYN_PKT), (8, 0, DATA_PKT, 1500)], order=order, magic=magic)
    frames = frames_of(data)
    assert [(f.data, f.orig_len, f.linktype) for f in frames] == \
        [(SYN_PKT, len(SYN_PKT), 101), (DATA_PKT, 1500, 101)]
    assert frames[0].time == pytest.approx(time, abs=1e-12) and frames[1].time == 8.0


def test_kuznetzov_modified_pcap_skips_its_extra_record_bytes():
    data = classic_pcap([(1, 0, SYN_PKT)], magic=0xA1B2CD34, extra=bytes(8))
    assert [f.data for f in frames_of(data)] == [SYN_PKT]


def test_fcs_bits_in_the_link_type_field_are_not_the_link_type():
    data = classic_pcap([(1, 0, ethernet(SYN_PKT) + b"FCS!")],
                        linktype=LINKTYPE_ETHERNET | 0x14000000)
    (frame,) = frames_of(data)
    assert frame.linktype == LINKTYPE_ETHERNET
    assert decode(ip_payload(frame.linktype, frame.data)).transport.syn  # FCS is past the IP length


# --- reading pcapng --------------------------------------------------------------------------

def test_pcapng_sections_interfaces_resolutions_and_skipped_blocks():
    data, expected = two_section_pcapng()
    frames = frames_of(data)
    assert len(frames) == len(expected)
    for frame, (time, linktype, ip, orig_len, interface) in zip(frames, expected):
        assert (frame.linktype, ip_payload(frame.linktype, frame.data), frame.orig_len,
                frame.interface) == (linktype, ip, orig_len, interface)
        if time is None:  # a Simple Packet Block has no timestamp
            assert frame.time != frame.time
        else:
            assert frame.time == pytest.approx(time, rel=1e-15)


@needs_tshark
def test_tshark_agrees_with_the_hand_built_pcapng(tmp_path):
    """Checks the test's own builder: tshark reads the same frames at the same times (it also
    lists the custom block as a frame, which is not a packet: the filter drops it)."""
    data, expected = two_section_pcapng()
    path = tmp_path / "two.pcapng"
    path.write_bytes(data)
    rows = tshark_fields(path, "frame.time_epoch", "frame.len", "frame.cap_len",
                         display_filter="ip or ipv6")
    assert len(rows) == len(expected)
    for (time, _, _, orig_len, _), frame, row in zip(expected, iter_capture(path), rows):
        assert (int(row[1]), int(row[2])) == (orig_len, len(frame.data))
        if time is not None:
            assert float(row[0]) == pytest.approx(time, abs=1e-6)


def test_pcapng_from_scapy_writer(tmp_path):
    from scapy.layers.inet import IP
    from scapy.utils import PcapNgWriter

    path = tmp_path / "scapy.pcapng"
    writer = PcapNgWriter(str(path))
    first = IP(SYN_PKT)
    first.time = 1_700_000_000.5
    second = IP(DATA_PKT)
    second.time = 1_700_000_001.25
    writer.write(first)
    writer.write(second)
    writer.close()
    frames = list(iter_capture(path))
    assert [ip_payload(f.linktype, f.data) for f in frames] == [SYN_PKT, DATA_PKT]
    assert [f.time for f in frames] == pytest.approx([1_700_000_000.5, 1_700_000_001.25])


# --- link layers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scapy():
    """scapy's layers, imported once per module."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
    from scapy.utils import wrpcap

    return SimpleNamespace(IP=IP, ARP=ARP, CookedLinux=CookedLinux, CookedLinuxV2=CookedLinuxV2,
                           Dot1AD=Dot1AD, Dot1Q=Dot1Q, Ether=Ether, Loopback=Loopback,
                           wrpcap=wrpcap)


def test_scapy_framed_captures_yield_the_ip_packet(scapy, tmp_path):
    ip = scapy.IP(SYN_PKT)
    eth = scapy.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    cases = [
        (LINKTYPE_ETHERNET, eth / ip),
        (LINKTYPE_ETHERNET, eth / scapy.Dot1Q(vlan=7) / ip),
        (LINKTYPE_ETHERNET, eth / scapy.Dot1AD(vlan=5) / scapy.Dot1Q(vlan=7) / ip),
        (LINKTYPE_LINUX_SLL, scapy.CookedLinux(proto=0x0800) / ip),
        (LINKTYPE_LINUX_SLL2, scapy.CookedLinuxV2(proto=0x0800) / ip),
        (LINKTYPE_NULL, scapy.Loopback(type=2) / ip),
    ]
    for linktype, frame in cases:
        path = tmp_path / f"{linktype}.pcap"
        scapy.wrpcap(str(path), [frame], linktype=linktype)
        (captured,) = iter_capture(path)
        assert captured.linktype == linktype
        assert ip_payload(captured.linktype, captured.data) == SYN_PKT, frame.summary()
    arp = eth / scapy.ARP()
    assert ip_payload(LINKTYPE_ETHERNET, bytes(arp)) is None


@pytest.mark.parametrize("linktype, header", [
    (LINKTYPE_NULL, struct.pack("<I", 2)),
    (LINKTYPE_NULL, struct.pack(">I", 2)),
    (LINKTYPE_NULL, struct.pack("<I", 24)),
    (LINKTYPE_NULL, struct.pack(">I", 28)),
    (LINKTYPE_NULL, struct.pack("<I", 30)),
    (LINKTYPE_LOOP, struct.pack(">I", 2)),
    (LINKTYPE_LOOP, struct.pack(">I", 30)),
    (LINKTYPE_RAW, b""),
    (12, b""),
    (14, b""),
    (228, b""),
    (LINKTYPE_ETHERNET, ethernet(b"", 0x86DD, tags=(0x88A8, 0x8100))),
    (LINKTYPE_LINUX_SLL, struct.pack("!HHH8sH", 0, 772, 0, bytes(8), 0x86DD)),
    (LINKTYPE_LINUX_SLL2, sll2(b"", 0x86DD)),
])
def test_link_headers_are_stripped(linktype, header):
    packet = UDP6_PKT if linktype in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL,
                                      LINKTYPE_LINUX_SLL2) else SYN_PKT
    assert ip_payload(linktype, header + packet) == packet


@pytest.mark.parametrize("linktype, frame", [
    (LINKTYPE_NULL, struct.pack("<I", 7) + SYN_PKT),         # AF_UNIX: not IP
    (LINKTYPE_LOOP, struct.pack("<I", 2) + SYN_PKT),         # LOOP is network order only
    (LINKTYPE_ETHERNET, ethernet(SYN_PKT, 0x0806)),          # ARP
    (LINKTYPE_ETHERNET, ethernet(b"", 0x8100)[:14]),         # a VLAN tag cut off
    (LINKTYPE_ETHERNET, b"\x00" * 10),
    (LINKTYPE_LINUX_SLL2, sll2(SYN_PKT, 0x0806)),
    (LINKTYPE_RAW, b"\x10" + SYN_PKT[1:]),                   # version 1
    (LINKTYPE_RAW, b""),
    (127, SYN_PKT),                                          # 802.11 radiotap: unsupported
])
def test_frames_without_ip_give_none(linktype, frame):
    assert ip_payload(linktype, frame) is None


def test_unsupported_link_types_can_be_named_up_front():
    check_linktype(LINKTYPE_LINUX_SLL2)
    with pytest.raises(UnsupportedLinkType, match="unsupported link type 127") as info:
        check_linktype(127)
    assert info.value.linktype == 127 and isinstance(info.value, CaptureError)


# --- errors ----------------------------------------------------------------------------------

def test_an_empty_file_says_so():
    with pytest.raises(CaptureError, match="^empty file$"):
        frames_of(b"")


def test_a_file_that_is_no_capture_names_its_magic():
    with pytest.raises(CaptureError, match=r"not a pcap or pcapng file \(magic 0x3c68746d\)"):
        frames_of(b"<html><body>")


def test_a_missing_file_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match="cannot open .*missing.pcap"):
        list(iter_capture(tmp_path / "missing.pcap"))


def test_a_truncated_last_record_ends_iteration_after_all_complete_records():
    data = classic_pcap([(1, 0, SYN_PKT), (2, 0, DATA_PKT), (3, 0, DATA_PKT)])
    cut = data[:-5]
    seen = []
    with pytest.raises(TruncatedCapture,
                       match=r"^truncated capture: record at byte (\d+) cut short$") as info:
        for frame in iter_capture(io.BytesIO(cut)):
            seen.append(frame.data)
    assert seen == [SYN_PKT, DATA_PKT]
    assert info.value.frames == 2
    assert info.value.offset == 24 + 2 * 16 + len(SYN_PKT) + len(DATA_PKT)


def test_a_truncated_pcapng_block_also_yields_what_came_before():
    data, expected = two_section_pcapng()
    with pytest.raises(TruncatedCapture, match="block at byte"):
        seen = []
        for frame in iter_capture(io.BytesIO(data[:-3])):
            seen.append(frame)
    assert len(seen) == len(expected) - 1


@pytest.mark.parametrize("data, message", [
    (b"\xd4\xc3", "truncated capture: file header at byte 0 cut short"),
    (struct.pack("<I", 0xA1B2C3D4) + bytes(10), "truncated capture: file header"),
    (classic_pcap([]) + struct.pack("<IIII", 0, 0, 1 << 30, 0), "claims 1073741824 bytes"),
    (shb("<")[:-4] + struct.pack("<I", 99), "mismatched lengths"),
    (shb("<")[:8] + b"\x01\x02\x03\x04" + shb("<")[12:], "byte-order magic 0x01020304"),
    (shb("<") + block("<", 6, bytes(20)), "names interface 0, but the section has 0"),
    (shb("<") + struct.pack("<II", 6, 13) + bytes(5), "has length 13"),
    (shb("<") + idb("<", 1) + block("<", 6, struct.pack("<IIIII", 0, 0, 0, 50, 50)),
     "claims 50 bytes"),
    (shb("<") + block("<", 1, b"\x01"), "interface block at byte 52 is too short"),
    (shb("<") + idb("<", 1, tsresol=99), "if_tsresol 99"),
])
def test_corrupt_captures_raise_one_line_capture_errors(data, message):
    with pytest.raises(CaptureError, match=message) as info:
        frames_of(data)
    assert "\n" not in str(info.value)


def test_reading_streams_records_without_holding_the_file(tmp_path):
    """A 30 MB capture is read with a bounded working set: memory does not grow with size."""
    path = tmp_path / "big.pcap"
    payload_packet = tcp_packet("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK, bytes(1400))
    with PcapWriter(path) as writer:
        for i in range(20_000):
            writer.write(i * 1e-3, payload_packet)
    assert path.stat().st_size > 28_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_capture(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 1_000_000


class _Trickle(io.RawIOBase):
    """A pipe-like source: every read returns at most ``step`` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._position, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        chunk = self._data[self._position:self._position + size]
        self._position += len(chunk)
        return chunk


@pytest.mark.parametrize("step", [1 << 30, 1000], ids=["whole reads", "short reads"])
def test_records_larger_than_a_read_chunk_and_across_chunk_edges_come_back_whole(step):
    """The reader cuts records out of chunks it reads ahead (pcap._CHUNK): a record bigger than
    a chunk, and records that straddle two chunks, come back byte for byte, also from a source
    whose reads return less than asked (a pipe), and a cut in the last one is reported."""
    sizes = [100, pcap._CHUNK * 2 + 7, 3, pcap._CHUNK - 10, 50, pcap._CHUNK]
    records = [(i, 0, bytes([i]) * size) for i, size in enumerate(sizes)]
    data = classic_pcap(records)
    frames = list(iter_capture(_Trickle(data, step)))
    assert [frame.data for frame in frames] == [record[2] for record in records]
    assert [frame.time for frame in frames] == [float(i) for i in range(len(sizes))]
    with pytest.raises(TruncatedCapture) as cut:
        list(iter_capture(_Trickle(data[:-1], step)))
    assert cut.value.frames == len(sizes) - 1


# --- robustness: mutated and truncated captures ----------------------------------------------

def _seed_captures() -> list[bytes]:
    """Valid captures of every format and framing we read, to mutate."""
    buf = io.BytesIO()
    with PcapWriter(buf, nanosecond=True) as writer:
        for i, data in enumerate((SYN_PKT, DATA_PKT, UDP6_PKT[:200])):
            writer.write(i, data)
    eth = classic_pcap([(1, 0, ethernet(SYN_PKT, tags=(0x8100,))), (2, 0, ethernet(DATA_PKT))],
                       order=">", linktype=LINKTYPE_ETHERNET)
    null = classic_pcap([(1, 0, struct.pack("<I", 2) + SYN_PKT)], linktype=LINKTYPE_NULL)
    sll = classic_pcap([(1, 0, sll2(DATA_PKT))], magic=0xA1B2CD34, linktype=LINKTYPE_LINUX_SLL2,
                       extra=bytes(8))
    ng, _ = two_section_pcapng()
    return [buf.getvalue(), eth, null, sll, ng]


SEED_CAPTURES = _seed_captures()


def _mutate(data: bytes, seed: int) -> bytes:
    """Random byte changes (biased to the headers), sometimes a cut: one seed per example keeps
    hypothesis's per-example cost low enough for 10,000 examples."""
    rng = random.Random(seed)
    buf = bytearray(data)
    for _ in range(rng.randrange(6)):
        limit = 64 if rng.random() < 0.5 else len(buf)
        buf[rng.randrange(min(limit, len(buf)))] = rng.randrange(256)
    if rng.random() < 0.4:
        del buf[rng.randrange(len(buf) + 1):]
    return bytes(buf)


def _read_everything(data: bytes) -> int:
    decoded = 0
    for frame in iter_capture(io.BytesIO(data)):
        ip = ip_payload(frame.linktype, frame.data)
        if ip is None:
            continue
        try:
            packet = decode(ip, allow_truncated=frame.orig_len > len(frame.data))
        except PacketError:
            continue
        assert isinstance(packet.transport, (TcpSegment, UdpDatagram, bytes))
        decoded += 1
    return decoded


@settings(max_examples=10_000, deadline=None)
@given(st.sampled_from(SEED_CAPTURES), st.integers(0, 2**64))
def test_mutated_captures_raise_only_capture_or_packet_errors(capture, seed):
    try:
        _read_everything(_mutate(capture, seed))
    except CaptureError:
        pass
