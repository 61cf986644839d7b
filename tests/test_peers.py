"""PeerTable: membership, keys, backoff, selection — sans I/O, with a seeded random."""

from __future__ import annotations

import random

import pytest

from gossip.peers import (
    ALIVE,
    DOWN,
    MAX_MDNS_ROWS,
    SUSPECT,
    UNKNOWN_KEY,
    PeerTable,
    holds,
    lag,
)

ME, K1, K2, K3 = "m" * 43, "a" * 43, "b" * 43, "c" * 43


def table(**kw) -> PeerTable:
    events: list[tuple[str, str]] = []
    t = PeerTable(ME, backoff_base_ms=100, backoff_cap_ms=1600, rng=random.Random(7), **kw)
    t.listener = lambda p, what: events.append((what, p.state))
    t.events = events  # type: ignore[attr-defined]
    return t


def test_static_peer_learns_its_key_and_merges_with_its_announcement():
    t = table()
    s = t.add(["10.0.0.1:7471"], "static")
    assert s is not None and s.key is None and s.state == SUSPECT
    e = t.add(["10.0.0.9:7471", "10.0.0.1:7471"], "exchange", key=K1, name="laptop")
    assert e is s  # a keyless row at a shared address takes the key
    assert s.key == K1 and s.name == "laptop" and s.source == "static"
    assert s.addresses == ["10.0.0.1:7471", "10.0.0.9:7471"]
    # Another configured address of the same host answers with that key: one row remains.
    other = t.add(["host.lan:7471"], "mdns")
    assert other is not None and other is not s and len(t) == 2
    kept = t.learn_key(other, K1)
    assert kept is s and len(t) == 1
    assert s.addresses[-1] == "host.lan:7471" and s.source == "static"
    assert ("removed", SUSPECT) in t.events  # type: ignore[attr-defined]


def test_ourselves_is_never_a_peer():
    t = table()
    p = t.add(["127.0.0.1:1"], "static")
    assert p is not None
    assert t.learn_key(p, ME) is None and len(t) == 0
    assert t.add(["127.0.0.1:1"], "exchange", key=K1) is None  # known to be us
    assert t.add(["127.0.0.1:2"], "exchange", key=ME) is None
    assert len(t) == 0


def test_unknown_source_is_refused():
    with pytest.raises(ValueError):
        table().add(["a:1"], "carrier-pigeon")


def test_backoff_is_exponential_jittered_and_capped():
    t = table()
    for failures, ceiling in [(1, 100), (2, 200), (3, 400), (5, 1600), (9, 1600), (80, 1600)]:
        for _ in range(50):
            d = t.backoff_ms(failures)
            assert ceiling // 2 <= d <= ceiling


def test_failures_back_off_then_down_then_recover():
    t = table(down_after=3)
    p = t.add(["a:1", "b:1"], "static")
    assert p is not None
    now = 1000
    t.begin(p)
    t.failure(p, now, "refused", unreachable=True)
    assert p.state == SUSPECT and p.address == "b:1" and p.failures == 1
    assert now + 50 <= p.next_attempt <= now + 100
    assert t.select(now, 3) == []  # not due yet
    assert t.select(p.next_attempt, 3) == [p]
    t.failure(p, now, "refused")
    t.failure(p, now, "refused")
    assert p.state == DOWN and p.last_error == "refused"
    assert p.next_attempt <= now + 1600
    t.inbound(K1, now + 5)  # unknown key: nothing happens
    assert p.state == DOWN
    t.success(p, now + 10, rtt_ms=1.5, bytes_in=10, bytes_out=20, ours={1: 5}, theirs={1: 3, 2: 4})
    assert p.state == ALIVE and p.failures == 0 and p.last_error is None
    assert (p.they_lack, p.we_lack, p.rtt_ms, p.bytes_in, p.bytes_out) == (2, 4, 1.5, 10, 20)
    assert p.last_sv == {1: 3, 2: 4}
    states = [s for what, s in t.events if what == "changed"]  # type: ignore[attr-defined]
    assert states == [SUSPECT, DOWN, ALIVE]  # its first failure is news (the reason)


def test_unknown_key_waits_for_the_keyring():
    t = table()
    p = t.add(["a:1"], "static")
    assert p is not None
    t.failure(p, 0, "peer answered 403", unknown_key=True)
    assert p.state == UNKNOWN_KEY and p.next_attempt == 1600
    assert t.push_targets(5) == []
    t.keyring_changed(10)
    assert t.select(10, 1) == [p]


def test_selection_prefers_least_recently_synced_and_skips_busy_peers():
    t = table()
    peers = [t.add([f"h{i}:1"], "static", key=chr(65 + i) * 43) for i in range(6)]
    for i, p in enumerate(peers):
        assert p is not None
        t.success(p, 100 * (i + 1))
    assert t.select(10_000, 2) == peers[:2]
    t.begin(peers[0])
    assert t.select(10_000, 2) == peers[1:3]
    # Jitter mixes peers synced about as long ago, but never beats a long-unsynced one.
    fresh = t.add(["new:1"], "exchange", key="z" * 43)
    seen = {tuple(t.select(10_000, 2, jitter_ms=250)) for _ in range(100)}
    assert all(s[0] is fresh for s in seen)
    assert len({s[1] for s in seen}) > 1
    assert t.select(10_000, 0) == []


def test_push_targets_skip_sender_unhealthy_and_peers_that_have_it():
    t = table()
    a = t.add(["a:1"], "static", key=K1)
    b = t.add(["b:1"], "static", key=K2)
    c = t.add(["c:1"], "static", key=K3)
    assert a and b and c
    t.success(a, 1)
    t.success(b, 1, theirs={9: 10})
    t.success(c, 1)
    assert set(t.push_targets(5)) == {a, b, c}
    assert set(t.push_targets(5, exclude=[K1])) == {b, c}
    assert set(t.push_targets(5, covers={9: 10})) == {a, c}  # b already holds clock 10
    assert set(t.push_targets(5, covers={9: 11})) == {a, b, c}
    t.failure(c, 1, "x")
    assert set(t.push_targets(5, exclude=[K1, K2])) == set()
    assert len(t.push_targets(1)) == 1


def mesh_tables(n: int) -> dict[str, PeerTable]:
    """``n`` hosts' tables, each knowing every other host alive (keys of 43 chars)."""
    keys = [f"{i:02d}" + "k" * 41 for i in range(n)]
    tables = {}
    for me in keys:
        t = PeerTable(me, backoff_base_ms=100, backoff_cap_ms=1600, rng=random.Random(7))
        for k in keys:
            if k != me:
                row = t.add([f"{k[:2]}:1"], "static", key=k)
                assert row is not None
                t.success(row, 1)
        tables[me] = t
    return tables


def spread(tables: dict[str, PeerTable], root: str, fanout: int = 2) -> list[tuple[str, str]]:
    """The pushes of one write by ``root``'s host, each host passing it on once."""
    pushes, todo, have = [], [(root, None)], {root}
    while todo:
        host, sender = todo.pop(0)
        exclude = [sender] if sender else []
        targets = tables[host].tree_targets(root, fanout, exclude=exclude)
        assert targets is not None
        for peer in targets:
            assert peer.key is not None
            pushes.append((host, peer.key))
            if peer.key not in have:
                have.add(peer.key)
                todo.append((peer.key, host))
    assert have == set(tables)
    return pushes


@pytest.mark.parametrize("n", [2, 3, 8, 32])
def test_a_write_reaches_every_host_by_one_push_each_in_its_authors_tree(n):
    tables = mesh_tables(n)
    for root in list(tables)[:3]:
        pushes = spread(tables, root)
        assert len(pushes) == n - 1  # nobody is pushed to twice
        assert len({to for _, to in pushes}) == n - 1
        assert root not in {to for _, to in pushes}
        # No host sends more than fanout pushes; the trees differ by author.
        assert max(sum(1 for f, _ in pushes if f == h) for h in tables) <= 2


def test_a_tree_steps_over_a_child_it_may_not_push_to_and_skips_one_that_has_it():
    tables = mesh_tables(8)
    root = next(iter(tables))
    first = tables[root].tree_targets(root, 2)
    assert first is not None and len(first) == 2
    down, holder = first
    tables[root].failure(down, 2, "refused")  # suspect now: its children become ours
    tables[root].success(holder, 2, theirs={9: 10})
    again = tables[root].tree_targets(root, 2, covers={9: 10})
    assert again is not None and holder not in again and down not in again
    grandchildren = tables[down.key].tree_targets(root, 2)  # type: ignore[index]
    assert grandchildren is not None and 0 < len(grandchildren) <= 2
    assert {p.key for p in again} == {p.key for p in grandchildren}
    # An author who is no member has no tree: the caller pushes to random peers.
    assert tables[root].tree_targets("z" * 43, 2) is None


def test_a_push_goes_only_to_peers_that_proved_a_trusted_key():
    """A push carries records before any answer is checked: never to an address that
    has not answered signed by a trusted key (a configured address could be anyone)."""
    t = table()
    keyless = t.add(["a:1"], "static")
    announced = t.add(["b:1"], "exchange", key=K2)  # a key, but not yet heard from here
    assert keyless and announced
    assert t.push_targets(5) == []
    t.success(announced, 1)
    assert t.push_targets(5) == [announced]


def test_lag_counts_clock_units():
    assert lag({1: 10, 2: 3}, {1: 4}) == 9
    assert lag({}, {1: 4}) == 0


def test_rows_are_snapshots():
    t = table()
    p = t.add(["a:1"], "static")
    assert p is not None
    (row,) = t.rows()
    t.failure(p, 0, "x")
    assert row.state == SUSPECT and row.to_json()["addresses"] == ["a:1"]


def test_a_claimed_key_outside_the_keyring_is_never_exchanged_with():
    keyring = {K1}
    t = table(trusts=lambda k: k in keyring)
    claimed = t.add(["10.0.0.4:7471"], "mdns", key=K2, name="stranger", claim=True)
    assert claimed is not None and claimed.state == UNKNOWN_KEY and claimed.key == K2
    assert claimed.info().claimed
    assert t.select(10_000, 5) == [] and t.push_targets(5) == []
    keyring.add(K2)  # `gossip trust add`
    t.keyring_changed(20)
    assert t.select(20, 5) == [claimed]
    keyring.discard(K2)
    t.keyring_changed(30)
    assert t.select(10_000, 5) == [] and claimed.state == UNKNOWN_KEY


def test_a_claim_never_lands_on_another_row_by_address():
    t = table()
    static = t.add(["10.0.0.1:7471"], "static")
    # A liar on the LAN advertises the configured peer's address with some key.
    liar = t.add(["10.0.0.1:7471"], "mdns", key=K2, claim=True)
    assert liar is not static and static is not None and static.key is None
    # Nor does a keyless proposal join the claim.
    assert t.add(["10.0.0.1:7471"], "tailnet") is static
    # The configured peer answers as K2 after all: one row, the claim proven.
    kept = t.learn_key(static, K2)
    assert kept is liar and len(t) == 1 and not kept.claimed
    assert kept.sources == {"static", "tailnet", "mdns"} and kept.source == "static"


def test_a_claim_is_proven_by_the_answer():
    t = table()
    p = t.add(["10.0.0.1:7471"], "mdns", key=K1, claim=True)
    assert p is not None and p.claimed and p.info().unproven == ("10.0.0.1:7471",)
    t.begin(p)
    assert t.learn_key(p, K1) is p and not p.claimed and p.info().unproven == ()
    t.success(p, 1)
    # Another claim of the proven key: the key stays proven, the new address is a mere
    # claim, tried after the proven one, until an answer comes from it.
    t.add(["10.0.0.9:7471"], "mdns", key=K1, claim=True)
    assert not p.claimed and p.addresses == ["10.0.0.1:7471", "10.0.0.9:7471"]
    assert p.info().unproven == ("10.0.0.9:7471",) and p.address == "10.0.0.1:7471"
    t.failure(p, 0, "refused", unreachable=True)  # the proven address fails: next one
    assert p.address == "10.0.0.9:7471"
    # An eager push that reaches the row proves no address (it may have gone to another
    # one than the row dials now); the answer to an exchange does.
    assert t.learn_key(p, K1) is p and p.info().unproven == ("10.0.0.9:7471",)
    t.begin(p)
    t.failure(p, 2, "a push failed meanwhile", exchange=False)  # moves to the next one
    assert p.address == "10.0.0.1:7471"
    assert t.learn_key(p, K1) is p and p.info().unproven == ()  # it answered, signed
    assert p.addresses == ["10.0.0.1:7471", "10.0.0.9:7471"]


def test_forged_claims_never_evict_a_trusted_peers_addresses():
    keyring = {K1, K2}
    t = table(trusts=lambda k: k in keyring)
    # K1 is known from its announcement, K2 only by a configured address (no announcement).
    announced = t.add(["10.0.0.1:7471"], "exchange", key=K1, name="laptop")
    static = t.add(["10.0.0.2:7471"], "static")
    assert announced is not None and static is not None
    assert t.learn_key(static, K2) is static
    t.success(announced, 5)
    t.success(static, 5)
    # A liar on the LAN claims each key with eight addresses of its own.
    for key, row in ((K1, announced), (K2, static)):
        lies = [f"10.9.{ord(key[0])}.{i}:7471" for i in range(8)]
        assert t.add(lies, "mdns", key=key, name="liar", claim=True, now=10) is row
        assert row.name == ("laptop" if key == K1 else "liar")  # only where it had none
        real = "10.0.0.1:7471" if key == K1 else "10.0.0.2:7471"
        assert row.addresses[0] == real and row.address == real, row.addresses
        assert len(row.addresses) == 8 and set(row.info().unproven) == set(row.addresses[1:])
        assert not row.claimed and row.state == ALIVE
        # A keyless mDNS proposal at the real address joins the row: still behind it.
        t.add([real, "10.9.9.9:7471"], "mdns", claim=True)
        assert row.addresses[0] == real and real not in row.info().unproven
    # Nor can a claim hide another host: a keyless proposal at an address only claimed
    # for K1 gets a row of its own (before, it joined K1's row, and was dialled as K1).
    assert "10.9.97.3:7471" in announced.info().unproven
    other = t.add(["10.9.97.3:7471"], "tailnet")
    assert other is not None and other is not announced and other.key is None
    t.remove(other)
    # A row whose firm addresses fill the cap takes no claim at all.
    full = t.add([f"10.1.0.{i}:7471" for i in range(8)], "exchange", key="c" * 43)
    assert full is not None
    t.add(["10.9.0.1:7471"], "mdns", key="c" * 43, claim=True)
    assert full.addresses == [f"10.1.0.{i}:7471" for i in range(8)] and not full.unproven
    # A firm source naming a claimed address makes it firm.
    t.add(["10.9.97.3:7471"], "exchange", key=K1)
    assert announced.addresses[:2] == ["10.0.0.1:7471", "10.9.97.3:7471"]
    assert "10.9.97.3:7471" not in announced.info().unproven


def test_one_host_seen_by_several_sources_is_one_row():
    t = table()
    m = t.add(["10.0.0.1:7471"], "mdns", key=K1, claim=True)
    e = t.add(["10.0.0.1:7471", "192.168.1.5:7471"], "exchange", key=K1)
    # A keyless proposal (tailnet) at one of its addresses joins it too.
    n = t.add(["100.64.0.1:7471", "192.168.1.5:7471"], "tailnet", name="laptop")
    assert m is e is n and len(t) == 1
    assert m is not None and m.source == "tailnet"
    (row,) = t.rows()
    assert row.sources == ("tailnet", "mdns", "exchange")
    assert set(row.addresses) == {"10.0.0.1:7471", "192.168.1.5:7471", "100.64.0.1:7471"}


def test_the_address_that_worked_last_is_tried_first():
    t = table()
    p = t.add(["a:1", "b:1", "c:1"], "exchange", key=K1)
    assert p is not None and p.address == "a:1"
    t.failure(p, 0, "refused", unreachable=True)
    assert p.address == "b:1"
    t.success(p, 10)
    t.add(["d:1", "a:1"], "mdns", key=K1)  # new proposals do not move it
    assert p.address == "b:1"


def test_withdrawn_by_its_only_source_a_row_goes():
    t = table()
    only = t.add(["10.0.0.1:7471"], "mdns", key=K1, claim=True)
    assert only is not None
    assert t.withdraw(only, "mdns", 10) is None and t.by_key(K1) is None
    tailnet = t.add(["100.64.0.1:7471"], "tailnet")
    assert tailnet is not None and t.withdraw(tailnet, "tailnet", 10) is None and len(t) == 0


def test_a_goodbye_only_drops_mdns_from_a_row_others_know():
    """Anyone on the LAN can forge a goodbye: it must not take a peer down."""
    t = table()
    both = t.add(["10.0.0.2:7471"], "mdns", key=K2, claim=True)
    assert both is not None
    t.add(["10.0.0.3:7471"], "exchange", key=K2)
    t.add(["10.9.0.1:7471"], "mdns", key=K2, claim=True)  # an unproven mDNS address
    t.success(both, 5)
    due = both.next_attempt
    for _ in range(3):  # goodbyes cycled by a forger: nothing to gain
        assert t.withdraw(both, "mdns", 10) is both
        assert both.state == ALIVE and both.failures == 0 and both.next_attempt == due
        assert both.sources == {"exchange"} and both.source == "exchange"
        assert both.addresses == ["10.0.0.3:7471"] and both.address == "10.0.0.3:7471"
        t.add(["10.0.0.2:7471"], "mdns", key=K2, claim=True, now=20)  # seen again
        assert both.sources == {"mdns", "exchange"} and both.next_attempt == due
    # The tailnet's own daemon saying a node is offline still marks it down.
    t.add(["100.64.0.2:7471"], "tailnet", key=K2, now=30)
    assert t.withdraw(both, "tailnet", 40) is both
    assert both.state == DOWN and both.next_attempt == 40 + 1600
    t.failure(both, 1700, "refused")  # still down, not merely backing off
    assert both.state == DOWN


def test_mdns_only_rows_without_a_trusted_key_are_capped():
    keyring = {K1}
    t = table(trusts=lambda k: k in keyring)
    static = t.add(["10.0.0.1:7471"], "static")
    trusted = t.add(["10.0.0.2:7471"], "mdns", key=K1, claim=True)
    assert static is not None and trusted is not None
    fakes = [f"{i:043d}" for i in range(MAX_MDNS_ROWS + 100)]
    for i, key in enumerate(fakes):
        assert t.add([f"10.8.{i // 250}.{i % 250}:7471"], "mdns", key=key, claim=True)
    keyless = t.add(["10.7.0.1:7471"], "mdns", claim=True)  # a malformed id: no claim
    assert keyless is not None
    assert len(t) == 2 + MAX_MDNS_ROWS
    keys = {p.key for p in t}
    assert static in t and trusted in t and keyless in t  # the oldest fakes went
    assert fakes[0] not in keys and fakes[-1] in keys
    assert sum(p.state == UNKNOWN_KEY for p in t) == MAX_MDNS_ROWS - 1


def test_an_unproven_row_absorbed_by_its_key_keeps_its_addresses_unproven():
    t = table()
    known = t.add(["10.0.0.1:7471"], "exchange", key=K1)
    keyless = t.add(["10.0.0.7:7471", "10.0.0.8:7471"], "mdns", claim=True)  # no id in TXT
    assert known is not None and keyless is not None and keyless is not known
    # An eager push reached it, signed by K1: one row, but no address proven by that.
    assert t.learn_key(keyless, K1) is known and len(t) == 1
    assert known.addresses == ["10.0.0.1:7471", "10.0.0.7:7471", "10.0.0.8:7471"]
    assert known.info().unproven == ("10.0.0.7:7471", "10.0.0.8:7471")
    assert known.sources == {"exchange", "mdns"}
    # An exchange that dialled one of them, answered by K1: that one is proven.
    again = t.add(["10.0.0.9:7471"], "mdns", claim=True)
    assert again is not None
    t.begin(again)
    assert t.learn_key(again, K1) is known
    assert "10.0.0.9:7471" in known.addresses and "10.0.0.9:7471" not in known.unproven


def test_a_clock_stepped_back_keeps_what_remained_of_each_delay():
    """Found by the simulator: a wall clock stepped back by X stalled our own exchanges
    for X (every next_attempt lay X in the new future)."""
    t = table()
    p = t.add(["a:1"], "static", key=K1)
    assert p is not None
    t.begin(p)
    t.failure(p, 100_000, "timeout")  # retried 50 to 100 ms later
    assert t.select(100_000, 1) == []
    assert t.select(40_000, 1) == []  # the clock stepped back 60 s: still backing off
    assert t.select(40_100, 1) == [p]  # ...for what remained of the delay, not 60 s more
    assert t.select(0, 1, due_only=False) == [p]  # sync_now: whatever the schedule


# -- issue 17, item 8: what the table shows -------------------------------------------


def test_a_peer_that_reaches_us_after_a_partition_is_alive_at_once():
    """Its signed request proves it is up: no waiting for our next round (or for our
    backoff, up to the cap) while data already flows."""
    t = table(down_after=2)
    p = t.add(["a:1"], "static", key=K1)
    assert p is not None
    for _ in range(3):
        t.failure(p, 1000, "connection refused", unreachable=True)
    assert p.state == "down" and p.next_attempt > 1000
    t.inbound(K1, 1500, ours={1: 5}, theirs={1: 5})
    assert p.state == "alive" and p.failures == 0 and p.last_error is None
    assert p.next_attempt <= 1500 and p.info().reason == ""


def test_lag_is_what_we_know_of_the_peers_state_vector():
    """While a peer is down, what we wrote since shows as what it lacks (not 0/0)."""
    t = table()
    p = t.add(["a:1"], "static", key=K1)
    assert p is not None
    t.success(p, 100, ours={1: 5}, theirs={1: 5, 2: 3})
    assert (p.info(t.ours).they_lack, p.info(t.ours).we_lack) == (0, 3)
    t.failure(p, 200, "connection refused", unreachable=True)
    t.saw_ours({1: 9})  # our own writes while it is away
    t.saw_ours({1: 7})  # older than what we know: no change
    (row,) = t.rows()
    assert (row.they_lack, row.we_lack) == (4, 3)
    t.saw_ours({2: 3})  # we learned its records from someone else
    assert (t.rows()[0].they_lack, t.rows()[0].we_lack) == (4, 0)


def test_state_vectors_say_when_they_were_learned_and_which_items_a_peer_holds():
    """``sv_at``: the time of the last answer or request that carried the peer's state
    vector (not of a failure); ``holds``: a record is one item, held once the peer's
    clock for its client is past it."""
    t = table()
    p = t.add(["a:1"], "static", key=K1)
    assert p is not None and p.info().sv_at is None
    t.success(p, 100, ours={1: 5}, theirs={1: 3})
    assert p.info().sv_at == 100 and holds(p.last_sv, 1, 2) and not holds(p.last_sv, 1, 3)
    t.failure(p, 200, "connection refused", unreachable=True)
    assert p.info().sv_at == 100
    t.inbound(K1, 300, ours={1: 5}, theirs={1: 5})
    assert p.info().sv_at == 300 and holds(p.last_sv, 1, 4) and not holds(p.last_sv, 2, 0)
    t.success(p, 400, exchange=False)  # an answer that carried no state vector
    assert p.info().sv_at == 300


def test_a_remembered_state_vector_fills_a_row_once_it_has_the_key():
    """What an earlier run learned (peers.json) is knowledge only: no row is added for
    it; a row that gets its key and knows nothing fresher starts from it."""
    t = table()
    t.saw_ours({1: 9})
    t.remember({K1: ({1: 7}, 50), K2: ({1: 2}, 60)})
    assert len(t) == 0
    s = t.add(["10.0.0.1:7471"], "static")
    assert s is not None and s.last_sv is None
    t.begin(s)
    t.learn_key(s, K1)  # its first answer names it
    assert (s.sv_at, s.info(t.ours).they_lack) == (50, 2)
    t.success(s, 500, ours={1: 9}, theirs={1: 9})  # fresher: replaces it
    assert (s.sv_at, s.info(t.ours).they_lack) == (500, 0)
    e = t.add(["10.0.0.2:7471"], "exchange", key=K2, name="desk")  # an announcement
    assert e is not None and (e.sv_at, e.info(t.ours).they_lack) == (60, 7)
    t.forget(e)
    assert t.forgotten == {K2}


def test_a_goodbye_makes_a_peer_left_until_it_is_back():
    t = table(down_after=2)
    p = t.add(["a:1"], "exchange", key=K1)
    assert p is not None
    t.success(p, 100)
    assert t.left(K1, 200) is p
    assert p.state == "left" and p.info().reason == "it said goodbye (stopped)"
    assert p.next_attempt == 200 + 1600 and t.push_targets(3) == []
    for _ in range(4):  # not reaching a peer that said it stops is no news
        t.failure(p, 2000, "connection refused", unreachable=True)
    assert p.state == "left"
    t.inbound(K1, 3000)  # it is back
    assert p.state == "alive"
    assert t.left("z" * 43, 10) is None  # a key we have no row for


def test_forget_drops_a_row_and_its_announcement_does_not_bring_it_back():
    t = table()
    p = t.add(["a:1"], "exchange", key=K1)
    assert p is not None
    t.forget(p)
    assert len(t) == 0
    assert t.add(["a:1"], "exchange", key=K1) is None  # the document still announces it
    t.inbound(K1, 10)  # it reached us: it is back
    assert t.add(["a:1"], "exchange", key=K1) is not None
    q = t.by_key(K1)
    assert q is not None
    t.forget(q)
    assert t.add(["a:2"], "mdns", key=K1, claim=True) is not None  # it advertises again


def test_every_state_says_why():
    t = table(down_after=2, trusts=lambda key: key != K2)
    fresh = t.add(["a:1"], "static")
    failing = t.add(["b:1"], "static", key=K1)
    stranger = t.add(["c:1"], "mdns", key=K2, claim=True)
    refusing = t.add(["d:1"], "static", key=K3)
    assert fresh and failing and stranger and refusing
    t.failure(failing, 0, "connection refused")
    assert failing.state == "suspect" and failing.info().reason == "connection refused"
    t.failure(failing, 0, "connection refused")
    assert failing.state == "down"
    assert failing.info().reason == "2 failures: connection refused"
    assert fresh.state == "suspect" and fresh.info().reason == "not reached yet"
    assert stranger.state == "unknown-key"
    assert f"gossip trust add {K2}" in stranger.info().reason
    t.failure(refusing, 0, "peer answered 403: not in the keyring", unknown_key=True)
    assert refusing.info().reason == "peer answered 403: not in the keyring"
    assert {r.state for r in t.rows()} <= {"alive", "suspect", "down", "left", "unknown-key"}
