"""A walk-through of what the ingest gate guarantees, on real replicas in a temporary
directory (`scripts/demo --forgeries`).

Two hosts exchange signed updates; a third, untrusted key tries to plant a memory in
someone else's name, to pre-delete an honest writer's next record, and to tamper with
bytes in flight. Every forgery is refused with the rule it broke, and nothing else moves.
"""

from __future__ import annotations

import tempfile
import time
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
    print("\n`scripts/demo` shows three daemons gossiping; docs/ explains the rest.")


def _same(a: Replica, b: Replica) -> bool:
    return a.state_vector() == b.state_vector() and {k: r.body for k, r in a.records().items()} == {
        k: r.body for k, r in b.records().items()
    }


if __name__ == "__main__":
    main()
