from handshake.analysis.tls.records import RecordReader

from .builders import record


def test_records_carry_their_stream_offsets():
    reader = RecordReader()
    records, not_tls = reader.feed(record(22, b"abc") + record(20, b"\x01") + record(23, b""))
    assert not_tls is None
    assert [(r.content_type, r.start_offset, r.end_offset, r.fragment) for r in records] == [
        (22, 0, 8, b"abc"),
        (20, 8, 14, b"\x01"),
        (23, 14, 19, b""),
    ]
    assert records[0].header == b"\x16\x03\x03\x00\x03"


def test_a_truncated_record_waits_for_its_remaining_bytes():
    reader = RecordReader()
    data = record(22, b"x" * 100) + record(21, b"\x01\x00")
    seen = []
    for i in range(len(data)):
        records, not_tls = reader.feed(data[i : i + 1])
        assert not_tls is None
        seen += [(i, r.end_offset) for r in records]
    assert seen == [(104, 105), (111, 112)]
    assert reader.offset == len(data)


def test_a_stream_that_is_not_tls_is_reported_once_then_ignored():
    reader = RecordReader()
    records, not_tls = reader.feed(record(22, b"ok") + b"GET / HTTP/1.1\r\n")
    assert [r.end_offset for r in records] == [7]
    assert not_tls is not None and (not_tls.start_offset, not_tls.end_offset, not_tls.first_byte) == (7, 23, ord("G"))
    assert reader.feed(record(22, b"more")) == ([], None)
    assert reader.offset == 23 + 9


def test_a_bad_header_is_recognised_from_its_first_wrong_byte():
    for prefix in (b"\x18", b"\x16\x02", b"\x16\x03\x05", b"\x17\x03\x03\x48\x01"):
        _, not_tls = RecordReader().feed(prefix)
        assert not_tls is not None, prefix
    for prefix in (b"\x16", b"\x16\x03", b"\x16\x03\x01", b"\x17\x03\x03\x48\x00"):
        assert RecordReader().feed(prefix) == ([], None), prefix
