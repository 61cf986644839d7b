"""The effective trusted set (crdt.trust) and the read side that uses it: successor,
revoke and vouch records, with forgeries that must be ignored, over real replicas."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import Identity, Replica, records
from crdt.files import create_whole
from crdt.identity import KEY_FILE, RETIRED_DIR, STAGED_KEY_FILE
from crdt.trust import effective_trust
from crdt.views import ViewConfig, Views
from gossip.ops import queries
from gossip.ops.queries import trust_note
from tests.forge import Writer

T = 1_790_000_000_000


class Now:
    def __init__(self, t: int = T) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def invite(voucher: Identity, key: Identity, ts: int, **kw) -> records.SignedRecord:
    """A vouch its key accepted (as `gossip trust join` makes): its inviter's."""
    accept = records.acceptance(key, records.KIND_VOUCH, voucher.public_id)
    return records.vouch(voucher, key.public_id, ts=ts, accept=accept, **kw)


def mem(w: Writer, text: str, ts: int) -> bytes:
    return w.put(records.memory(w.identity, text, category="learning", ts=ts)).raw


def texts(views: Views, **kw) -> list[str]:
    return sorted(h.text for h in views.recall(**kw).hits)


@pytest.fixture
def me(open_replica):
    return open_replica("me")


# -- the pure function --------------------------------------------------------------------


def test_successor_needs_the_old_keys_signature():
    old, new, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    real = records.successor(old, new, ts=T)
    forged = records.successor(stranger, Identity.generate(), ts=T)
    trust = effective_trust({old.public_id: "desk"}, [real, forged])
    assert trust.keys == {old.public_id, new.public_id}
    assert trust.successors == {old.public_id: new.public_id}
    assert trust.names[new.public_id] == "desk"
    assert trust.current(old.public_id) == new.public_id


def test_an_old_key_naming_two_successors_is_compromised_and_names_neither():
    """Review finding 2a: after a routine rotation a thief holding the old key (kept in
    retired/) signed a successor backdated before the real one, and "first successor
    wins" handed the old key's trust to the thief's key."""
    old, real, rogue = Identity.generate(), Identity.generate(), Identity.generate()
    rotation = records.successor(old, real, ts=T)
    theft = records.successor(old, rogue, ts=T - 3_600_000)
    trust = effective_trust({old.public_id: ""}, [rotation, theft])
    assert rogue.public_id not in trust and real.public_id not in trust
    assert old.public_id not in trust and trust.compromised == {old.public_id}
    assert trust.how(old.public_id).startswith("compromised")
    # Its records up to the earliest successor it signed still count, none after.
    assert trust.counts(old.public_id, T - 3_600_000) and not trust.counts(old.public_id, T)
    assert trust_note(trust, old.public_id, T).startswith("hidden: signed after its key named")
    # The owner's later revoke of the old key by the real new key changes nothing...
    owner = records.revoke(real, old.public_id, ts=T + 10)
    assert real.public_id not in effective_trust({old.public_id: ""}, [rotation, theft, owner])
    # ... the remedy is to trust the new key by hand.
    by_hand = effective_trust({old.public_id: "", real.public_id: ""}, [rotation, theft, owner])
    assert real.public_id in by_hand and rogue.public_id not in by_hand
    # The same successor named twice is one successor.
    again = records.successor(old, real, ts=T + 5)
    assert real.public_id in effective_trust({old.public_id: ""}, [rotation, again])


def test_no_successor_after_the_old_keys_own_revocation():
    old, rogue = Identity.generate(), Identity.generate()
    revoke = records.revoke(old, old.public_id, ts=T + 5)
    late = records.successor(old, rogue, ts=T + 10)
    only_rogue = effective_trust({old.public_id: ""}, [late, revoke])
    assert rogue.public_id not in only_rogue and not only_rogue.compromised
    assert only_rogue.counts(old.public_id, T + 5) and not only_rogue.counts(old.public_id, T + 6)


def test_revoke_by_itself_and_by_its_bringer_honoured_by_a_stranger_ignored():
    voucher, key, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    ring = {voucher.public_id: "v"}
    by_stranger = records.revoke(stranger, key.public_id, ts=T)
    assert key.public_id in effective_trust({**ring, key.public_id: "k"}, [by_stranger])
    by_itself = records.revoke(key, key.public_id, ts=T)
    assert key.public_id not in effective_trust({**ring, key.public_id: "k"}, [by_itself])
    # An inviter's revocation counts (its vouch, accepted by the key, admitted it)...
    vouch = invite(voucher, key, ts=T)
    by_voucher = records.revoke(voucher, key.public_id, ts=T + 1, retroactive=True)
    assert key.public_id in effective_trust(ring, [vouch], follow_vouches=True)
    trust = effective_trust(ring, [vouch, by_voucher], follow_vouches=True)
    assert key.public_id not in trust and trust.cutoffs[key.public_id] == -1
    untrusted_voucher = effective_trust({key.public_id: "k"}, [vouch, by_voucher])
    assert key.public_id in untrusted_voucher
    # This host never revokes itself in its own eyes.
    ring2 = {voucher.public_id: "v", key.public_id: "k"}
    assert key.public_id in effective_trust(ring2, [by_itself], self_key=key.public_id)
    # Its own revocations count in its own eyes, also of a keyring key (its decision).
    assert key.public_id in effective_trust(ring2, [vouch, by_voucher])
    mine = effective_trust(ring2, [vouch, by_voucher], self_key=voucher.public_id)
    assert key.public_id not in mine and mine.revoked[key.public_id].by == voucher.public_id


def test_a_voucher_has_no_authority_over_a_keyring_key_nor_over_what_it_did_not_bring():
    """Review finding 1: any trusted key could revoke any other (keyring members
    included) by first publishing a vouch for it; a vouched key could revoke its inviter."""
    a, b, m = (Identity.generate() for _ in range(3))
    ring = {a.public_id: "a", b.public_id: "b", m.public_id: "m"}
    attack = [records.vouch(m, b.public_id, ts=T),
              records.revoke(m, b.public_id, ts=T + 1, retroactive=True)]  # fmt: skip
    for follow in (False, True):
        trust = effective_trust(ring, attack, follow_vouches=follow, self_key=a.public_id)
        assert b.public_id in trust and not trust.revoked
    # With follow_vouches: i brought j; j (or any other vouch for i) cannot revoke i.
    root, i, j, k = (Identity.generate() for _ in range(4))
    chain = [invite(root, i, ts=T), invite(i, j, ts=T + 1)]
    counter = [records.vouch(j, i.public_id, ts=T + 2),
               records.revoke(j, i.public_id, ts=T + 3)]  # fmt: skip
    trust = effective_trust({root.public_id: ""}, chain + counter, follow_vouches=True)
    assert {i.public_id, j.public_id} <= trust.keys
    # k (invited by i, after j) vouches for j too: j never accepted k as its inviter, so
    # k's revoke of j is ignored...
    late = [invite(i, k, ts=T + 2), records.vouch(k, j.public_id, ts=T + 5),
            records.revoke(k, j.public_id, ts=T + 6)]  # fmt: skip
    assert j.public_id in effective_trust({root.public_id: ""}, chain + late, follow_vouches=True)
    # ... and i's is honoured; i retiring later does not undo it, but a revoke i signs
    # after its own revocation counts for nothing.
    by_i = records.revoke(i, j.public_id, ts=T + 4)
    assert j.public_id not in effective_trust({root.public_id: ""}, [*chain, by_i],
                                              follow_vouches=True)  # fmt: skip
    i_gone = records.revoke(i, i.public_id, ts=T + 10)
    trust = effective_trust({root.public_id: ""}, [*chain, by_i, i_gone], follow_vouches=True)
    assert j.public_id not in trust and i.public_id not in trust
    late_by_i = records.revoke(i, j.public_id, ts=T + 11)
    trust = effective_trust({root.public_id: ""}, [*chain, late_by_i, i_gone],
                            follow_vouches=True)  # fmt: skip
    # j stays: i vouched for it before retiring, and i's late revoke is ignored.
    assert j.public_id in trust and i.public_id not in trust


def test_a_successor_edge_survives_the_old_keys_revocation():
    """Review finding 3: a stolen old key revoked its successor, and the owner's own
    remedy (revoking the old key, retroactively or from before the rotation) orphaned the
    new key."""
    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()
    ring = {a.public_id: "host"}
    rotation = records.successor(a, b, ts=T)
    # (a) the thief's revoke of the new key, then the owner's revoke of the old one.
    thief = records.revoke(a, b.public_id, ts=T + 100, retroactive=True)
    owner = records.revoke(b, a.public_id, ts=T + 200)
    trust = effective_trust(ring, [rotation, thief, owner])
    assert b.public_id in trust and a.public_id not in trust
    assert trust.counts(b.public_id, T + 150)
    # (b) the old key revokes itself retroactively: the new key stays trusted.
    retro = records.revoke(a, a.public_id, ts=T + 50, retroactive=True)
    trust = effective_trust(ring, [rotation, retro])
    assert b.public_id in trust and trust.cutoffs[a.public_id] == -1
    # (c) `gossip trust remove OLD --retroactive` on the new key, even from before the
    # rotation: the old key's content is gone, the new key stays.
    early = records.revoke(b, a.public_id, ts=T + 50, at=T - 1000, retroactive=True)
    trust = effective_trust(ring, [rotation, early])
    assert b.public_id in trust and trust.successors == {a.public_id: b.public_id}
    assert not trust.counts(a.public_id, T - 2000)
    # A second rotation, and the middle key revoked retroactively by the third: the
    # middle key's earlier revocation of the first still holds, and the third is trusted.
    second = records.successor(b, c, ts=T + 300)
    b_gone = records.revoke(c, b.public_id, ts=T + 400, retroactive=True)
    trust = effective_trust(ring, [rotation, owner, second, b_gone])
    assert trust.keys == {c.public_id} and trust.current(a.public_id) == c.public_id


def test_another_member_cannot_make_itself_a_rotated_keys_predecessor():
    """Second review, HIGH: after K rotated to S, a trusted member M named S as its own
    successor (or vouched for it), became S's "bringer" and revoked S: K's host was cut
    off. Now a successor needs the new key's acceptance, and a vouch gives no authority
    over a key trusted without vouches."""
    k, s, m = Identity.generate(), Identity.generate(), Identity.generate()
    ring = {k.public_id: "k", m.public_id: "m"}
    rotation = records.successor(k, s, ts=T)
    copied = records.sign(
        m,
        records.KIND_SUCCESSOR,
        {"key": s.public_id, "accept": rotation.fields["accept"]},
        ts=T - 5,
    )
    bare = records.sign(m, records.KIND_SUCCESSOR, {"key": s.public_id}, ts=T - 4)
    attack = [copied, bare, records.vouch(m, s.public_id, ts=T - 3),
              records.revoke(m, s.public_id, ts=T + 1, retroactive=True)]  # fmt: skip
    for follow in (False, True):
        trust = effective_trust(ring, [rotation, *attack], follow_vouches=follow)
        assert s.public_id in trust and not trust.revoked
        assert trust.successors == {k.public_id: s.public_id}
        assert trust.how(s.public_id) == f"successor of {k.public_id[:12]}"
    # A key that accepted two predecessors (only its holder can do that) has neither.
    both = records.successor(m, s, ts=T + 2)
    trust = effective_trust(ring, [rotation, both])
    assert s.public_id not in trust and not trust.successors


def test_a_key_revoked_by_its_heir_cannot_revoke_its_predecessor_afterwards():
    """Second review, MEDIUM: in a chain A -> B -> C, a thief holding B revoked A
    retroactively after C had revoked B."""
    a, b, c = Identity.generate(), Identity.generate(), Identity.generate()
    chain = [records.successor(a, b, ts=T), records.successor(b, c, ts=T + 10),
             records.revoke(c, b.public_id, ts=T + 20)]  # fmt: skip
    thief = records.revoke(b, a.public_id, ts=T + 30, retroactive=True)
    trust = effective_trust({a.public_id: "a"}, [*chain, thief])
    assert a.public_id not in trust.revoked and trust.counts(a.public_id, T - 1)
    assert trust.keys == {a.public_id, c.public_id}
    # Signed before C revoked B, it stands (backdating stays open: threat model, 2b).
    early = records.revoke(b, a.public_id, ts=T + 15, retroactive=True)
    assert effective_trust({a.public_id: "a"}, [*chain, early]).cutoffs[a.public_id] == -1


def test_a_vouchers_revocation_is_final_whoever_vouches_later():
    """Second review, MEDIUM: another member's later vouch undid the bringer's revoke."""
    v1, v2, x = Identity.generate(), Identity.generate(), Identity.generate()
    ring = {v1.public_id: "", v2.public_id: ""}
    recs = [invite(v1, x, ts=T), records.revoke(v1, x.public_id, ts=T + 5),
            records.vouch(v2, x.public_id, ts=T - 10)]  # fmt: skip
    trust = effective_trust(ring, recs, follow_vouches=True)
    assert x.public_id not in trust and trust.revoked[x.public_id].by == v1.public_id
    # Only the inviter may revoke it (v2's vouch was not accepted by x); neither may
    # revoke the other (both keyring keys).
    recs2 = [
        *recs[:1],
        recs[2],
        records.revoke(v2, x.public_id, ts=T + 6),
        records.vouch(v1, v2.public_id, ts=T),
        records.revoke(v1, v2.public_id, ts=T + 7),
    ]
    trust = effective_trust(ring, recs2, follow_vouches=True)
    assert x.public_id in trust and v2.public_id in trust and not trust.revoked


def test_only_the_inviter_a_key_accepted_may_revoke_it():
    """Third review, H1 and M1: vouch authority went by breadth-first distance, so a
    fellow guest could revoke a rotated guest, a predecessor its successor, a keyring
    member a guest (vouching first, backdated), an invitee its twice-rotated inviter;
    and a nearer member's later vouch undid the inviter's revocation."""
    root, inviter, j, j2, g, m = (Identity.generate() for _ in range(6))
    ring = {root.public_id: "root"}
    base = [invite(root, inviter, ts=T), invite(inviter, j, ts=T), invite(root, g, ts=T),
            records.successor(j, j2, ts=T + 10)]  # fmt: skip

    def trust(extra, ring=ring):
        return effective_trust(ring, base + extra, follow_vouches=True, self_key=root.public_id)

    assert j2.public_id in trust([])
    for revoker in (g, j):  # a fellow guest; the rotated key's own predecessor
        attack = [records.vouch(revoker, j2.public_id, ts=T + 20),
                  records.revoke(revoker, j2.public_id, ts=T + 21, retroactive=True)]
        assert j2.public_id in trust(attack) and not trust(attack).revoked
    backdated = [records.vouch(m, g.public_id, ts=T - 10**9),
                 records.revoke(m, g.public_id, ts=T + 5, retroactive=True)]  # fmt: skip
    assert g.public_id in trust(backdated, ring={**ring, m.public_id: "m"})
    i2, i3 = Identity.generate(), Identity.generate()
    rotations = [records.successor(inviter, i2, ts=T + 30), records.successor(i2, i3, ts=T + 40)]
    back = [records.vouch(j, i3.public_id, ts=T + 50),
            records.revoke(j, i3.public_id, ts=T + 51, retroactive=True)]  # fmt: skip
    assert i3.public_id in trust(rotations + back)
    # The inviter's authority follows its invitee's rotations, and survives its own.
    by_inviter = records.revoke(i3, j2.public_id, ts=T + 60, retroactive=True)
    assert j2.public_id not in trust([*rotations, by_inviter])
    # Its revocation of a stolen invitee stays, whoever vouches for that key later.
    stolen = trust([records.revoke(inviter, j.public_id, ts=T + 15)])
    assert j.public_id not in stolen and j2.public_id in stolen  # rotated before at
    later = [records.revoke(inviter, j.public_id, ts=T + 5, at=T + 1),
             records.vouch(root, j.public_id, ts=T + 100),
             records.vouch(g, j.public_id, ts=T + 100)]  # fmt: skip
    after = trust(later)
    assert j.public_id not in after and j2.public_id not in after  # rotated after at


def test_edges_signed_after_their_signers_revocation_give_no_authority():
    """Third review, M2: a successor (or vouch) signed after its author's revocation
    admitted nobody, but the key it named could still revoke."""
    h, a, b, x = (Identity.generate() for _ in range(4))
    ring = {h.public_id: "me", a.public_id: "host-a"}
    base = [records.successor(a, b, ts=T), records.revoke(h, b.public_id, ts=T + 100)]
    late = [records.successor(b, x, ts=T + 200),
            records.revoke(x, a.public_id, ts=T + 201, at=0, retroactive=True)]  # fmt: skip
    trust = effective_trust(ring, base + late, self_key=h.public_id)
    assert a.public_id in trust and a.public_id not in trust.revoked and x.public_id not in trust
    root, i, a2, j, k, y = (Identity.generate() for _ in range(6))
    base = [invite(root, i, ts=T), invite(root, a2, ts=T), invite(a2, j, ts=T),
            invite(j, k, ts=T + 1), records.revoke(root, i.public_id, ts=T + 100)]  # fmt: skip
    late = [invite(i, y, ts=T + 200), records.vouch(y, k.public_id, ts=T + 201),
            records.revoke(y, k.public_id, ts=T + 202, at=0, retroactive=True)]  # fmt: skip
    trust = effective_trust({root.public_id: ""}, base + late, follow_vouches=True)
    assert k.public_id in trust and y.public_id not in trust


def test_odd_revocations_neither_break_reading_nor_change_the_trusted_set(me):
    """Third review, H2 and L1: a revoke `at` past 64 bits broke every recall; a
    stranger's self-revoke changed the trusted set (waking every listener)."""
    old, new = Identity.generate(), Identity.generate()
    revoke = records.KIND_REVOKE
    huge = records.sign(old, revoke, {"key": old.public_id, "at": 2**63}, ts=T + 2)
    negative = records.sign(old, revoke, {"key": new.public_id, "at": -(2**70)}, ts=T + 3)
    with pytest.raises(records.RecordError):
        records.revoke(old, old.public_id, ts=T, at=2**63)
    rotation = records.successor(old, new, ts=T + 1)
    trust = effective_trust({old.public_id: ""}, [rotation, huge, negative])
    assert trust.revoked[old.public_id].at == T + 2 and trust.cutoffs[old.public_id] == T + 2
    w = Writer(old)
    me.trust(old.public_id, "old")
    me.ingest(mem(w, "hello world", ts=T))
    me.ingest(w.put(records.successor(old, new, ts=T + 1)))
    me.ingest(w.put(huge))
    views = Views(me, now_ms=Now())
    assert texts(views) == ["hello world"] and new.public_id in views.trust()
    stranger = Identity.generate()
    ring = {me.author: "self"}
    alone = effective_trust(ring, [records.revoke(stranger, stranger.public_id, ts=T)])
    assert alone == effective_trust(ring, []) and alone.how(stranger.public_id) == "not trusted"


def test_a_host_remembers_whom_it_revoked_after_rotating():
    """New-user test, H1: after `gossip key rotate` every key the host had revoked was
    trusted again (only its current key had this host's authority)."""
    h, h2, x = Identity.generate(), Identity.generate(), Identity.generate()
    ring = {h.public_id: "self (retired)", h2.public_id: "self", x.public_id: "x"}
    recs = [records.revoke(h, x.public_id, ts=T, retroactive=True),
            records.successor(h, h2, ts=T + 10),
            records.revoke(h2, h.public_id, ts=T + 20)]  # the grace's end  # fmt: skip
    trust = effective_trust(ring, recs, self_key=h2.public_id)
    assert x.public_id not in trust and trust.cutoffs[x.public_id] == -1
    # What the old key signs after its own revocation is not this host's decision.
    y = Identity.generate()
    late = records.revoke(h, y.public_id, ts=T + 30)
    assert y.public_id in effective_trust({**ring, y.public_id: "y"}, [*recs, late],
                                          self_key=h2.public_id)  # fmt: skip


def test_names_from_vouches_name_hosts_and_a_revoked_key_is_not_trusted_again(me):
    """New-user test, M3 and M1: `trust remove NAME` refused the name `trust list` shows
    for a vouched key; `trust add` of a revoked key said "trusted" and changed nothing."""
    inviter, guest = Writer(), Identity.generate()
    me.trust(inviter.id, "inviter")
    me.ingest(inviter.put(invite(inviter.identity, guest, ts=T, name="guest")))
    views = Views(me, ViewConfig(follow_vouches=True), now_ms=Now())
    trust = views.trust()
    assert queries.resolve_host(me, "guest", trust) == (guest.public_id, guest.public_id)
    assert queries.revoked_note(guest.public_id, trust) is None
    me.ingest(inviter.put(records.revoke(inviter.identity, guest.public_id, ts=T + 1)))
    note = queries.revoked_note(guest.public_id, views.trust())
    assert note is not None and "final" in note


def test_one_rotation_at_a_time(tmp_path, clock):
    """New-user test, H3/H4: a second rotation before the first one's grace ended left
    peers knowing only the first key, and a retired private key for good."""
    with Replica.open(tmp_path / "host", now_ms=clock) as r:
        r.rotate(Identity.generate())
        with pytest.raises(records.IdentityError, match="still in its grace"):
            r.rotate(Identity.generate())


def test_vouches_count_only_when_followed_and_removed_keys_never():
    voucher, guest = Identity.generate(), Identity.generate()
    vouch = records.vouch(voucher, guest.public_id, ts=T, name="guest")
    ring = {voucher.public_id: "v"}
    assert guest.public_id not in effective_trust(ring, [vouch])
    followed = effective_trust(ring, [vouch], follow_vouches=True)
    assert guest.public_id in followed and followed.vouched == {guest.public_id: voucher.public_id}
    removed = effective_trust(ring, [vouch], follow_vouches=True, removed={guest.public_id})
    assert guest.public_id not in removed


# -- the views over a real replica --------------------------------------------------------


def test_recall_hides_records_after_the_revocation_or_all_with_retroactive(me):
    now = Now(T + 1000)
    views = Views(me, now_ms=now)
    friend = Writer()
    me.trust(friend.id, "friend")
    me.ingest(mem(friend, "before the theft", ts=T))
    me.ingest(mem(friend, "after the theft", ts=T + 100))
    assert texts(views) == ["after the theft", "before the theft"]
    me.ingest(friend.put(records.revoke(friend.identity, friend.id, ts=T + 50)))
    assert texts(views) == ["before the theft"]
    assert friend.id not in views.trust()
    # Still in the document, for audit; show() explains it as untrusted.
    hidden = [m for m in views.recall(include_untrusted=True).hits if not m.trusted]
    assert [m.text for m in hidden] == ["after the theft"]
    assert views.memory(hidden[0].id) is not None and not views.memory(hidden[0].id).trusted
    me.ingest(friend.put(records.revoke(friend.identity, friend.id, ts=T + 60,
                                        retroactive=True)))  # fmt: skip
    assert texts(views) == []
    assert len(views.recall(include_untrusted=True).hits) == 2


def test_follow_vouches_config_decides(open_replica):
    a = open_replica("a")
    inviter, guest = Writer(), Writer()
    a.trust(inviter.id, "inviter")
    a.ingest(inviter.put(records.vouch(inviter.identity, guest.id, ts=T)))
    a.ingest(mem(guest, "guest lesson", ts=T))
    off = Views(a, now_ms=Now())
    on = Views(a, ViewConfig(follow_vouches=True), now_ms=Now())
    assert texts(off) == [] and texts(on) == ["guest lesson"]
    a.distrust(guest.id)  # removed by hand: the vouch no longer counts
    assert texts(on) == []
    a.trust(guest.id, "guest")
    assert texts(on) == ["guest lesson"]


def test_rotate_keeps_old_records_trusted_and_verifiable(tmp_path, clock):
    home = tmp_path / "host"
    r = Replica.open(home, now_ms=clock)
    old = r.identity
    r.put(records.memory(old, "written by the old key", category="c", ts=clock()))
    old_client = r.client
    new = Identity.generate()
    rec, su = r.rotate(new)
    assert su is not None and su.author == old.public_id and rec.fields["key"] == new.public_id
    assert r.author == new.public_id and r.client != old_client
    r.put(records.memory(new, "written by the new key", category="c", ts=clock()))
    views = Views(r, now_ms=clock)
    assert texts(views) == ["written by the new key", "written by the old key"]
    assert r.keyring()[old.public_id] == "self (retired)"
    r.close()
    # The key files: the new key in place, the old one kept 0600 under retired/.
    assert Identity.load(home).public_id == new.public_id
    kept = home / RETIRED_DIR / f"{old.public_id}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / RETIRED_DIR).stat().st_mode) == 0o700
    assert Identity.load_retired(home, old.public_id).public_id == old.public_id
    # Reopening replays and re-verifies every stored update, the old key's included.
    with Replica.open(home, now_ms=clock) as again:
        assert again.author == new.public_id
        with Views(again, now_ms=clock) as v:
            assert texts(v) == ["written by the new key", "written by the old key"]
        # A peer that trusts only the old key trusts the new one through the successor.
        peer = Replica.open(tmp_path / "peer", now_ms=clock)
        try:
            peer.trust(old.public_id, "host")
            for u in again.updates_for({}):
                peer.ingest(u)
            with Views(peer, now_ms=clock) as pv:
                assert new.public_id in pv.trust()
                assert texts(pv) == ["written by the new key", "written by the old key"]
                # Recall names the new key by the name the peer gave the old one.
                hits = queries.recall(peer, pv, "written")["memories"]
                assert {h["author_name"] for h in hits} == {"host"}
                # `trust remove host` means the host as it is now; a whole id, that key.
                trust = pv.trust()
                assert queries.resolve_host(peer, "host", trust) == (old.public_id, new.public_id)
                assert queries.resolve_host(peer, old.public_id[:10], trust)[1] == new.public_id
                assert queries.resolve_host(peer, old.public_id, trust) == (old.public_id,) * 2
                # `recall --author host` means the host: both keys' memories (M4).
                hits = queries.recall(peer, pv, None, author="host")["memories"]
                assert len(hits) == 2
                assert len(queries.recall(peer, pv, None, author=new.public_id)["memories"]) == 1
                # Removing the old key by its whole id keeps the host it became.
                assert queries.successor_to_keep(peer.keyring(), old.public_id, trust) == (
                    new.public_id, "host")
        finally:
            peer.close()


def test_a_rotation_that_crashed_after_the_key_swap_is_finished_on_open(tmp_path, clock):
    home = tmp_path / "host"
    with Replica.open(home, now_ms=clock) as r:
        old = r.identity
        r.put(records.successor(old, (new := Identity.generate()), ts=clock()))
        new.install(home, retire=old)  # the crash: the store still names the old key
    assert os.path.exists(home / KEY_FILE)
    with Replica.open(home, now_ms=clock) as r:
        assert r.author == new.public_id
        assert r.keyring()[old.public_id] == "self (retired)"


def test_a_rotation_that_crashed_after_signing_the_successor_is_finished_on_open(tmp_path, clock):
    """Review finding 7: the successor was stored before the new key was on disk; a crash
    between the two left a successor naming a key nobody has (peers trusted it, and the
    next rotation, a second successor, would make the old key compromised). The new key
    is now staged (host.key.next) before the old key signs the successor."""
    home = tmp_path / "host"
    with Replica.open(home, now_ms=clock) as r:
        old = r.identity
        new = Identity.generate()
        staged = home / STAGED_KEY_FILE
        create_whole(staged, lambda tmp: tmp.write_bytes(new._pem()))  # rotate()'s 1st step
        r.put(records.successor(old, new, ts=clock()))  # the crash: nothing more
    with Replica.open(home, now_ms=clock) as r:
        assert r.author == new.public_id and not staged.exists()
        assert r.keyring()[old.public_id] == "self (retired)"
        assert Identity.load_retired(home, old.public_id).public_id == old.public_id
    assert Identity.load(home).public_id == new.public_id
    # A key staged with no successor signed (the crash came first) is dropped.
    with Replica.open(home, now_ms=clock) as r:
        Identity.generate().stage(home)
    with Replica.open(home, now_ms=clock) as r:
        assert r.author == new.public_id and not staged.exists()


KEYS = [Identity.generate() for _ in range(5)]


@st.composite
def trust_records(draw):
    out = []
    for _ in range(draw(st.integers(0, 12))):
        author, target = draw(st.sampled_from(KEYS)), draw(st.sampled_from(KEYS))
        ts = T + draw(st.integers(0, 50))
        kind = draw(st.sampled_from(["successor", "revoke", "vouch"]))
        if kind == "successor" and author is not target:
            out.append(records.successor(author, target, ts=ts))
        elif kind == "revoke":
            out.append(records.revoke(author, target.public_id, ts=ts,
                                      at=ts + draw(st.integers(-5, 5)),
                                      retroactive=draw(st.booleans())))  # fmt: skip
        elif author is not target and draw(st.booleans()):
            out.append(invite(author, target, ts=ts))
        elif author is not target:
            out.append(records.vouch(author, target.public_id, ts=ts))
    return out


@settings(max_examples=200, deadline=None)
@given(recs=trust_records(), ring=st.sets(st.integers(0, 4), min_size=1),
       follow=st.booleans(), order=st.randoms(use_true_random=False))  # fmt: skip
def test_the_trusted_set_does_not_depend_on_record_order(recs, ring, follow, order):
    keyring = {KEYS[i].public_id: "" for i in ring}
    me = KEYS[min(ring)].public_id
    first = effective_trust(keyring, recs, follow_vouches=follow, self_key=me)
    shuffled = list(recs)
    order.shuffle(shuffled)
    assert effective_trust(keyring, shuffled, follow_vouches=follow, self_key=me) == first
    assert me in first  # a host always trusts itself
    assert not (first.keys & set(first.revoked))  # a revoked key is never trusted
    # A keyring key is revoked only by itself, by this host (or a key it rotated away
    # from), or by a key its successor records name (transitively): never by a voucher
    # (review finding 1).
    # ... and only by an heir whose successor edges all still count (third review, M2).
    for key in set(keyring) & set(first.revoked):
        rev = first.revoked[key]
        assert (rev.by in {key, me} or rev.by in _heirs_honoured(first.successors, key)
                or me in _heirs(recs, rev.by))  # a key this host rotated away from  # fmt: skip
    # A key has at most one honoured predecessor (second review, HIGH: a second one
    # became the key's "bringer" and could revoke it).
    assert len(set(first.successors.values())) == len(first.successors)
    # A voucher revokes a key only with follow_vouches, and only a key that the
    # successor graph alone (cut by self-revocations) does not reach.
    chains = [r for r in recs if r.kind == "successor" or
              (r.kind == "revoke" and r.author == r.fields["key"])]  # fmt: skip
    without_vouches = effective_trust(keyring, chains, self_key=me).names
    for key, rev in first.revoked.items():
        if rev.by in {key, me} or rev.by in _heirs(recs, key) or me in _heirs(recs, rev.by):
            continue
        assert follow and key not in without_vouches
        # ... and only its inviter (or the inviter's successor): a vouch the key (or a
        # predecessor) accepted. (Predecessors taken loosely: any successor's author.)
        rotated = {r.author for r in recs if r.kind == "successor"}
        assert any(r.kind == "vouch" and r.author in {rev.by} | rotated and "accept" in r.fields
                   and r.fields["key"] in {key} | rotated for r in recs)  # fmt: skip


def _heirs_honoured(successors, key):
    out = set()
    while (key := successors.get(key)) is not None and key not in out:
        out.add(key)
    return out


def _heirs(recs, key):
    named: dict[str, set[str]] = {}
    for r in recs:
        if r.kind == "successor":
            named.setdefault(r.author, set()).add(r.fields["key"])
    heirs, todo = set(), [key]
    while todo:
        for nxt in named.get(todo.pop(), ()):
            if nxt not in heirs:
                heirs.add(nxt)
                todo.append(nxt)
    return heirs
