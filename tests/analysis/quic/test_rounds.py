"""The QUIC round counter reads only what packets prove: ACK frames, content, and the 3x limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handshake.analysis.quic.rounds import QuicRoundCounter


def test_each_acknowledged_exchange_is_one_round():
    counter = QuicRoundCounter()
    rounds = [
        counter.add(True, 1200, sent=[("initial", 0)]).round,
        counter.add(False, 1200, sent=[("initial", 0)], acks=[("initial", [(0, 0)])]).round,
        counter.add(True, 1200, sent=[("initial", 1)], acks=[("initial", [(0, 0)])]).round,
        counter.add(True, 50, sent=[("application", 0)]).round,  # knows what the client knew before
        counter.add(False, 400, sent=[("application", 0)], acks=[("application", [(0, 0)])]).round,
    ]
    assert rounds == [0, 1, 1, 1, 2]


def test_a_server_datagram_is_at_least_round_one_and_knowledge_never_shrinks():
    counter = QuicRoundCounter()
    counter.add(True, 1200, sent=[("initial", 0)])
    assert counter.add(False, 100).round == 1  # a Retry: no ACK, but it answers
    counter.add(True, 1200, sent=[("initial", 1)], had=[1])
    assert counter.add(False, 1200, acks=[("initial", [(1, 1)])]).round == 2
    assert counter.add(False, 100, acks=[("initial", [(0, 0)])]).round == 2


def test_acks_of_packets_never_seen_prove_nothing():
    counter = QuicRoundCounter()
    counter.add(True, 1200, sent=[("initial", 0)])
    counter.add(False, 1200, sent=[("initial", 0)], acks=[("initial", [(0, 0)])])
    assert counter.add(True, 1200, acks=[("handshake", [(0, 1 << 62)]), ("initial", [(5, 9)])]).round == 0


def test_more_than_three_times_the_round0_bytes_proves_the_server_heard_more():
    counter = QuicRoundCounter()
    counter.add(True, 1200, sent=[("initial", 0)])
    flight = [counter.add(False, 1200, sent=[("handshake", n)], acks=[("initial", [(0, 0)])]) for n in range(3)]
    assert [r.round for r in flight] == [1, 1, 1]  # exactly 3x: allowed before validation
    assert counter.add(True, 1200, sent=[("initial", 1)], acks=[("handshake", [(0, 2)])]).round == 1
    more = counter.add(False, 1200)
    assert (more.round, more.round_by_evidence) == (2, 1)


def test_a_token_in_a_round0_initial_switches_the_amplification_argument_off():
    counter = QuicRoundCounter()
    counter.amplification_limit_applies = False
    counter.add(True, 1200, sent=[("initial", 0)])
    assert [counter.add(False, 1200).round for _ in range(5)] == [1] * 5


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(
    st.booleans(), st.integers(0, 2000),
    st.lists(st.tuples(st.sampled_from(["initial", "handshake", "application"]), st.integers(0, 50)), max_size=3),
    st.lists(st.tuples(st.sampled_from(["initial", "handshake", "application"]),
                       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=3)), max_size=2),
), max_size=30))
def test_rounds_never_go_back_per_side(datagrams):
    counter = QuicRoundCounter()
    last = {True: 0, False: 1}
    for from_client, size, sent, acks in datagrams:
        acks = [(space, [(min(a, b), max(a, b)) for a, b in ranges]) for space, ranges in acks]
        rnd = counter.add(from_client, size, sent=sent, acks=acks)
        assert rnd.round >= last[from_client] and rnd.round >= rnd.round_by_evidence
        last[from_client] = rnd.round
