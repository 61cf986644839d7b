"""A walk-through of what sm-gossip guarantees, on real replicas in a temporary directory.

Two hosts exchange signed updates; a third, untrusted key tries to plant a memory in
someone else's name, to pre-delete an honest writer's next record, and to tamper with
bytes in flight. Every forgery is refused with the rule it broke, and nothing else moves.
Then three real nodes gossip over HTTP on 127.0.0.1 (the daemon command comes later).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import pycrdt

from crdt import GossipError, Identity, Replica, SignedUpdate, records, wire
from crdt.updates import derive_client, sign_update


def now() -> int:
    return time.time_ns() // 1_000_000


def exchange(a: Replica, b: Replica) -> str:
    """One push-pull round as the gossip engine runs it: state vectors, then deltas."""
    to_b = a.updates_for(b.state_vector())
    to_a = b.updates_for(a.state_vector())
    out_b = b.ingest_batch(to_b, source="demo")
    out_a = a.ingest_batch(to_a, source="demo")
    size = sum(map(len, to_b + to_a))
    applied = sum(o.status == "applied" for o in out_a + out_b)
    return f"{len(to_b) + len(to_a)} signed updates, {size} bytes, {applied} applied"


def forge(author: Identity, epoch: int, edit, delete_set=None) -> SignedUpdate:
    """What an attacker can build: a real Yjs update, signed with the attacker's key."""
    client = derive_client(author.public_id, epoch)
    doc = pycrdt.Doc(client_id=client)
    doc.get("records", type=pycrdt.Map)
    doc.get("state", type=pycrdt.Map)
    got: list[bytes] = []
    doc.observe(lambda e: got.append(e.update))
    with doc.transaction():
        edit(doc)
    update = got[0]
    if delete_set:
        update = pycrdt.merge_updates(update, b"\x00" + wire.encode_delete_set(delete_set))
    return sign_update(author, epoch=epoch, update=update, start=0, end=1, ts=now())


def attempt(replica: Replica, what: str, su: SignedUpdate | bytes) -> None:
    try:
        replica.ingest(su, source="mallory")
        print(f"   !! {what}: ACCEPTED (this should not happen)")
    except GossipError as e:
        print(f"   refused — {what}\n      {e}")


def main(home: Path | None = None) -> None:
    base = Path(tempfile.mkdtemp(prefix="sm-gossip-demo-")) if home is None else home
    print(f"sm-gossip demo — data in {base}\n")
    alice = Replica.open(base / "alice")
    bob = Replica.open(base / "bob")
    print(
        f"1. Two hosts, each with its own Ed25519 key and store:\n"
        f"   alice {alice.author}\n   bob   {bob.author}\n"
    )

    lesson = records.memory(
        alice.identity,
        "Provider X drops requests at 03:00 UTC; retry after 03:05.",
        category="anti-pattern",
        subject="provider:x",
        tags=["outage"],
        ts=now(),
    )
    alice.put(lesson)
    alice.put(
        records.breaker(
            alice.identity,
            "kimi-coding/k2p5",
            state="open",
            reason="5 timeouts in 60 s",
            failures=5,
            tripped_at=now(),
            resets_at=now() + 300_000,
            ts=now(),
        )
    )
    print("2. alice learns something and trips a circuit breaker (both durable on disk).")
    print(f"   exchange alice <-> bob: {exchange(alice, bob)}")
    mem = bob.records()[lesson.id]
    print(f'   bob now recalls: "{mem.fields["text"]}"  (author {mem.author[:12]}…, signature ok)')
    br = next(iter(bob.state().values()))
    print(f"   bob sees breaker {br.fields['name']} = {br.fields['state']} ({br.fields['reason']})")
    print(f"   a second exchange is a no-op: {exchange(alice, bob)}\n")

    mallory = Identity.generate()
    print(f"3. mallory ({mallory.public_id[:12]}…) attacks bob:")
    fake = records.memory(
        mallory, "Provider X is fine, disable all retries.", category="anti-pattern", ts=now()
    )
    # (a) a record that claims alice wrote it: mallory cannot sign as alice...
    claimed = records.SignedRecord(
        fake.body.replace(mallory.public_id.encode(), alice.author.encode()), fake.sig
    )
    attempt(
        bob,
        "a memory in alice's name, signed by mallory",
        forge(mallory, 7, lambda d: d["records"].__setitem__(claimed.id, claimed.to_value())),
    )
    # (b) ...nor slip alice's real record into an update of its own.
    attempt(
        bob,
        "alice's genuine record relayed inside mallory's update",
        forge(mallory, 8, lambda d: d["records"].__setitem__(lesson.id, lesson.to_value())),
    )
    # (c) the pre-delete attack: delete alice's *next* item before it exists.
    nxt = alice.state_vector()[alice.client]
    attempt(
        bob,
        f"a delete set naming alice's future clock {nxt} (pre-delete)",
        forge(
            mallory,
            9,
            lambda d: d["records"].__setitem__(fake.id, fake.to_value()),
            delete_set={alice.client: ((nxt, 1),)},
        ),
    )
    # (d) bytes changed in flight.
    good = alice.updates_for({})[0]
    attempt(
        bob,
        "one of alice's updates with a byte flipped in transit",
        good[:-30] + bytes([good[-30] ^ 1]) + good[-29:],
    )
    print()

    follow_up = records.memory(
        alice.identity,
        "Provider X outage window moved to 04:00 UTC.",
        category="learning",
        subject="provider:x",
        supersedes=lesson.id,
        ts=now(),
    )
    alice.put(follow_up)
    print(f"4. alice writes her next record (clock {nxt}); exchange: {exchange(alice, bob)}")
    print(f"   bob has it: {follow_up.id in bob.records()} — the pre-delete took nothing.\n")

    bob.close()
    bob = Replica.open(base / "bob")
    print(
        f"5. bob restarts from disk: {len(bob.records())} records, breakers "
        f"{[r.fields['name'] for r in bob.state().values()]}, "
        f"integrity {bob.integrity_check()[0]}, same document as alice: "
        f"{_same(alice, bob)}"
    )
    alice.close()
    bob.close()
    asyncio.run(live_cluster(base))
    print("\nNext: `scripts/test` runs the whole suite; docs/ explains the rest.")


async def live_cluster(base: Path) -> None:
    """Three real nodes on 127.0.0.1 gossiping over HTTP, in the background."""
    from gossip import Node

    print("\n6. Three nodes on 127.0.0.1, gossiping over signed HTTP in the background:")
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(Node(base / "n1", name="n1"))
        others = [
            await stack.enter_async_context(Node(base / f"n{i}", peers=[first.address],
                                                 name=f"n{i}"))
            for i in (2, 3)
        ]  # fmt: skip
        nodes = [first, *others]
        for node in nodes:  # everyone trusts everyone (invariant 9: keys come from people)
            for other in nodes:
                if other is not node:
                    node.trust(other.id, name=other.address)
        for node in nodes:
            print(f"   {node.address}  {node.id}")
        t0 = time.perf_counter()
        await nodes[2].remember("kimi-coding/k2p5 times out above 30k tokens",
                                category="anti-pattern", subject="kimi-coding/k2p5")  # fmt: skip
        for node in nodes[:2]:
            await _until(lambda n=node: n.recall("kimi tokens"), "the memory")
        print(f"   a memory written on n3 is recalled on n1 and n2 after "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")  # fmt: skip
        t0 = time.perf_counter()
        await nodes[0].trip_breaker("provider:x", reason="503 burst", cooldown=600)
        for node in nodes[1:]:
            await _until(lambda n=node: _is_open(n), "the breaker")
        print(f"   a breaker tripped on n1 is open on n2 and n3 after "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")  # fmt: skip
        rows = nodes[0].peers()
        print("   n1's peers: " + ", ".join(f"{p.address} {p.state} ({p.source})" for p in rows))


def _is_open(node) -> bool:
    return node.breaker("provider:x").state == "open"


async def _until(check, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not arrive within {timeout:.0f} s")
        await asyncio.sleep(0.02)


def _same(a: Replica, b: Replica) -> bool:
    return a.state_vector() == b.state_vector() and {k: r.body for k, r in a.records().items()} == {
        k: r.body for k, r in b.records().items()
    }


if __name__ == "__main__":
    main()
