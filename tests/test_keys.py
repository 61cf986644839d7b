"""Key rotation, revocation and invitations on running nodes over HTTP on 127.0.0.1.

Failed exchanges are counted from the nodes' own peer events: a failure always moves
a row out of ``alive`` (backing-off, unknown-key, down), which the table announces.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crdt import GossipError, Identity, Replica, records
from crdt.files import create_whole
from crdt.identity import KEY_FILE, RETIRED_DIR
from gossip.events import PeerChanged
from gossip.invites import Invitations, InviteError, decode, join_body
from gossip.node import Node
from gossip.peers import ALIVE
from tests.daemons import free_port
from tests.test_node import FAST, Cluster, create_hosts, until

T = 1_790_000_000_000

pytestmark = pytest.mark.usefixtures("no_leaks")


class Failures:
    """Every row of every node that left ``alive`` (or carried an error) while watched."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def watch(self, node: Node) -> None:
        async def run() -> None:
            async for event in node.events():
                if isinstance(event, PeerChanged) and event.change == "changed":
                    info = event.peer
                    if info.state not in (ALIVE, "suspect") or info.last_error:
                        self.seen.append((node.address, info.state, info.last_error))

        self._tasks.append(asyncio.create_task(run()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def stranger_transport(home: Path, verifier_keys: set[str], now: Callable[[], int]) -> Any:
    """An HTTP client with a fresh key of its own in ``home``, over TLS (pinned, as a
    node's): the server sees its certificate key and its signing key, the same one."""
    from gossip.transport.auth import Verifier
    from gossip.transport.http import HttpTransport
    from gossip.transport.tls import PinnedTls

    ident = Identity.create(home)
    return HttpTransport(ident, Verifier(lambda: verifier_keys, now), now_ms=now,
                         tls=PinnedTls.for_host(home, ident))  # fmt: skip


async def mesh(nodes: list[Node]) -> None:
    """Wait until every node has every other one as an alive peer with its key."""

    def full() -> bool:
        for n in nodes:
            alive = {p.key for p in n.peers() if p.state == ALIVE}
            if not {m.id for m in nodes if m is not n} <= alive:
                return False
        return True

    await until(full, "a full mesh of alive peers", timeout=30.0)


async def test_rotation_in_a_five_node_cluster_fails_no_exchange(tmp_path: Path):
    async with contextlib.AsyncExitStack() as stack:
        cluster = Cluster("http", tmp_path, stack)
        nodes = await cluster.grow(5)
        await mesh(nodes)
        assert all(n.transport.mode == "tls" for n in nodes)  # the default
        failures = Failures()
        for n in nodes:
            failures.watch(n)
        await asyncio.sleep(0)  # let the watchers subscribe
        host = nodes[0]
        old = host.id
        await host.remember("written by the old key", category="learning")
        new = await host.rotate_key()
        assert host.id == new != old
        await host.remember("written by the new key", category="learning")
        for text in ("written by the old key", "written by the new key"):
            await until(lambda t=text: all(any(m.text == t for m in n.recall(t)) for n in nodes),
                        f"{text!r} everywhere")  # fmt: skip
        # Every peer trusts the new key through the successor record, still trusts the
        # old one (its past records count), and addresses the host by its new key.
        for n in nodes[1:]:
            await until(lambda n=n: new in n.trust_set(), "the successor honoured")
            assert n.trust_set().successors.get(old) == new
        await until(lambda: all(any(p.key == new for p in n.peers()) for n in nodes[1:]),
                    "every peer row re-keyed to the new key")  # fmt: skip
        assert not any(p.key == old for n in nodes for p in n.peers())
        await until(lambda: not host.rotating, "requests signed by the new key")
        # Then the host revokes its old key (signed by the new one: review finding 8) and
        # deletes it; the old key's records stay trusted (signed before the revocation).
        await until(lambda: all(old in n.trust_set().revoked for n in nodes), "old revoked")
        await until(lambda: not (host.home / RETIRED_DIR / f"{old}.key").exists(),
                    "the retired key deleted")  # fmt: skip
        assert not (host.home / RETIRED_DIR / f"{old}.crt").exists()
        assert all(n.trust_set().successors.get(old) == new for n in nodes)
        # A few more rounds everywhere, now with the new key on both sides.
        for _ in range(3):
            reports = await asyncio.gather(*(n.sync_now() for n in nodes))
            assert sum(r.failures for r in reports) == 0
        await failures.stop()
        assert failures.seen == []
        memories = nodes[3].recall("written")
        assert {m.author for m in memories} == {old, new} and all(m.trusted for m in memories)


async def test_a_rotation_made_while_stopped_fails_no_exchange_after_restart(tmp_path: Path):
    """`gossip key rotate` without a daemon: at the next start the node resumes the
    grace (answers to, and signs with, the old key until each peer holds the successor)."""
    homes = [tmp_path / f"n{i}" for i in range(3)]
    await asyncio.to_thread(create_hosts, homes)
    ports = [free_port() for _ in homes]

    async def run(check) -> None:
        async with contextlib.AsyncExitStack() as stack:
            nodes = []
            for i, home in enumerate(homes):
                peers = [f"127.0.0.1:{p}" for p in ports if p != ports[i]]
                node = Node(home, listen=f"127.0.0.1:{ports[i]}", peers=peers, profile=FAST)
                failures.watch(await stack.enter_async_context(node))
                nodes.append(node)
            await check(nodes)

    failures = Failures()

    async def formed(nodes: list[Node]) -> None:
        await mesh(nodes)

    await run(formed)
    await failures.stop()
    with Replica.open(homes[0]) as r:  # stopped: the command rotates the data dir
        old = r.author
        r.rotate(Identity.generate())
        new = r.author
    failures = Failures()

    async def after(nodes: list[Node]) -> None:
        await nodes[0].remember("after an offline rotation", category="learning")
        await until(lambda: all(recalled_now(n, "after an offline rotation") for n in nodes),
                    "the new key's memory everywhere")  # fmt: skip
        await until(lambda: all(new in n.trust_set() and n.trust_set().successors.get(old) == new
                                for n in nodes), "the successor honoured")  # fmt: skip
        await until(lambda: not nodes[0].rotating, "requests signed by the new key")
        # Over TLS it presented the old key's certificate for the grace, now the new one.
        assert nodes[0].transport.tls.presenting == new
        # After the grace the old key is revoked (by the new one) and deleted.
        await until(lambda: all(old in n.trust_set().revoked for n in nodes), "old revoked")
        assert not list((homes[0] / RETIRED_DIR).iterdir())
        assert all(recalled_now(n, "after an offline rotation") for n in nodes)
        for _ in range(2):
            reports = await asyncio.gather(*(n.sync_now() for n in nodes))
            assert sum(r.failures for r in reports) == 0

    await run(after)
    await failures.stop()
    # Nodes start one by one: "cannot connect" is expected; a refusal (401/403) or an
    # answer we do not believe would be the rotation's fault.
    refused = [f for f in failures.seen
               if f[2] and ("answered 40" in f[2] or "unauthenticated" in f[2])]  # fmt: skip
    assert refused == []


async def test_a_revoked_key_is_refused_everywhere_within_a_few_rounds(tmp_path: Path):
    """The host's key was stolen: it rotates, then revokes the old key (as its successor).
    A thief running a node with the stolen key is refused by every node."""
    async with contextlib.AsyncExitStack() as stack:
        cluster = Cluster("http", tmp_path, stack)
        nodes = await cluster.grow(4)
        await mesh(nodes)
        victim = nodes[3]
        stolen = victim.id
        await victim.remember("before the theft", category="learning")
        key = (victim.home / KEY_FILE).read_bytes()  # the theft (a copy of host.key)
        await victim.rotate_key()
        await victim.revoke(stolen)
        others = nodes[:3]
        await until(lambda: all(stolen not in n.trust_set() and victim.id in n.trust_set()
                                for n in others), "the revocation honoured everywhere")  # fmt: skip
        # The thief: a node of its own, with a copy of the stolen key as its host key.
        thief_home = tmp_path / "thief"
        thief_home.mkdir(mode=0o700)
        create_whole(thief_home / KEY_FILE, lambda tmp: tmp.write_bytes(key))
        thief = Node(thief_home, peers=[n.address for n in others], profile=FAST, advertise=[])
        await stack.enter_async_context(thief)
        report = await thief.sync_now()
        assert report.exchanges == 0 and report.failures == 3
        assert {p.state for p in thief.peers()} == {"unknown-key"}  # 403 from each
        # What the key wrote before its revocation still counts everywhere.
        assert all(recalled_now(n, "before the theft") for n in others)


def recalled_now(node: Node, text: str) -> bool:
    return any(m.text == text for m in node.recall(text))


async def test_invite_and_join_admit_a_host_in_two_steps(tmp_path: Path):
    homes = [tmp_path / n for n in ("a", "b", "d")]
    await asyncio.to_thread(create_hosts, homes)
    async with contextlib.AsyncExitStack() as stack:

        async def start(home: Path, peers: list[str], follow: bool) -> Node:
            node = Node(home, peers=peers, profile=FAST, listen="127.0.0.1:0",
                        follow_vouches=follow)  # fmt: skip
            return await stack.enter_async_context(node)

        a = await start(homes[0], [], False)
        b = await start(homes[1], [a.address], True)  # honours vouches
        d = await start(homes[2], [a.address], False)  # does not
        await mesh([a, b, d])
        newcomer = await start(tmp_path / "c", [], False)
        token = (await a.invite(name="laptop")).encode()
        assert token.startswith("smg1.") and "\n" not in token
        joined = await newcomer.join(token)
        assert joined["inviter"] == a.id
        assert set(joined["trusted"]) == {a.id, b.id, d.id}  # the inviter's circle
        assert newcomer.id in a.trust_set() and a.keyring()[newcomer.id] == "laptop"
        await newcomer.remember("a lesson from the newcomer", category="learning")
        await until(lambda: recalled_now(b, "a lesson from the newcomer"), "b trusts the vouch")
        await until(lambda: recalled_now(a, "a lesson from the newcomer"), "a has it")
        await until(lambda: any(m.text == "a lesson from the newcomer"
                                for m in d.recall("newcomer", include_untrusted=True)),
                    "d holds it")  # fmt: skip
        assert newcomer.id not in d.trust_set() and not recalled_now(
            d, "a lesson from the newcomer"
        )
        # Single use: another host presenting the same token is refused, and trusts nobody.
        other = await start(tmp_path / "e", [], False)
        with pytest.raises(InviteError, match="already used"):
            await other.join(token)
        assert a.id not in other.trust_set()
        # Expired, and damaged, tokens fail before any network.
        late = await a.invite(ttl=0.001)
        await asyncio.sleep(0.01)
        with pytest.raises(InviteError, match="expired"):
            await other.join(late.encode())
        with pytest.raises(InviteError, match="damaged"):
            await other.join(token[:-6])


def test_invitations_refuse_expired_wrong_and_reused_proofs(tmp_path: Path):
    inviter = Identity.generate().public_id
    joiner_key, thief_key = Identity.generate(), Identity.generate()
    joiner, thief = joiner_key.public_id, thief_key.public_id
    store = Invitations(tmp_path)
    tok = store.issue(inviter, ["127.0.0.1:7471"], now=T, ttl_s=60)
    assert stat.S_IMODE((tmp_path / "invites.json").stat().st_mode) == 0o600
    assert decode(tok.encode()) == tok and tok.secret not in repr(tok)
    with pytest.raises(InviteError, match="expired"):
        store.redeem(inviter, joiner, join_body(tok, joiner_key, "j"), now=T + 61_000)
    # The proof is bound to the joiner's key: a thief replaying it under its own key fails.
    with pytest.raises(InviteError, match="does not match"):
        store.redeem(inviter, thief, join_body(tok, joiner_key, "j"), now=T)
    # A proof that is not ASCII is a wrong proof, not a TypeError (second review, LOW).
    with pytest.raises(InviteError, match="does not match"):
        store.redeem(
            inviter,
            joiner,
            json.dumps({"id": tok.id, "proof": "é" * 43, "name": "j"}).encode(),
            now=T,
        )
    # The joiner's acceptance of the inviter must be there and must be its own.
    for accept in (None, "A" * 86, json.loads(join_body(tok, thief_key, "t"))["accept"]):
        body = {**json.loads(join_body(tok, joiner_key, "j")), "accept": accept}
        with pytest.raises(InviteError, match="does not accept"):
            store.redeem(inviter, joiner, json.dumps(body).encode(), now=T)
    answer = store.redeem(inviter, joiner, join_body(tok, joiner_key, "j"), now=T)
    assert answer["name"] == "j" and answer["replay"] is False
    assert records.accepts(records.KIND_VOUCH, inviter, joiner, answer["accept"])
    with pytest.raises(InviteError, match="already used"):
        store.redeem(inviter, thief, join_body(tok, thief_key, "t"), now=T)


def test_a_used_invitation_replays_to_its_joiner_only_briefly_and_never_after_expiry(
    tmp_path: Path,
):
    """Review finding 5: the joiner that used an invitation was let through again for
    ever, with no expiry check; the node re-trusted and re-vouched it each time."""
    from gossip.invites import REPLAY_MS

    inviter, joiner_key = Identity.generate().public_id, Identity.generate()
    joiner = joiner_key.public_id
    store = Invitations(tmp_path)
    tok = store.issue(inviter, ["127.0.0.1:7471"], now=T, ttl_s=3600)
    body = join_body(tok, joiner_key, "j")
    assert store.redeem(inviter, joiner, body, now=T)["replay"] is False
    assert store.redeem(inviter, joiner, body, now=T + REPLAY_MS)["replay"] is True
    with pytest.raises(InviteError, match="already used"):
        store.redeem(inviter, joiner, body, now=T + REPLAY_MS + 1)
    short = store.issue(inviter, ["127.0.0.1:7471"], now=T, ttl_s=1)
    body = join_body(short, joiner_key, "j")
    store.redeem(inviter, joiner, body, now=T + 500)
    with pytest.raises(InviteError, match="expired"):
        store.redeem(inviter, joiner, body, now=T + 1000)


def test_peer_rows_take_the_successors_key_and_merge():
    from gossip.peers import PeerTable

    table = PeerTable("me", backoff_base_ms=50, backoff_cap_ms=1000)
    row = table.add(["10.0.0.2:7471"], "static", key="old")
    assert table.rekey("old", "new") is row and row.key == "new"
    # The new key's announcement already made a row: the old key's row merges into it.
    table.add(["10.0.0.3:7471"], "exchange", key="older")
    merged = table.rekey("older", "new")
    assert merged is row and table.by_key("older") is None and len(table) == 1
    assert set(row.addresses) == {"10.0.0.2:7471", "10.0.0.3:7471"}
    assert "static" in row.sources and "exchange" in row.sources
    table.add(["10.0.0.4:7471"], "static", key="mine-before")
    assert table.rekey("mine-before", "me") is None and len(table) == 1  # ourselves


async def test_hostile_join_requests_get_4xx_and_admit_nobody(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The join endpoint is the one a stranger may call: junk, oversized bodies, wrong
    proofs and other keys' proofs are 4xx, and the keyring never changes. Deeply nested
    JSON is a plain 400 too, with no traceback in the log (review finding 9: it raised
    RecursionError, logged with a traceback per request)."""
    import time as _time

    from gossip.transport import JOIN_PATH, PeerRefused

    async with Node(tmp_path / "inviter", profile=FAST) as inviter:
        token = await inviter.invite()
        before = inviter.keyring()
        other = Identity.generate()

        def now() -> int:
            return _time.time_ns() // 1_000_000

        client = stranger_transport(tmp_path / "stranger", {inviter.id}, now)
        stranger = client.identity
        async with client:
            bodies = [
                b"", b"not json", b"[]", b'{"id": 1, "proof": 2}', b"{" * 3000,
                b'{"id": "AAAAAAAAAAAA", "proof": "x"}', b"x" * 5000,
                join_body(token, other, "borrowed proof"),
                join_body(dataclasses.replace(token, secret="A" * 43), stranger,
                          "wrong secret"),
            ]  # fmt: skip
            for body in bodies:
                with pytest.raises(PeerRefused) as refused:
                    await client.request(inviter.address, JOIN_PATH, body,
                                         expected_key=inviter.id)  # fmt: skip
                assert 400 <= refused.value.status < 500, (body[:40], refused.value)
            # A key gets 8 join requests a window: another stranger sends these.
            async with stranger_transport(tmp_path / "other", {inviter.id}, now) as another:
                for body in (b"[" * 4000, b'{"id": "A", "proof": ' + b"[" * 4000):
                    with pytest.raises(PeerRefused) as refused:
                        await another.request(inviter.address, JOIN_PATH, body,
                                              expected_key=inviter.id)  # fmt: skip
                    assert refused.value.status == 400
                    assert "join request" in str(refused.value)
            # A stranger is still refused everywhere else.
            with pytest.raises(PeerRefused) as refused:
                await client.request(inviter.address, "/v1/sync", b"\x00",
                                     expected_key=inviter.id)  # fmt: skip
            assert refused.value.status == 403
        assert inviter.keyring() == before and stranger.public_id not in inviter.trust_set()
        assert [r.getMessage() for r in caplog.records if r.exc_info] == []
        # The real proof still works afterwards (nothing used the invitation up).
        async with Node(tmp_path / "joiner", profile=FAST) as joiner:
            assert (await joiner.join(token.encode()))["inviter"] == inviter.id


async def test_a_join_flood_by_strangers_never_blocks_the_trusted_peers(tmp_path: Path):
    """Review finding 4: join requests (any key may sign one) used to fill the one nonce
    cache that every exchange needs; once full, the trusted peers' requests got 401. They
    now have a small cache of their own, a few nonces per key and a few dozen per sender
    address."""
    from gossip.transport import JOIN_PATH, PeerRefused
    from gossip.transport.auth import JOIN_NONCES_PER_KEY, JOIN_NONCES_PER_SOURCE

    async with contextlib.AsyncExitStack() as stack:
        cluster = Cluster("http", tmp_path, stack)
        a, b = await cluster.grow(2)
        await mesh([a, b])
        shared = a.verifier.nonces
        shared.max_entries = len(shared) + 50  # the real cache, made small enough to fill
        made = iter(range(1000))

        async def join_status(client: Any) -> int:
            with pytest.raises(PeerRefused) as refused:
                await client.request(a.address, JOIN_PATH, b"{}", expected_key=a.id)
            return refused.value.status

        def stranger() -> Any:
            return stranger_transport(tmp_path / f"s{next(made)}", {a.id}, a._now_ms)

        async with stranger() as client:
            # One key gets a few: then 401, whatever the body.
            statuses = [await join_status(client) for _ in range(JOIN_NONCES_PER_KEY + 3)]
        assert statuses == [400] * JOIN_NONCES_PER_KEY + [401] * 3
        # Fresh keys, one request each: signed and fresh, so read (and refused as a
        # join, 400) until this address used its share of the window; then 401.
        fresh = JOIN_NONCES_PER_SOURCE - JOIN_NONCES_PER_KEY - 3  # what is left
        statuses = []
        for _ in range(fresh + 5):
            async with stranger() as client:
                statuses.append(await join_status(client))
        assert statuses == [400] * fresh + [401] * 5
        assert len(a.verifier.join_nonces) == JOIN_NONCES_PER_KEY + fresh
        for _ in range(3):  # the trusted peers still exchange, both ways
            assert (await b.sync_now()).failures == 0
            assert (await a.sync_now()).failures == 0


async def test_a_member_cannot_revoke_another_by_vouching_for_it_first(tmp_path: Path):
    """Review finding 1: m, trusted like everyone, published vouch(b) and then
    revoke(b, retroactive); every node (follow_vouches off) revoked b, and b's exchanges
    got 403. A voucher now has authority only over a key that accepted it as inviter
    (and only where vouches alone made it trusted), never over a keyring key."""
    async with contextlib.AsyncExitStack() as stack:
        cluster = Cluster("http", tmp_path, stack)
        a, b, m = await cluster.grow(3)
        await mesh([a, b, m])
        await b.remember("b's lesson", category="learning")
        await m.write_record(lambda i, now: records.vouch(i, b.id, ts=now))
        with pytest.raises(GossipError, match="cannot revoke"):  # m's node says no ...
            await m.revoke(b.id, retroactive=True)
        # ... so m signs the revoke by hand (a hostile member would).
        rid = (await m.write_record(
            lambda i, now: records.revoke(i, b.id, ts=now, retroactive=True))).id  # fmt: skip
        assert b.id not in m.trust_set()  # m's own decision, in its own eyes only

        async def holds(node: Node) -> bool:
            return rid in await node.records()

        await until(lambda: holds(a), "a holds m's revoke of b")
        await until(lambda: holds(b), "b holds m's revoke of itself")
        assert b.id in a.trust_set() and not a.trust_set().revoked
        assert recalled_now(a, "b's lesson")
        for _ in range(2):  # a and b still exchange: no 403
            assert (await a.sync_with(b.address)).failures == 0
            assert (await b.sync_with(a.address)).failures == 0


async def test_a_removed_joiner_cannot_readmit_itself_with_its_old_token(tmp_path: Path):
    """Review finding 5: a removed (or revoked) joiner presenting its token again was
    trusted again, and each retry published another vouch."""
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(Node(tmp_path / "a", profile=FAST))
        j = await stack.enter_async_context(Node(tmp_path / "j", profile=FAST))
        token = (await a.invite(name="j")).encode()

        async def vouches() -> int:
            recs = (await a.records()).values()
            return sum(1 for r in recs if r.kind == "vouch" and r.fields.get("key") == j.id)

        await j.join(token)
        assert j.id in a.keyring() and await vouches() == 1
        await j.join(token)  # its answer was lost: the same answer, nothing new
        assert await vouches() == 1
        assert a.distrust(j.id)
        with pytest.raises(InviteError, match="removed"):
            await j.join(token)
        assert j.id not in a.keyring() and j.id not in a.trust_set()
        assert await vouches() == 1


async def test_concurrent_invitations_and_redemptions_all_succeed(tmp_path: Path):
    """Review finding 6: invites.json was read-modified-written without a lock through
    one staging file: 20 concurrent invites gave 18 FileNotFoundErrors, 10 concurrent
    POST /v1/invitations 7 HTTP 500s."""
    from tests.test_api import served

    home = tmp_path / "a"
    await asyncio.to_thread(create_hosts, [home])
    async with served(home) as s:
        tokens = await asyncio.gather(*(s.node.invite(name=f"n{i}") for i in range(20)))
        answers = await asyncio.gather(
            *(s.call("POST", "/v1/invitations", json={"name": f"api{i}"}) for i in range(10))
        )
        assert [status for status, _ in answers] == [201] * 10
        stored = Invitations(home)._load()
        assert {t.id for t in tokens} | {decode(b["token"]).id for _, b in answers} == set(stored)
        assert not list(home.glob("invites.json.next*"))
        # Ten redemptions at once (straight on the file, from threads): each its own.
        joiners = [Identity.generate() for _ in range(10)]
        now = s.node.now_ms()
        store = Invitations(home)
        done = await asyncio.gather(*(
            asyncio.to_thread(store.redeem, s.node.id, j.public_id, join_body(t, j, ""), now=now)
            for t, j in zip(tokens, joiners, strict=False)
        ))  # fmt: skip
        assert [d["replay"] for d in done] == [False] * 10
        stored = Invitations(home)._load()
        assert {stored[t.id]["used_by"] for t in tokens[:10]} == {j.public_id for j in joiners}


async def test_a_joiner_gets_the_inviters_keyring_not_the_keys_it_follows(tmp_path: Path):
    """Review finding 10: the join answer named every key the inviter trusted, keys it
    trusts only through someone's vouch (follow_vouches) included, and the joiner put
    them all in its keyring, whatever its own follow_vouches."""
    from tests.forge import Writer

    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(Node(tmp_path / "a", profile=FAST, follow_vouches=True))
        member, guest = Writer(), Identity.generate()
        a.trust(member.id, "member")
        outcomes = await a.offer(
            [member.put(records.vouch(member.identity, guest.public_id, ts=T)).raw], source="t"
        )
        assert [o.status for o in outcomes] == ["applied"]
        assert guest.public_id in a.trust_set() and guest.public_id not in a.keyring()
        j = await stack.enter_async_context(Node(tmp_path / "j", profile=FAST))
        joined = await j.join((await a.invite()).encode())
        assert set(joined["trusted"]) == {a.id, member.id}
        assert guest.public_id not in j.keyring() and guest.public_id not in j.trust_set()


async def test_revoking_the_old_key_retroactively_keeps_the_new_key_trusted(tmp_path: Path):
    """Review finding 3c: the owner's documented remedy after a theft, `gossip trust
    remove OLD --retroactive` on the rotated host, cut the old key's successor edge too:
    the new key became untrusted on every peer."""
    async with contextlib.AsyncExitStack() as stack:
        cluster = Cluster("http", tmp_path, stack)
        nodes = await cluster.grow(3)
        await mesh(nodes)
        victim, others = nodes[2], nodes[:2]
        stolen = victim.id
        await victim.remember("written by the stolen key", category="learning")
        await victim.rotate_key()
        rid = await victim.revoke(stolen, retroactive=True)

        async def holds(node: Node) -> bool:
            return rid in await node.records()

        for n in others:
            await until(lambda n=n: holds(n), "the retroactive revoke everywhere")
            trust = n.trust_set()
            assert stolen not in trust and victim.id in trust
            assert trust.cutoffs[stolen] == -1 and not recalled_now(n, "written by the stolen key")
        await victim.remember("written by the new key", category="learning")
        await until(lambda: all(recalled_now(n, "written by the new key") for n in others),
                    "the new key's memory trusted everywhere")  # fmt: skip
        # Until its grace ends the victim presents the old key's certificate, which peers
        # honouring the revocation refuse (docs/cli.md, `key rotate`); then all is well.
        await until(lambda: not victim.rotating, "the victim's grace over")
        for n in others:
            assert (await n.sync_with(victim.address)).failures == 0


async def proved_key(address: str, context: Any) -> str | None:
    """Open one TLS connection to ``address`` with a node's pinned client context (the
    pin is checked inside the handshake) and return the key the server proved."""
    from gossip.transport.http import split_address
    from gossip.transport.tls import peer_key

    host, port = split_address(address)
    _, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        return peer_key(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


async def test_over_tls_a_rotated_host_is_reached_during_and_after_its_grace(tmp_path: Path):
    """The host presents its old key's certificate until every live peer holds the
    successor record; a peer that knows the successor addresses the new key and accepts
    the old key's certificate as its honoured predecessor; after the grace the host
    presents the new key. A man in the middle with a third key (one the peer even
    trusts) is refused during the grace, before a byte of the request is sent."""
    from gossip.protocol import SYNC_PATH, Message, MessageType
    from gossip.transport import PeerMisbehaved
    from gossip.transport.tls import PeerKeyMismatch, PinnedTls
    from tests.test_tls import QUIET, Tap

    names = ("a", "b", "c", "mallory")
    homes = [tmp_path / n for n in names]
    await asyncio.to_thread(create_hosts, homes)  # all four trust each other
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(Node(homes[0], listen="127.0.0.1:0", profile=QUIET))
        b = await stack.enter_async_context(
            Node(homes[1], listen="127.0.0.1:0", peers=[a.address], profile=QUIET)
        )
        c = Node(homes[2], listen="127.0.0.1:0", peers=[a.address], profile=QUIET)
        await c.__aenter__()
        for _ in range(3):
            for n in (a, b, c):
                assert (await n.sync_now()).failures == 0
        await mesh([a, b, c])
        assert a.transport.mode == b.transport.mode == "tls"
        c_address = c.address
        await c.aclose()  # away during the rotation: the grace stays open for it

        old = a.id
        new = await a.rotate_key()
        a_tls, b_tls = a.transport.tls, b.transport.tls
        assert isinstance(a_tls, PinnedTls) and isinstance(b_tls, PinnedTls)
        assert a_tls.presenting == old and a.rotating
        assert (homes[0] / "retired" / f"{old}.crt").exists()
        assert stat.S_IMODE((homes[0] / "retired" / f"{old}.crt").stat().st_mode) == 0o600
        await until(lambda: new in b.trust_set(), "b honours the successor")
        await until(lambda: any(p.key == new for p in b.peers()), "b addresses the new key")
        ring = b.transport.verifier.keyring
        # During the grace: b pins the new key and accepts the old key's certificate.
        assert await proved_key(a.address, b_tls.client(new, ring)) == old
        report = await b.sync_now()  # with a (and c, which is away: that one fails)
        assert report.exchanges == 1
        (row,) = [p for p in b.peers() if p.key == new]
        assert row.state == ALIVE and row.address == a.address
        assert a.rotating  # c has not confirmed: still in the grace
        # A man in the middle with a third key, one b trusts: refused in the handshake.
        mallory_id = Identity.load(homes[3]).public_id
        assert mallory_id in b.trust_set()
        mallory = PinnedTls.for_host(homes[3], Identity.load(homes[3]))
        async with Tap(ssl_context=mallory.server) as mitm:
            with pytest.raises(PeerMisbehaved, match=r"not .* the peer we meant to reach"):
                await b.transport.request(mitm.address, SYNC_PATH,
                                          Message(MessageType.SYNC).encode(),
                                          expected_key=new)  # fmt: skip
            with pytest.raises(PeerKeyMismatch):  # nor for the old key
                await proved_key(mitm.address, b_tls.client(old, ring))
            assert bytes(mitm.seen) == b""

        # c comes back, learns the successor from a (still presenting the old key,
        # which c pins), and confirms it; then a's grace ends.
        c = await stack.enter_async_context(
            Node(homes[2], listen=c_address, peers=[a.address], profile=QUIET)
        )
        await until(lambda: new in c.trust_set(), "c honours the successor")
        assert (await c.sync_now()).failures == 0
        await a.sync_now()
        await until(lambda: not a.rotating, "every peer holds the successor")
        assert a_tls.presenting == new
        # After the grace: new connections prove the new key, and both peers reach a.
        assert await proved_key(a.address, b_tls.client(new, ring)) == new
        for n in (a, b, c):
            r = await n.sync_now()
            assert r.failures == 0, (n.id, r)
        # The pin never runs backwards: a peer pinning the old key refuses the new one's
        # certificate (a key's successor is not a key it accepts in its place).
        with pytest.raises(PeerKeyMismatch):
            await proved_key(a.address, b_tls.client(old, ring))


def test_the_tls_binding_accepts_a_key_and_its_honoured_successor_only():
    """Server side: the request's signing key and the TLS client key are the same key,
    or one is the other's honoured successor (a host in its rotation grace); two
    unrelated keys are refused, whichever is trusted."""
    from gossip.transport.auth import same_peer

    old, new, third, later = (Identity.generate().public_id for _ in range(4))
    successors = {old: new, new: later}
    assert same_peer(old, old, successors)
    assert same_peer(new, old, successors)  # signed by the new key, certificate old
    assert same_peer(old, new, successors)  # signed by the old key, certificate new
    assert not same_peer(third, old, successors) and not same_peer(old, third, successors)
    assert not same_peer(new, third, successors) and not same_peer(third, new, successors)
    assert not same_peer(later, old, successors)  # one step only, not a chain
    assert not same_peer(new, old, {})  # without an honoured successor record


async def test_a_rotation_while_every_peer_is_away_waits_for_them(tmp_path: Path):
    """New-user test, H2: rotating through the daemon while the only peer was down ended
    the grace at once (no live peer left to wait for): the old key was revoked and
    deleted, and the returning peer could never reach this host again."""
    from tests.test_tls import QUIET

    homes = [tmp_path / "p", tmp_path / "q"]
    await asyncio.to_thread(create_hosts, homes)
    async with contextlib.AsyncExitStack() as stack:
        p = await stack.enter_async_context(Node(homes[0], listen="127.0.0.1:0", profile=QUIET))
        q = Node(homes[1], listen="127.0.0.1:0", peers=[p.address], profile=QUIET)
        await q.__aenter__()
        await mesh([p, q])
        q_address = q.address
        await q.aclose()
        old = p.id
        new = await p.rotate_key()
        for _ in range(3):
            await p.sync_now()  # q is down: these fail
        assert p.rotating and (homes[0] / "retired" / f"{old}.key").exists()
        with pytest.raises(GossipError, match="still in its grace"):  # one rotation at a time
            await p.rotate_key()
        q = await stack.enter_async_context(
            Node(homes[1], listen=q_address, peers=[p.address], profile=QUIET)
        )
        await until(lambda: new in q.trust_set(), "q honours the successor")
        assert (await q.sync_now()).failures == 0
        await p.sync_now()
        await until(lambda: not p.rotating, "q holds the successor: the grace ends")
        await until(lambda: not (homes[0] / "retired" / f"{old}.key").exists(), "old key gone")
        for n in (p, q):
            assert (await n.sync_now()).failures == 0
