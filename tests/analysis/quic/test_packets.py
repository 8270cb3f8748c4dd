"""QUIC headers and packet protection, checked against the worked examples of RFC 9001 Appendix A
and against packets aioquic builds."""

from __future__ import annotations

from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import encode_quic_retry, encode_quic_version_negotiation
from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.quic.crypto import (
    QUIC_SUITES,
    PacketKey,
    PacketProtection,
    initial_protections,
    initial_secrets,
    protect,
    retry_tag_valid,
)
from handshake.analysis.quic.frames import AckFrame, CryptoFrame, PaddingFrame, PingFrame, parse_frames
from handshake.analysis.quic.packets import VERSION_1, VERSION_2, parse_datagram
from handshake.analysis.tls.keys13 import TLS13_CIPHER_SUITES
from handshake.analysis.tls.messages import parse_client_hello, parse_server_hello

# RFC 9001 Appendix A: the client's first DCID, and the packets made from it.
RFC_DCID = bytes.fromhex("8394c8f03e515708")
RFC_CLIENT_INITIAL = bytes.fromhex(  # A.2, padded to 1200 bytes
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11d242b123dc9bd8bab936b47d92ec356c0bab"
    "7df5976d27cd449f63300099f3991c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c8eb7539ec4"
    "d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df621230c83711b39343fa028cea7f7fb5ff89eac2308249a02252"
    "155e2347b63d58c5457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c2084dce25ff9b06cde535d0f9"
    "20a2db1bf362c23e596d11a4f5a6cf3948838a3aec4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db"
    "4ba3485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db059ae0648db2f64264ed5e39be2e20d82d"
    "f566da8dd5998ccabdae053060ae6c7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f89937f5a6"
    "7258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556be52afe3f565636ad1b17d508b73d8743eeb524be22b3d"
    "cbc2c7468d54119c7468449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663ac69890f4157015853d91"
    "e923037c227a33cdd5ec281ca3f79c44546b9d90ca00f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927"
    "726632291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe5896425c5bac4aee82e57a85aaf4e2513e4f0"
    "5796b07ba2ee47d80506f8d2c25e50fd14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ffef132e"
    "ef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198e3fc433f9f2541010ae17c1bf202580f6047472fb368"
    "57fe843b19f5984009ddc324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73203a4a13e96f5432ec"
    "0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77fcb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123"
    "cb11450efc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03adea2e1fbc5aa463d08ca19896d2bf59a"
    "071b851e6c239052172f296bfb5e72404790a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2162f"
    "40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f440591f355e12d439ff150aab7613499dbd49adabc8"
    "676eef023b15b65bfc5ca06948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e8f2e6ff5800175f1"
    "13253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb386826"
    "3ff8f0940054da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab760d58a606654f9f4400e8b38591"
    "356fbf6425aca26dc85244259ff2b19c41b9f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b405"
    "6df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd46840647e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d16"
    "9a44e55c88d4a9a7f9474241e221af44860018ab0856972e194cd934"
)
RFC_SERVER_INITIAL = bytes.fromhex(  # A.3
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a5816b6394100f37a1c69797554780bb38cc5a9"
    "9f5ede4cf73c3ec2493a1839b3dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84022f8ef4cdd9"
    "3795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc42158407dd074ee"
)
RFC_RETRY = bytes.fromhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")  # A.4
RFC_CHACHA_SHORT = bytes.fromhex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb")  # A.5
RFC_CHACHA_SECRET = bytes.fromhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b")


def test_initial_keys_come_from_the_client_dcid():
    # RFC 9001 A.1
    client, server = initial_secrets(RFC_DCID, VERSION_1)
    assert client.hex() == "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    assert server.hex() == "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"
    key = PacketKey(client, TLS13_CIPHER_SUITES[0x1301], VERSION_1)
    assert (key.key.hex(), key.iv.hex(), key.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"
    )
    key = PacketKey(server, TLS13_CIPHER_SUITES[0x1301], VERSION_1)
    assert (key.key.hex(), key.iv.hex(), key.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314"
    )


def test_the_rfc_client_initial_opens_and_names_its_server():
    parsed = parse_datagram(RFC_CLIENT_INITIAL)
    assert parsed.trailing_bytes == 0 and len(parsed.packets) == 1
    packet = parsed.packets[0]
    assert (packet.packet_type, packet.version, packet.dcid, packet.scid, packet.token) == (
        "initial", VERSION_1, RFC_DCID, b"", b""
    )
    client, _ = initial_protections(RFC_DCID, VERSION_1)
    opened = client.open(packet, -1)
    assert opened is not None and opened.packet_number == 2
    assert opened.header.hex() == "c300000001088394c8f03e5157080000449e00000002"
    frames = parse_frames(opened.payload)
    assert frames.complete and isinstance(frames.frames[0], CryptoFrame) and isinstance(frames.frames[1], PaddingFrame)
    assert parse_client_hello(frames.frames[0].data[4:]).server_name == "example.com"


def test_a_server_initial_coalesced_with_a_short_header_packet():
    parsed = parse_datagram(RFC_SERVER_INITIAL + RFC_CHACHA_SHORT, short_dcid_length=0)
    assert [p.packet_type for p in parsed.packets] == ["initial", "1rtt"]
    initial, short = parsed.packets
    assert initial.scid == bytes.fromhex("f067a5502a4262b5") and initial.data == RFC_SERVER_INITIAL
    _, server = initial_protections(RFC_DCID, VERSION_1)
    opened = server.open(initial, -1)
    assert opened is not None and opened.packet_number == 1
    ack, crypto = parse_frames(opened.payload).frames
    assert isinstance(ack, AckFrame) and ack.ranges == ((0, 0),)
    hello = parse_server_hello(crypto.data[4:])
    assert (hello.cipher_suite, hello.version) == (0x1301, 0x0304)
    assert short.pn_offset == 1 and short.dcid == b""


def test_header_protection_with_chacha20():
    # RFC 9001 A.5: the packet number decodes relative to the largest one seen (RFC 9000 A.3).
    short = parse_datagram(RFC_CHACHA_SHORT, short_dcid_length=0).packets[0]
    protection = PacketProtection(RFC_CHACHA_SECRET, VERSION_1, key_updates=True)
    opened = protection.open(short, 654360563)
    assert opened is not None
    assert (opened.packet_number, opened.header.hex(), opened.payload, opened.key_phase) == (
        654360564, "4200bff4", b"\x01", 0
    )
    assert protection.suite is not None and protection.suite.code == 0x1303
    assert parse_frames(opened.payload).frames == (PingFrame(),)


def test_a_retry_is_genuine_only_for_the_dcid_it_answers():
    # RFC 9001 A.4 / §5.8
    retry = parse_datagram(RFC_RETRY).packets[0]
    assert (retry.packet_type, retry.token, retry.scid) == ("retry", b"token", bytes.fromhex("f067a5502a4262b5"))
    assert retry_tag_valid(retry, RFC_DCID)
    assert not retry_tag_valid(retry, bytes(8))
    for version in (VERSION_1, VERSION_2):
        built = encode_quic_retry(version, b"\x01" * 8, b"\x02" * 8, b"\x03" * 8, b"tok")
        packet = parse_datagram(built).packets[0]
        assert packet.packet_type == "retry" and packet.version == version and retry_tag_valid(packet, b"\x03" * 8)


def test_version_negotiation_lists_the_server_versions():
    built = encode_quic_version_negotiation(b"\x0a" * 8, b"\x0b" * 8, [VERSION_1, VERSION_2])
    (packet,) = parse_datagram(built).packets
    assert packet.packet_type == "version_negotiation"
    assert packet.supported_versions == (VERSION_1, VERSION_2)
    assert (packet.dcid, packet.scid) == (b"\x0b" * 8, b"\x0a" * 8)


def test_bytes_that_are_not_a_packet_end_the_datagram():
    client, _ = initial_protections(RFC_DCID, VERSION_1)
    # Zero padding after a packet (the fixed bit is 0): kept as trailing bytes.
    parsed = parse_datagram(RFC_SERVER_INITIAL + bytes(20))
    assert len(parsed.packets) == 1 and parsed.trailing_bytes == 20
    # A Length field past the datagram's end: no packet.
    assert parse_datagram(RFC_SERVER_INITIAL[:-1]).packets == ()
    # A DCID longer than QUIC v1 allows.
    assert parse_datagram(b"\xc0\x00\x00\x00\x01\x15" + bytes(40)).packets == ()
    # A coalesced packet for another connection is ignored (RFC 9000 §12.2).
    other = RFC_CLIENT_INITIAL[:6] + bytes(8) + RFC_CLIENT_INITIAL[14:]
    parsed = parse_datagram(RFC_CLIENT_INITIAL + other)
    assert len(parsed.packets) == 1 and parsed.trailing_bytes == len(other)
    # A short header with an unknown DCID length is kept, unopenable.
    (short,) = parse_datagram(RFC_CHACHA_SHORT).packets
    assert short.pn_offset is None and client.open(short, 0) is None


def test_aioquic_initial_packets_open_in_both_versions():
    for version in (VERSION_1, VERSION_2):
        sender = CryptoPair()
        sender.setup_initial(b"\x11" * 8, is_client=True, version=version)
        first = 0xC3 | (0x10 if version == VERSION_2 else 0)  # Initial type bits, 4-byte packet number
        header = bytes([first]) + version.to_bytes(4, "big") + b"\x08" + b"\x11" * 8 + b"\x00" + b"\x00"
        payload = b"\x01" + bytes(60)
        length = 4 + len(payload) + 16
        header += (0x4000 | length).to_bytes(2, "big") + (7).to_bytes(4, "big")
        packet_bytes = sender.encrypt_packet(header, payload, 7)
        (packet,) = parse_datagram(packet_bytes).packets
        assert packet.packet_type == "initial"
        client, _ = initial_protections(b"\x11" * 8, version)
        opened = client.open(packet, 5)
        assert opened is not None and opened.packet_number == 7 and opened.payload == payload


@settings(max_examples=60, deadline=None)
@given(
    suite=st.sampled_from(QUIC_SUITES),
    secret_seed=st.binary(min_size=1, max_size=8),
    number=st.integers(0, (1 << 62) - 1),
    pn_length=st.integers(1, 4),
    payload=st.binary(min_size=3, max_size=64),
    flip=st.integers(0, 10_000),
)
def test_what_protect_seals_opens_again_and_not_with_a_bit_changed(
    suite, secret_seed, number, pn_length, payload, flip
):
    hash_bytes = TLS13_CIPHER_SUITES[suite].hash_bytes
    secret = (secret_seed * hash_bytes)[:hash_bytes]
    key = PacketKey(secret, TLS13_CIPHER_SUITES[suite], VERSION_1)
    truncated = number & ((1 << (8 * pn_length)) - 1)
    header = bytes([0x40 | (pn_length - 1)]) + b"\x07" * 4 + truncated.to_bytes(pn_length, "big")
    wire = protect(key, header, pn_length, number, payload)
    (packet,) = parse_datagram(wire, short_dcid_length=4).packets
    protection = PacketProtection(secret, VERSION_1, (suite,))
    opened = protection.open(packet, number - 1)
    assert opened is not None and opened.packet_number == number and opened.payload == payload
    bit = flip % (len(wire) * 8)
    bad = bytearray(wire)
    bad[bit // 8] ^= 1 << (bit % 8)
    packets = parse_datagram(bytes(bad), short_dcid_length=4).packets
    assert not packets or PacketProtection(secret, VERSION_1, (suite,)).open(packets[0], number - 1) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(0, 20)))
def test_parsing_never_raises(data, short_length):
    parsed = parse_datagram(data, short_length)
    assert sum(len(p.data) for p in parsed.packets) + parsed.trailing_bytes == len(data)
