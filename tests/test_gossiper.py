"""The replication policy, sans I/O: a real ``Gossiper`` on a real ``PeerTable`` and real
replicas, driven by hand (no network, no clock but the one given)."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import random

from crdt import GossipError, Outcome, Replica, records
from gossip import node as node_module
from gossip.peers import ALIVE, UNKNOWN_KEY, PeerTable
from gossip.peers.health import tree_rank
from gossip.protocol import (
    Exchange,
    Failure,
    Gossiper,
    Initiator,
    Message,
    MessageType,
    Push,
    Settings,
    answer,
    parse_request,
    reads_only,
    sv_digest,
)
from gossip.protocol.gossiper import UNTRUSTED
from gossip.sim import host as sim_host
from gossip.sim import run
from tests.exchanges import respond

TS = 1_790_000_000_000


class ReadOnly:
    """A replica as the exchange may see it: reads only (no ``ingest_batch``)."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def state_vector(self) -> dict[int, int]:
        return self._replica.state_vector()

    def updates_for(self, peer_sv: dict[int, int]) -> list[bytes]:
        return self._replica.updates_for(peer_sv)


def make(replica: Replica, peers: int, **settings: object) -> tuple[Gossiper, PeerTable]:
    """A gossiper whose table holds ``peers`` answered (alive) peers p0, p1, ..."""
    table = PeerTable(replica.author, 500, 8000, rng=random.Random(7))
    for i in range(peers):
        row = table.add([f"10.0.0.{i + 1}:7471"], "static", key=f"p{i}", now=0)
        assert row is not None
        table.success(row, 0)
    tuned = Settings(**settings)  # type: ignore[arg-type]
    return Gossiper(table, replica, lambda: tuned, random.Random(1)), table


def test_an_exchange_only_reads_the_replica_and_hands_back_what_to_ingest(open_replica):
    """Neither side of an exchange writes to the replica: the driver ingests."""
    a, b = open_replica("a"), open_replica("b")
    a.put(records.memory(a.identity, "from a", category="c", ts=TS))
    b.put(records.memory(b.identity, "from b", category="c", ts=TS))
    ex = Initiator(ReadOnly(a), source=b.author, digest_first=True)
    request = ex.start()
    ingested_here = 0
    while request is not None:
        incoming = parse_request(request.body, path=request.path, local=ReadOnly(b))
        received = b.ingest_batch(incoming.updates, source=a.author) if incoming.updates else []
        reply = answer(ReadOnly(b), incoming, received)
        ingest = ex.receive(reply.body)
        assert ingest.source == b.author
        ingested_here += len(ingest.updates)
        request = ex.ingested(a.ingest_batch(ingest.updates, source=ingest.source))
    assert a.state_vector() == b.state_vector() and ingested_here == 1
    assert ex.result.learned == 1 and ex.result.sent == 1


def test_a_digest_is_a_read_only_request():
    """What lets a node answer DIGESTs ahead of queued ingests, told by the protocol
    (the node never looks at the bytes itself)."""
    digest = Message(MessageType.DIGEST, digest=bytes(32)).encode()
    sync = Message(MessageType.SYNC).encode()
    assert parse_request(digest).reads_only and not parse_request(sync).reads_only
    assert reads_only(digest) and not reads_only(sync)
    assert not reads_only(b"XYZ\x01\x05") and not reads_only(b"SMG")


def test_a_round_starts_fanout_exchanges_that_open_with_a_digest(open_replica):
    a = open_replica("a")
    gossiper, table = make(a, 3, fanout=2)
    exchanges = gossiper.on_tick(1000)
    assert len(exchanges) == 2 and all(isinstance(e, Exchange) for e in exchanges)
    assert all(e.peer.in_flight for e in exchanges)
    first = Message.decode(exchanges[0].initiator.start().body)
    assert first.type is MessageType.DIGEST
    # Busy peers are not chosen again: the next round takes the one left.
    assert [e.peer for e in gossiper.on_tick(1000)] == [
        p for p in table if p not in {e.peer for e in exchanges}
    ]
    assert 900 <= gossiper.next_round_ms() <= 1100


def test_a_write_is_pushed_to_fanout_peers_one_push_at_a_time(open_replica):
    a = open_replica("a")
    gossiper, _ = make(a, 3, fanout=2)
    su = a.put(records.memory(a.identity, "x", category="c", ts=TS))
    pushes = gossiper.on_local_write([su.raw], {su.client: su.header.end})
    assert len(pushes) == 2 and all(p.updates == (su.raw,) for p in pushes)
    assert Message.decode(pushes[0].request(a).body).type is MessageType.PUSH
    # While those are in flight, more writes wait in the outboxes of the busy peers.
    su2 = a.put(records.memory(a.identity, "y", category="c", ts=TS))
    later = gossiper.on_local_write([su2.raw], {su2.client: su2.header.end})
    busy = {p.peer for p in pushes}
    assert all(p.peer not in busy for p in later)
    for push in pushes:
        nxt = gossiper.on_push_done(push, push.peer.key or "", {}, 2000)
        if nxt is not None:  # what queued meanwhile goes in the next push
            assert nxt.peer is push.peer and nxt.updates == (su2.raw,)
            assert gossiper.on_push_done(nxt, nxt.peer.key or "", {}, 2000) is None
    assert not gossiper.pending_pushes()


def test_no_pushes_without_eager_push(open_replica):
    a = open_replica("a")
    gossiper, _ = make(a, 3, eager_push=False)
    su = a.put(records.memory(a.identity, "x", category="c", ts=TS))
    assert gossiper.on_local_write([su.raw], {su.client: su.header.end}) == []


def test_what_a_push_taught_us_goes_on_but_not_back(open_replica):
    a, b = open_replica("a"), open_replica("b")
    gossiper, table = make(b, 3, fanout=3)
    su = a.put(records.breaker(a.identity, "k2p5", state="open", ts=TS))
    push = Push(table.by_key("p0"), (su.raw,)).request(a)  # type: ignore[arg-type]
    resp = respond(b, push.body, source="p0", path=push.path)
    relays = gossiper.on_served("p0", resp, 1000)
    assert sorted(p.peer.key or "" for p in relays) == ["p1", "p2"]
    assert all(p.updates == (su.raw,) for p in relays)
    # Known already: the rumour stops.
    again = respond(b, push.body, source="p1", path=push.path)
    assert gossiper.on_served("p1", again, 1000) == []


def test_what_a_push_taught_us_goes_to_our_children_in_its_authors_tree(open_replica):
    """The author is a member: the relay pushes where ``tree_targets`` says, never back
    to the sender, and only as far as its own place in the author's tree reaches."""
    a, b = open_replica("a"), open_replica("b")

    def rank(key: str) -> bytes:  # the tree's order after its root (PeerTable.tree_targets)
        return hashlib.sha256(a.author.encode() + b"\0" + key.encode()).digest()

    assert rank("x") == tree_rank(a.author, "x")

    gossiper, table = make(b, 0, fanout=2)
    # Six other members that all come after b: b is the root's first child, and members
    # 3 and 4 are b's children.
    later = (k for k in (f"p{i}" for i in itertools.count()) if rank(k) > rank(b.author))
    others = list(itertools.islice(later, 6))
    for i, key in enumerate([a.author, *others]):
        row = table.add([f"10.0.0.{i + 1}:7471"], "static", key=key, now=0)
        assert row is not None
        table.success(row, 0)
    su = a.put(records.breaker(a.identity, "k2p5", state="open", ts=TS))
    sender = table.by_key(a.author)
    assert sender is not None
    push = Push(sender, (su.raw,)).request(a)
    resp = respond(b, push.body, source=a.author, path=push.path)
    relays = gossiper.on_served(a.author, resp, 1000)
    children = sorted(others, key=rank)[1:3]
    assert sorted(p.peer.key or "" for p in relays) == sorted(children)
    assert all(p.updates == (su.raw,) for p in relays)


def test_a_served_sync_counts_as_delivered_only_when_the_reply_carried_everything(
    open_replica,
):
    """Delivery status rests on what we know of a peer's state vector: a SYNC we answer
    in full fills its gaps; one cut to the size budget does not (its next request says
    how far it got), so its records are never shown as delivered too early."""
    b = open_replica("b")
    for i in range(3):
        b.put(records.memory(b.identity, f"lesson {i} " + "x" * 2000, category="c", ts=TS + i))
    for budget, cut in ((10**6, False), (100, True)):
        gossiper, table = make(b, 1)
        sync = Message(MessageType.SYNC, {}).encode()
        resp = respond(b, sync, source="p0", max_reply_bytes=budget)
        assert resp.complete is not cut
        gossiper.on_served("p0", resp, 1000)
        row = table.by_key("p0")
        assert row is not None and row.sv_at == 1000
        # Cut: as far as we know it still lacks all 3 (it said it held none).
        assert row.info(table.ours).they_lack == (3 if cut else 0)


def test_rejected_updates_and_untrusted_keys_back_a_peer_off(open_replica):
    a = open_replica("a")
    gossiper, table = make(a, 2)
    ex, other = gossiper.exchange_with(list(table))
    ex.initiator.result.received.append(Outcome("rejected", GossipError("forged")))
    row = gossiper.on_exchange_done(ex, ex.peer.key or "", 1000)
    assert row is ex.peer and row.failures == 1 and "rejected" in (row.last_error or "")
    assert row.state != ALIVE and row.next_attempt > 1000
    gossiper.on_exchange_failed(other.peer, Failure(UNTRUSTED, "403"), 1000)
    assert other.peer.state == UNKNOWN_KEY and not other.peer.in_flight


def test_the_node_and_the_simulator_drive_the_same_gossiper(tmp_path):
    """One policy: neither driver chooses peers or push targets itself, nor reads wire
    bytes (the findings of issue 14: the simulator used to test a copy of the policy)."""
    for module in (node_module, sim_host):
        source = inspect.getsource(module)
        for own_policy in (".select(", ".push_targets(", "MAX_OUTBOX", "body[4]"):
            assert own_policy not in source, (module.__name__, own_policy)
    result = run(3, tmp=str(tmp_path))
    assert not result.failures, result.failures


def test_a_push_names_our_state_vector_without_its_updates_and_learns_the_peers(open_replica):
    """The base of an eager push is our state vector without what it carries: a peer that
    held what we held matches it, is told one clock and answers with nothing, and the
    table then holds its whole state vector; a peer that holds less answers with its
    whole state vector, and the table holds that."""
    a, b, c = open_replica("a"), open_replica("b"), open_replica("c")
    gossiper, table = make(a, 1, fanout=1)
    peer = table.by_key("p0")
    assert peer is not None
    for i in range(2):
        su = a.put(records.memory(a.identity, f"note {i}", category="c", ts=TS + i))
        (sent,) = gossiper.on_local_write([su.raw], {su.client: su.header.end})
        request = sent.request(a)
        msg = Message.decode(request.body)
        assert msg.state_vector == {su.client: su.header.end}
        assert msg.digest == sv_digest(b.state_vector())
        reply = respond(b, request.body, source=a.author, path=request.path)
        assert Message.decode(reply.body) == Message(MessageType.PUSH_REPLY, {})
        assert gossiper.on_push_done(sent, "p0", sent.theirs(reply.body), 1000) is None
        assert peer.last_sv == b.state_vector() == a.state_vector()
    # c missed the first note: the base is not its state vector.
    su = a.put(records.memory(a.identity, "note 2", category="c", ts=TS + 2))
    (sent,) = gossiper.on_local_write([su.raw], {su.client: su.header.end})
    request = sent.request(a)
    reply = respond(c, request.body, source=a.author, path=request.path)
    assert Message.decode(reply.body).type is MessageType.SYNC_REPLY
    gossiper.on_push_done(sent, "p0", sent.theirs(reply.body), 2000)
    assert peer.last_sv == c.state_vector() != a.state_vector()
