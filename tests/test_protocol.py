"""The sans-I/O exchange: messages, and two real replicas driven by hand (no network)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import records, wire
from gossip.protocol import (
    PUSH_PATH,
    SYNC_PATH,
    Initiator,
    Message,
    MessageType,
    RemoteProtocolError,
    UnsupportedVersion,
    fit,
    lacks,
    on_push_reply,
    parse_request,
    push,
    sv_apply,
    sv_diff,
    sv_digest,
)
from tests.exchanges import respond, step

TS = 1_790_000_000_000


def exchange(a, b, **kw) -> Initiator:
    """One push-pull round from a to b, the way a transport drives it."""
    ex = Initiator(a, source=b.author, **kw)
    request = ex.start()
    while request is not None:
        request = step(ex, a, respond(b, request.body, source=a.author, path=request.path).body)
    return ex


def test_message_round_trip():
    m = Message(MessageType.SYNC_REPLY, {5: 3, 2**53 - 1: 7}, (b"abc", b"", b"\x00" * 300))
    assert Message.decode(m.encode()) == m


@pytest.mark.parametrize(
    "junk, error",
    [
        (b"", RemoteProtocolError),
        (b"XYZ\x01\x01\x00\x00", RemoteProtocolError),
        (b"SMG\x01\x01\x00\x00", UnsupportedVersion),  # a version-1 peer's SYNC
        (b"SMG\x03\x01\x00\x00", UnsupportedVersion),
        (b"SMG\x02\x09\x00\x00", RemoteProtocolError),
        (b"SMG\x02\x01\x05\x00", RemoteProtocolError),  # state vector longer than the body
        (b"SMG\x02\x01\x00\x02\x01a", RemoteProtocolError),  # fewer updates than claimed
        (b"SMG\x02\x01\x00\x00extra", RemoteProtocolError),
    ],
)
def test_malformed_messages_raise_remote_errors(junk, error):
    with pytest.raises(error):
        Message.decode(junk)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data):
    with contextlib.suppress(RemoteProtocolError):
        Message.decode(b"SMG\x02" + data)


def test_push_pull_converges_both_ways(open_replica):
    a, b = open_replica("a"), open_replica("b")
    a.put(records.memory(a.identity, "from a", category="c", ts=TS))
    b.put(records.memory(b.identity, "from b", category="c", ts=TS))
    b.put(records.breaker(b.identity, "k", state="open", ts=TS))
    ex = exchange(a, b)
    assert a.state_vector() == b.state_vector()
    assert ex.result.learned == 2 and ex.result.sent == 1 and ex.result.requests == 2


def test_in_sync_peers_finish_in_one_small_request(open_replica):
    a, b = open_replica("a"), open_replica("b")
    a.put(records.memory(a.identity, "x", category="c", ts=TS))
    b.put(records.memory(b.identity, "y", category="c", ts=TS))
    first = exchange(a, b)
    assert first.result.peer_sv == a.state_vector() == b.state_vector()
    # Having met b before, a opens with a DIGEST: "same".
    ex = Initiator(a, source=b.author, digest_first=True)
    request = ex.start()
    assert Message.decode(request.body).type is MessageType.DIGEST
    reply = respond(b, request.body, source=a.author, path=request.path)
    assert Message.decode(reply.body).type is MessageType.SAME
    assert reply.peer_sv == b.state_vector()
    assert step(ex, a, reply.body) is None
    assert ex.result.requests == 1 and ex.result.peer_sv == b.state_vector()
    assert (len(request.body), len(reply.body)) == (39, 7)  # no state vector goes


def test_a_digest_that_differs_leads_to_the_full_exchange(open_replica):
    a, b, c = open_replica("a"), open_replica("b"), open_replica("c")
    a.put(records.memory(a.identity, "x", category="c", ts=TS))
    exchange(a, b)
    b.put(records.memory(b.identity, "b news", category="c", ts=TS))  # b moved on
    ex = exchange(a, b, digest_first=True)
    assert ex.result.requests == 2 and ex.result.learned == 1  # DIGEST, then SYNC
    assert a.state_vector() == b.state_vector() == ex.result.peer_sv
    # A peer that lost what we saw it hold (a wiped data dir): DIGEST, then PUSH.
    ex = exchange(a, c, digest_first=True)
    assert ex.result.requests == 2 and ex.result.sent == 2
    assert c.state_vector() == a.state_vector()


def test_digest_and_same_are_well_formed_or_refused(open_replica):
    b = open_replica("b")
    digest = Message(MessageType.DIGEST, digest=bytes(32))
    assert Message.decode(digest.encode()) == digest
    assert Message.decode(Message(MessageType.SAME).encode()).type is MessageType.SAME
    for junk in (
        b"SMG\x02\x05\x03abc\x00",  # a digest of 3 bytes
        b"SMG\x02\x05\x20" + bytes(32) + b"\x01\x01a",  # a DIGEST with an update
        b"SMG\x02\x06\x01\x00\x00",  # a SAME with a state vector
    ):
        with pytest.raises(RemoteProtocolError):
            Message.decode(junk)
    with pytest.raises(RemoteProtocolError, match="goes to"):
        respond(b, digest.encode(), source="x", path=PUSH_PATH)
    with pytest.raises(RemoteProtocolError, match="not a request"):
        respond(b, Message(MessageType.SAME).encode(), source="x")


def test_the_digest_ignores_client_order_and_zero_clocks():
    assert sv_digest({1: 2, 3: 4}) == sv_digest({3: 4, 1: 2, 9: 0})
    assert sv_digest({1: 2}) != sv_digest({1: 3})


def test_a_known_peer_state_vector_sends_the_delta_up_front(open_replica):
    a, b = open_replica("a"), open_replica("b")
    exchange(a, b)
    a.put(records.memory(a.identity, "new", category="c", ts=TS))
    ex = Initiator(a, source=b.author, peer_sv=b.state_vector())
    reply = respond(b, ex.start().body, source=a.author)
    assert step(ex, a, reply.body) is None  # nothing left to push
    assert a.state_vector() == b.state_vector() and ex.result.requests == 1
    assert len(reply.new_updates) == 1


def test_eager_push_and_relay(open_replica):
    a, b, c = open_replica("a"), open_replica("b"), open_replica("c")
    su = a.put(records.breaker(a.identity, "k2p5", state="open", ts=TS))
    got = respond(b, push(a.state_vector(), [su.raw]).encode(), source=a.author)
    assert got.new_updates == [su.raw]  # b learned it: b passes it on
    relayed = respond(c, push(b.state_vector(), got.new_updates).encode(), source=b.author)
    assert relayed.new_updates == [su.raw]
    again = respond(c, push(b.state_vector(), got.new_updates).encode(), source=b.author)
    assert again.new_updates == []  # already known: the rumour stops here
    assert on_push_reply(again.body, b.state_vector()) == c.state_vector()
    assert lacks(a.state_vector(), {}) and not lacks(c.state_vector(), a.state_vector())


def test_replies_are_not_requests(open_replica):
    b = open_replica("b")
    with pytest.raises(RemoteProtocolError):
        respond(b, Message(MessageType.SYNC_REPLY).encode(), source="x")


def test_with_a_path_each_message_goes_to_its_own_endpoint(open_replica):
    a, b = open_replica("a"), open_replica("b")
    b.trust(a.author)
    a.put(records.memory(a.identity, "x", category="c", ts=TS))
    sync = Message(MessageType.SYNC, a.state_vector(), tuple(a.updates_for({}))).encode()
    push_ = push(a.state_vector(), a.updates_for({})).encode()
    before = b.state_vector()
    for body, path in ((sync, PUSH_PATH), (push_, SYNC_PATH), (sync, "/v1/other")):
        with pytest.raises(RemoteProtocolError, match="goes to"):
            respond(b, body, source=a.author, path=path)
    assert b.state_vector() == before  # refused before anything was ingested
    reply = respond(b, sync, source=a.author, path=SYNC_PATH)
    assert Message.decode(reply.body).type is MessageType.SYNC_REPLY
    reply = respond(b, push_, source=a.author, path=PUSH_PATH)
    assert Message.decode(reply.body).type is MessageType.PUSH_REPLY
    # Without a path the message's type decides (what callers that pass none get).
    assert Message.decode(respond(b, sync, source=a.author).body).type is MessageType.SYNC_REPLY
    assert Message.decode(respond(b, push_, source=a.author).body).type is MessageType.PUSH_REPLY


def test_a_delta_larger_than_one_message_arrives_over_several_exchanges(open_replica):
    """No message exceeds the budget, yet every exchange makes progress."""
    a, b = open_replica("a"), open_replica("b")
    for i in range(30):
        a.put(records.memory(a.identity, f"lesson {i} " + "x" * 2000, category="c", ts=TS))
    sizes, rounds = [], 0
    while a.state_vector() != b.state_vector():
        rounds += 1
        assert rounds < 20
        ex = Initiator(b, source=a.author, max_message_bytes=10_000)
        reply = respond(a, ex.start().body, source=b.author, max_reply_bytes=10_000)
        sizes.append(len(reply.body))
        step(ex, b, reply.body)
    assert rounds > 3 and max(sizes) <= 10_000 + 100
    assert len(b.records()) == 30
    # the push leg is bounded the same way
    c = open_replica("c")
    pushes = 0
    while a.state_vector() != c.state_vector():
        ex = Initiator(a, source=c.author, max_message_bytes=10_000)
        push = step(ex, a, respond(c, ex.start().body, source=a.author).body)
        assert push is not None and len(push.body) <= 10_000 + 100
        respond(c, push.body, source=a.author, path=push.path)
        pushes += 1
        assert pushes < 20
    assert pushes > 3


class _Counting:
    """A replica as an exchange reads it, counting the stored updates it is asked for."""

    def __init__(self, replica) -> None:
        self.replica, self.taken = replica, 0

    def state_vector(self):
        return self.replica.state_vector()

    def updates_for(self, peer_sv):
        for u in self.replica.iter_updates_for(peer_sv):
            self.taken += 1
            yield u


def test_an_answer_reads_a_backlog_only_as_far_as_its_message(open_replica):
    """A fresh peer asks again after each part of a backlog; reading all of it for each
    part made a catch-up quadratic in the seed's store."""
    a, b = open_replica("a"), open_replica("b")
    for i in range(30):
        a.put(records.memory(a.identity, f"lesson {i} " + "x" * 2000, category="c", ts=TS))
    local = _Counting(a)
    first = respond(local, Initiator(b, source=a.author).start().body, source=b.author,
                    max_reply_bytes=10_000)  # fmt: skip
    carried = Message.decode(first.body).updates
    assert 0 < len(carried) < 30 and not first.complete
    assert local.taken == len(carried) + 1  # the first one left out, and no further
    assert list(carried) == a.updates_for(b.state_vector())[: len(carried)]
    local.taken = 0
    whole = respond(local, Initiator(b, source=a.author).start().body, source=b.author)
    assert whole.complete and len(Message.decode(whole.body).updates) == local.taken == 30


def test_one_update_over_the_budget_still_moves_and_says_whether_it_was_all():
    big, small = b"x" * 500, b"y" * 10
    assert fit([big], 100) == ([big], True)
    assert fit(iter([big, small]), 100) == ([big], False)
    assert fit([small, small], 100) == ([small, small], True)
    assert fit([], 100) == ([], True)
    assert fit([b"x" * 90], 100) == ([b"x" * 90], True)  # 100 bytes framed: exactly fits
    assert fit([b"x" * 40] * 3, 100) == ([b"x" * 40] * 2, False)


def test_a_goodbye_is_an_empty_leave_and_nothing_else_goes_to_its_endpoint():
    """Issue 17, item 8: the LEAVE message (``/v1/leave``) carries nothing."""
    from gossip.protocol import LEAVE_REPLY, parse_leave, parse_request
    from gossip.protocol.messages import LEAVE

    assert LEAVE == b"SMG\x02\x07\x00\x00" and Message.decode(LEAVE).type is MessageType.LEAVE
    parse_leave(LEAVE)
    for body in (LEAVE_REPLY, Message(MessageType.SAME).encode(), b"SMG\x02\x07\x01\x00\x00",
                 b"SMG\x02\x07\x00\x01\x00", b"junk"):  # fmt: skip
        with pytest.raises(RemoteProtocolError):
            parse_leave(body)
    with pytest.raises(RemoteProtocolError, match="not a request"):
        parse_request(LEAVE)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 2**53 - 1), st.integers(0, 2**32 - 1), max_size=8),
       st.dictionaries(st.integers(0, 2**53 - 1), st.integers(0, 2**32 - 1), max_size=8))
def test_a_difference_applied_to_its_base_gives_the_state_vector_back(sv, base):
    diff = sv_diff(sv, base)
    assert sv_apply(base, diff) == {c: k for c, k in sv.items() if k}
    assert set(diff) <= {*sv, *base} and (diff == {}) == (sv_digest(sv) == sv_digest(base))
    # and it survives the wire, as a PUSH (with its base) and a PUSH_REPLY
    for msg in (push(sv, [b"u"], base=base), Message(MessageType.PUSH_REPLY, diff)):
        assert Message.decode(msg.encode()) == msg


def _writers(open_replica, n, prefix="w"):
    """``n`` replicas in sync, each having written one record (a mesh at rest)."""
    hosts = [open_replica(f"{prefix}{i}") for i in range(n)]
    for h in hosts:
        h.put(records.memory(h.identity, f"from {h.author[:6]}", category="c", ts=TS))
    for h in hosts[1:]:
        exchange(hosts[0], h)
    for h in hosts[1:]:
        exchange(hosts[0], h)
    assert all(h.state_vector() == hosts[0].state_vector() for h in hosts)
    return hosts


def test_a_push_that_names_the_receivers_state_vector_carries_one_client(open_replica):
    """Version 2: in a mesh at rest, a push names the receiver's state vector by its
    digest and carries only the author's clock; the answer carries nothing, and the
    pusher still learns the receiver's whole state vector. Its size does not grow with
    the number of writers."""
    sizes = []
    for n in (3, 12):
        a, b, *_ = _writers(open_replica, n, prefix=f"n{n}-")
        base = b.state_vector()
        su = a.put(records.memory(a.identity, f"new {n}", category="c", ts=TS + 1))
        msg = push(a.state_vector(), [su.raw], base=base)
        assert msg.digest == sv_digest(base) and msg.state_vector == {su.client: su.header.end}
        reply = respond(b, msg.encode(), source=a.author, path=PUSH_PATH)
        assert reply.new_updates == [su.raw] and reply.peer_sv == a.state_vector()
        assert Message.decode(reply.body) == Message(MessageType.PUSH_REPLY, {})
        assert on_push_reply(reply.body, a.state_vector()) == b.state_vector()
        # Less the client id's varuint: ids are random, so its width is 1-8 bytes either way.
        sizes.append(len(msg.encode()) - len(su.raw) + len(reply.body)
                     - len(wire.encode_varuint(su.client)))  # fmt: skip
    assert sizes[0] == sizes[1] < 72


def test_a_push_whose_base_is_stale_is_taken_in_and_answered_with_a_whole_state_vector(
    open_replica,
):
    """The base is a cache: when the receiver learned something since (or the guess is
    wrong), the push's updates are still taken in, and the answer is a SYNC_REPLY with
    the receiver's whole state vector, which the pusher takes as what it holds."""
    a, b, c = _writers(open_replica, 3)
    stale = b.state_vector()
    news = c.put(records.memory(c.identity, "c again", category="c", ts=TS + 2))
    respond(b, push(c.state_vector(), [news.raw]).encode(), source=c.author)  # b moved on
    su = a.put(records.memory(a.identity, "a again", category="c", ts=TS + 3))
    for base in (stale, {1: 2}):
        reply = respond(b, push(a.state_vector(), [su.raw], base=base).encode(),
                        source=a.author, path=PUSH_PATH)  # fmt: skip
        assert Message.decode(reply.body).type is MessageType.SYNC_REPLY
        assert reply.peer_sv is None  # it could not rebuild a's state vector
        assert on_push_reply(reply.body, a.state_vector()) == b.state_vector()
    assert not lacks(a.state_vector(), b.state_vector())  # the update went in all the same
    # Without ``local`` the responder cannot check a base: the same safe answer.
    bare = parse_request(push(a.state_vector(), [], base=b.state_vector()).encode())
    assert bare.peer_sv is None


def test_the_push_leg_of_an_exchange_names_the_state_vector_of_the_reply(open_replica):
    a, b, *_ = _writers(open_replica, 6)
    a.put(records.memory(a.identity, "news for b", category="c", ts=TS + 1))
    ex = Initiator(a, source=b.author, digest_first=True)
    digest = ex.start()
    reply = respond(b, digest.body, source=a.author, path=digest.path)
    leg = step(ex, a, reply.body)
    assert leg is not None and leg.path == PUSH_PATH
    msg = Message.decode(leg.body)
    assert msg.digest == sv_digest(b.state_vector()) and len(msg.state_vector) == 1
    assert step(ex, a, respond(b, leg.body, source=a.author, path=leg.path).body) is None
    assert ex.result.peer_sv == b.state_vector() == a.state_vector()
    assert ex.result.requests == 2
