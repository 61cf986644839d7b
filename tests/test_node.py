"""Node: real clusters over the in-memory network and over HTTP on 127.0.0.1.

Every node has its own data dir (real SQLite), its own replica thread and its own
transport; keys are trusted the way an operator does it (in the store, before start).
Tests wait on conditions with a deadline, never on fixed sleeps, and the ``no_leaks``
fixture fails a test that leaves a task or a socket behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from crdt import GossipError, Identity, Replica, records
from gossip.config import Profile
from gossip.events import BreakerChanged, PeerChanged, RecordAdded
from gossip.node import Node
from gossip.protocol import Message, MessageType
from gossip.transport.auth import Verifier
from gossip.transport.memnet import MemoryNetwork

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = Profile.local()
QUIET = Profile.local().with_(interval=60.0)  # anti-entropy only at start: pushes must do it


async def until(
    condition: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = 15.0
) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def vectors_built(node: Node, timeout: float = 60.0) -> None:
    """Wait until ``node`` holds a vector for every memory: it builds them in the
    background, where a command without a daemon builds them before it answers."""

    def built(r: Replica, v: Any) -> bool:
        held = sum(1 for rec in r.records().values() if rec.kind == records.KIND_MEMORY)
        return v.semantic is None or (len(v.semantic) >= held and not v.semantic.pending())

    await until(lambda: node.query(built), "the node's vectors", timeout=timeout)


def create_hosts(homes: list[Path], trusted: list[Path] | None = None) -> list[str]:
    """Create key and store in each home; each trusts the keys of ``trusted`` (default
    all of ``homes``). Returns the public ids."""
    ids = []
    for home in homes:
        with Replica.open(home) as r:
            ids.append(r.author)
    trusted = homes if trusted is None else trusted
    keys = [ids[homes.index(h)] for h in trusted]
    for home, me in zip(homes, ids, strict=True):
        if home not in trusted:
            continue
        with Replica.open(home) as r:
            for k in keys:
                if k != me:
                    r.trust(k, "peer")
    return ids


class Cluster:
    """Nodes over one kind of network; node 0 is every other node's seed peer."""

    def __init__(self, kind: str, tmp: Path, stack: contextlib.AsyncExitStack) -> None:
        self.kind = kind
        self.tmp = tmp
        self.stack = stack
        self.net = MemoryNetwork() if kind == "memnet" else None
        self.nodes: list[Node] = []

    def options(self) -> dict[str, Any]:
        if self.net is not None:
            return {"listen": "10.0.0.1:0", "transport": self.net.transport}
        return {"listen": "127.0.0.1:0"}

    async def start(
        self, home: Path, *, peers: list[str] | None = None, profile: Profile = FAST
    ) -> Node:
        seed = [self.nodes[0].address] if peers is None and self.nodes else (peers or [])
        node = Node(home, peers=seed, profile=profile, **self.options())
        await self.stack.enter_async_context(node)
        self.nodes.append(node)
        return node

    async def grow(self, n: int, *, profile: Profile = FAST) -> list[Node]:
        homes = [self.tmp / f"n{i}" for i in range(n)]
        await asyncio.to_thread(create_hosts, homes)
        first = await self.start(homes[0], profile=profile)
        rest = await asyncio.gather(*(self.start(h, profile=profile) for h in homes[1:]))
        return [first, *rest]


@pytest.fixture(params=["memnet", "http"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        yield Cluster(request.param, tmp_path, stack)


async def recalled(node: Node, text: str) -> bool:
    return any(m.text == text for m in node.recall(text))


async def everywhere(nodes: list[Node], check: Callable[[Node], Awaitable[bool]]) -> bool:
    return all(await asyncio.gather(*(check(n) for n in nodes)))


# -- replication -------------------------------------------------------------------------


async def test_memory_and_breaker_reach_every_node(cluster: Cluster):
    nodes = await cluster.grow(3)
    text = "Provider X drops requests at 03:00 UTC"
    rid = await nodes[2].remember(text, category="anti-pattern", subject="provider:x",
                                  tags=["outage"])  # fmt: skip
    await until(lambda: everywhere(nodes, lambda n: recalled(n, text)), "the memory everywhere")
    hit = nodes[0].recall("provider x")[0]
    assert (hit.id, hit.author, hit.trusted, hit.tags) == (rid, nodes[2].id, True, ["outage"])

    await nodes[1].trip_breaker("kimi-coding/k2p5", reason="5xx burst", cooldown=600)

    async def is_open(n: Node) -> bool:
        return n.breaker("kimi-coding/k2p5").state == "open"

    await until(lambda: everywhere(nodes, is_open), "the breaker open everywhere")
    assert nodes[0].breaker("kimi-coding/k2p5").tripped_by == [nodes[1].id]
    await nodes[1].reset_breaker("kimi-coding/k2p5")
    await until(
        lambda: everywhere(nodes, lambda n: _not(is_open(n))), "the breaker closed everywhere"
    )
    await nodes[0].record_benchmark("kimi-coding/k2p5", "latency_ms", 812.0, unit="ms")

    async def has_bench(n: Node) -> bool:
        b = n.benchmark("kimi-coding/k2p5", "latency_ms")
        return b is not None and b.values == {"value": 812.0}

    await until(lambda: everywhere(nodes, has_bench), "the benchmark everywhere")
    # Peer exchange: each node found the other two through host announcements.
    await until(
        lambda: all(
            sorted(p.key for p in n.peers() if p.state == "alive")
            == sorted(m.id for m in nodes if m is not n)
            for n in nodes
        ),
        "every node alive in every peer table",
    )
    row = next(p for p in nodes[1].peers() if p.key == nodes[0].id)
    assert row.source == "static" and row.rtt_ms is not None and row.bytes_out > 0
    assert {p.source for p in nodes[2].peers() if p.key == nodes[1].id} == {"exchange"}


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


async def test_peer_exchange_along_a_chain(cluster: Cluster):
    """A knows only B, B knows only C: A learns C from C's announcement (relayed by B)
    and exchanges with it directly within a few rounds; C learns A the same way."""
    homes = [cluster.tmp / n for n in ("a", "b", "c")]
    await asyncio.to_thread(create_hosts, homes)
    c = await cluster.start(homes[2], peers=[])
    b = await cluster.start(homes[1], peers=[c.address])
    a = await cluster.start(homes[0], peers=[b.address])

    def direct(x: Node, y: Node) -> bool:
        return any(p.key == y.id and p.exchanges > 0 for p in x.peers())

    started = time.monotonic()
    await until(lambda: direct(a, c) and direct(c, a), "a and c exchanging directly", 10)
    rounds = (time.monotonic() - started) / FAST.interval
    assert rounds < 25, f"took {rounds:.0f} rounds"
    (row,) = [p for p in a.peers() if p.key == c.id]
    assert row.source == "exchange" and row.address == c.address
    assert [p.key for p in a.peers() if "static" in p.sources] == [b.id]


async def test_a_static_peer_given_by_name(tmp_path: Path):
    """``peers = ["localhost:port"]``: the transport resolves the name at each new
    connection (no DNS cache), so a peer that moves is found again."""
    homes = [tmp_path / "a", tmp_path / "b"]
    await asyncio.to_thread(create_hosts, homes)
    async with Node(homes[0], profile=FAST) as a:
        port = a.address.rpartition(":")[2]
        async with Node(homes[1], peers=[f"localhost:{port}"], profile=FAST) as b:
            await a.remember("reached by name")
            await until(lambda: recalled(b, "reached by name"), "the memory at b")
            (row,) = [p for p in b.peers() if p.key == a.id]
            assert f"localhost:{port}" in row.addresses and row.sources[0] == "static"


async def test_eager_push_does_not_wait_for_the_interval(cluster: Cluster):
    nodes = await cluster.grow(3, profile=QUIET)
    await until(  # the rounds at start have run: pushes go only to peers that answered
        lambda: all(sum(p.state == "alive" for p in n.peers()) == 2 for n in nodes),
        "first rounds",
    )
    started = time.monotonic()
    await nodes[1].trip_breaker("provider:x", reason="timeouts")

    async def is_open(n: Node) -> bool:
        return n.breaker("provider:x").state == "open"

    await until(lambda: everywhere(nodes, is_open), "the breaker pushed everywhere", timeout=10)
    assert time.monotonic() - started < QUIET.interval / 2


async def test_sync_now_runs_a_round_at_once(cluster: Cluster):
    still = QUIET.with_(eager_push=False)
    nodes = await cluster.grow(2, profile=still)
    a, b = nodes
    await until(  # both rounds at start are over: nothing else runs for a minute
        lambda: all(n.peers() and n.peers()[0].exchanges for n in nodes), "rounds at start"
    )
    await a.remember("only by sync", category="learning")
    assert not await recalled(b, "only by sync")
    report = await b.sync_now()
    assert report.exchanges == 1 and report.failures == 0 and report.learned == 1
    assert await recalled(b, "only by sync")
    assert (await b.sync_now()).learned == 0


async def test_a_stopped_node_catches_up_from_its_own_data_dir(cluster: Cluster):
    nodes = await cluster.grow(3)
    late = nodes[2]
    await late.remember("written before the stop", category="learning")
    await until(lambda: recalled(nodes[0], "written before the stop"), "the first memory")
    home = late.home
    await late.aclose()
    texts = [f"lesson {i} while it was away" for i in range(5)]
    for t in texts:
        await nodes[0].remember(t, category="learning")
    await nodes[1].trip_breaker("b", reason="away")
    back = await cluster.start(home, peers=[nodes[1].address])
    assert back.id == late.id
    assert await recalled(back, "written before the stop")  # its own data, at once

    async def caught_up() -> bool:
        mine = [await recalled(back, t) for t in texts]
        return all(mine) and back.breaker("b").state == "open"

    await until(caught_up, "the restarted node to catch up")
    # The others learn its new address from its announcement, and reach it again.
    await until(
        lambda: all(any(p.key == back.id and p.address == back.address and p.state == "alive"
                        for p in n.peers()) for n in nodes[:2]),
        "the others to reach the restarted node",
    )  # fmt: skip


async def test_a_stopped_node_says_goodbye_and_shows_as_left(cluster: Cluster):
    """Its signed LEAVE: every table shows it ``left`` (not ``down`` for good), what we
    write meanwhile shows as what it lacks, and it is ``alive`` again once back."""
    nodes = await cluster.grow(3)
    gone = nodes[2]
    await until(lambda: all(any(p.key == gone.id and p.state == "alive" for p in n.peers())
                            for n in nodes[:2]), "everyone alive")  # fmt: skip
    home = gone.home
    await gone.aclose()

    def row(n: Node) -> Any:
        return next(p for p in n.peers() if p.key == gone.id)

    assert {row(n).state for n in nodes[:2]} == {"left"}
    assert row(nodes[0]).reason == "it said goodbye (stopped)"
    before = row(nodes[0]).they_lack
    for i in range(3):
        await nodes[0].remember(f"written while it is away {i}", category="learning")
    lacks = row(nodes[0]).they_lack
    assert before is not None and lacks is not None and lacks > before, (before, lacks)
    await asyncio.sleep(FAST.backoff_cap * 1.5)  # its retries fail: still left
    assert row(nodes[0]).state == "left"
    back = await cluster.start(home, peers=[nodes[0].address])
    await until(lambda: row(nodes[0]).state == "alive", "alive again once back")
    await until(lambda: row(nodes[0]).they_lack == 0, "no lag once it caught up")
    assert back.id == gone.id


async def test_an_untrusted_node_learns_nothing_and_changes_nothing(cluster: Cluster):
    nodes = await cluster.grow(2)
    await nodes[0].remember("for trusted eyes", category="contract")
    outsider_home = cluster.tmp / "outsider"
    (outsider,) = await asyncio.to_thread(create_hosts, [outsider_home], [])
    # The outsider knows the insiders' keys and addresses; they do not know its key.
    with Replica.open(outsider_home) as r:
        for n in nodes:
            r.trust(n.id, "target")
    # The insiders in sync first (the eager push of the memory may still be in flight).
    await until(lambda: all(n.recall("for trusted eyes") for n in nodes), "the push")
    before = [await n.state_vector() for n in nodes]
    records_before = [set(await n.records()) for n in nodes]
    o = await cluster.start(outsider_home, peers=[n.address for n in nodes])
    await o.remember("poison: everything is fine", category="learning")
    await o.trip_breaker("kimi-coding/k2p5", reason="fake")
    await until(
        lambda: sorted(p.state for p in o.peers()) == ["unknown-key", "unknown-key"],
        "the outsider refused by both",
    )
    assert all("403" in (p.last_error or "") for p in o.peers())
    await asyncio.gather(*(n.sync_now() for n in nodes))
    assert [await n.state_vector() for n in nodes] == before
    assert [set(await n.records()) for n in nodes] == records_before
    for n in nodes:
        assert not n.recall("poison", include_untrusted=True)
        assert all(p.key != outsider for p in n.peers())
    assert set(await o.records()) == {m.id for m in o.recall("poison")}


async def test_a_peer_whose_key_we_do_not_trust_is_marked_unknown_key(cluster: Cluster):
    """The reverse: b trusts a, a does not trust b. b's 401 names its key, which a does
    not trust: a signs nothing for it and the row is unknown-key (``PeerUntrusted``)."""
    homes = [cluster.tmp / "a", cluster.tmp / "b"]
    a_id, b_id = await asyncio.to_thread(create_hosts, homes, [homes[0]])
    with Replica.open(homes[1]) as r:
        r.trust(a_id, "a")
    b = await cluster.start(homes[1])
    a = await cluster.start(homes[0], peers=[b.address])
    await until(lambda: [p.state for p in a.peers()] == ["unknown-key"], "a refusing b's key")
    assert "not in our keyring" in (a.peers()[0].last_error or "")
    a.trust(b_id, "b")
    await a.sync_now()
    assert [p.state for p in a.peers()] == ["alive"]


async def test_a_peer_that_does_not_trust_us_is_marked_unknown_key(cluster: Cluster):
    homes = [cluster.tmp / "a", cluster.tmp / "b"]
    a_id, b_id = await asyncio.to_thread(create_hosts, homes, [homes[0]])
    with Replica.open(homes[0]) as r:  # a trusts b; b trusts nobody
        r.trust(b_id, "b")
    b = await cluster.start(homes[1])
    a = await cluster.start(homes[0], peers=[b.address])
    await until(lambda: [p.state for p in a.peers()] == ["unknown-key"], "a refused by b")
    b.trust(a_id, "a")
    await a.sync_now()
    assert [p.state for p in a.peers()] == ["alive"]


async def test_a_peer_that_sends_rejected_updates_is_backed_off(tmp_path: Path):
    """A trusted key whose server answers every SYNC with junk updates."""
    net = MemoryNetwork()
    forger = Identity.generate()
    home = tmp_path / "honest"
    (me,) = await asyncio.to_thread(create_hosts, [home], [])
    with Replica.open(home) as r:
        r.trust(forger.public_id, "forger")
    verifier = Verifier(lambda: {me}, lambda: time.time_ns() // 1_000_000)
    evil = net.transport(forger, verifier, now_ms=lambda: time.time_ns() // 1_000_000)

    async def answer(path: str, body: bytes, key: str) -> bytes:
        if Message.decode(body).type is MessageType.PUSH:
            return Message(MessageType.PUSH_REPLY, {}).encode()
        junk = (b"\x00" * 40, b"not an update at all")
        return Message(MessageType.SYNC_REPLY, {}, junk).encode()

    address = await evil.start("10.0.0.9:7471", answer)
    try:
        async with Node(home, peers=[address], profile=FAST, **{"transport": net.transport,
                        "listen": "10.0.0.1:0"}) as node:  # fmt: skip
            await until(lambda: node.peers()[0].failures > 0, "the forger backed off")
            assert node.peers()[0].state in ("suspect", "down")
            row = node.peers()[0]
            assert row.key == forger.public_id, row.last_error
            assert "2 update(s) we rejected" in (row.last_error or "")
            assert await node.records() == {}
    finally:
        await evil.close()


async def test_unreachable_peer_backs_off_and_reads_stay_fast(cluster: Cluster):
    gone = "10.0.0.1:1" if cluster.kind == "memnet" else "127.0.0.1:9"  # nobody listens
    home = cluster.tmp / "solo"
    node = await cluster.start(home, peers=[gone])
    await until(lambda: node.peers()[0].failures > 0, "a backed-off peer")
    assert node.peers()[0].state in ("suspect", "down")
    row = node.peers()[0]
    assert row.failures >= 1 and row.last_error and row.key is None and row.source == "static"
    started = time.monotonic()
    await node.remember("written while a peer is dead", category="learning")
    assert await recalled(node, "written while a peer is dead")
    assert time.monotonic() - started < 1.0


@contextlib.asynccontextmanager
async def replica_thread_held(node: Node) -> AsyncIterator[None]:
    """The node's replica thread busy (as with a huge ingest) until the block ends."""
    holding, gate = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        gate.wait(10)

    stuck = node._worker.submit(hold)  # type: ignore[union-attr]
    try:
        await asyncio.to_thread(holding.wait, 5)
        yield
    finally:
        gate.set()
        await asyncio.wrap_future(stuck)


async def test_reads_never_wait_for_the_replica_and_degrade_when_views_are_stuck(
    tmp_path: Path,
):
    async with Node(tmp_path / "n", profile=FAST, read_timeout=0.2) as node:
        await node.remember("visible when idle", category="learning")
        # Hold the replica's thread, as a huge ingest would: reads do not wait for it.
        async with replica_thread_held(node):
            assert [m.text for m in node.recall("visible")] == ["visible when idle"]

        # The views themselves held (a change stuck mid-record): empty after read_timeout.
        held, release = threading.Event(), threading.Event()

        def hold_views() -> None:
            with node._views.lock:  # type: ignore[union-attr]
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_views)
        holder.start()
        started = time.monotonic()
        try:
            await asyncio.to_thread(held.wait, 5)
            assert node.recall("visible") == []
            assert node.breaker("x").state == "unknown"
            assert time.monotonic() - started < 2.0
        finally:
            release.set()
            holder.join(10)
        assert await recalled(node, "visible when idle")


# -- the embedding surface ----------------------------------------------------------------


async def test_events_report_records_breakers_and_peers(cluster: Cluster):
    homes = [cluster.tmp / "a", cluster.tmp / "b"]
    await asyncio.to_thread(create_hosts, homes)
    a = await cluster.start(homes[0])
    got: list[Any] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        events = a.events()
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)  # the generator has now registered its queue
        subscribed.set()
        got.append(await first)
        async for event in events:
            got.append(event)

    task = asyncio.create_task(listen())
    await subscribed.wait()
    b = await cluster.start(homes[1])
    rid = await b.remember("an event", category="learning")
    await b.trip_breaker("evt", cooldown=60)
    await until(
        lambda: any(isinstance(e, BreakerChanged) and e.state == "open" for e in got),
        "a breaker event",
    )
    added = [e for e in got if isinstance(e, RecordAdded) and e.root == "records"]
    assert [e.key for e in added] == [rid] and added[0].trusted and added[0].author == b.id
    breaker = next(e for e in got if isinstance(e, BreakerChanged))
    assert (breaker.name, breaker.author, breaker.observed) == ("evt", b.id, "open")
    hosts = [e for e in got if isinstance(e, RecordAdded) and e.kind == "host"]
    assert {e.author for e in hosts} >= {b.id}
    peers = [e for e in got if isinstance(e, PeerChanged)]
    assert peers and peers[0].change == "added" and peers[-1].peer.key == b.id
    await a.aclose()  # the stream ends with the node
    await asyncio.wait_for(task, 5)


async def test_async_with_leaves_no_task_thread_or_socket(cluster: Cluster, tmp_path: Path):
    homes = [tmp_path / "x", tmp_path / "y"]
    await asyncio.to_thread(create_hosts, homes)
    threads_before = set(threading.enumerate())
    async with Node(homes[0], profile=FAST, **cluster.options()) as x:
        async with Node(homes[1], peers=[x.address], profile=FAST, **cluster.options()) as y:
            await x.remember("short-lived", category="learning")
            await until(lambda: recalled(y, "short-lived"), "replication")
            await y.trip_breaker("z")
        address = x.address
    assert set(threading.enumerate()) <= threads_before
    assert not x.running and not y.running
    assert x.recall("short-lived") == []  # degraded, not an exception
    if cluster.kind == "http":
        host, port = address.rsplit(":", 1)
        with pytest.raises(OSError):
            await asyncio.open_connection(host, int(port))
    # The data dir is free again: the writer lock went with the node.
    with Replica.open(homes[0]) as r:
        assert r.records()


def test_start_in_thread_for_synchronous_daemons(tmp_path: Path):
    homes = [tmp_path / "a", tmp_path / "b"]
    create_hosts(homes)
    threads_before = set(threading.enumerate())
    with Node(homes[0], profile=FAST).start_in_thread() as a:
        b = Node(homes[1], peers=[a.address], profile=FAST).start_in_thread()
        with b:
            arrived = threading.Event()

            def watch() -> None:  # a synchronous consumer of b's events
                for event in b.events():
                    if isinstance(event, RecordAdded) and event.kind == "memory":
                        arrived.set()

            watcher = threading.Thread(target=watch)
            watcher.start()
            rid = a.remember("from a synchronous daemon", category="learning")
            assert arrived.wait(15), "replication through threads"
            assert [m.id for m in b.recall("synchronous")] == [rid]
            b.trip_breaker("sync", cooldown=60)
            assert b.breaker("sync").state == "open"
            assert [p.key for p in b.peers()] == [a.id]
            assert b.sync_now().failures == 0
        watcher.join(10)  # b closed: its event stream ended
        assert not watcher.is_alive()
    assert set(threading.enumerate()) <= threads_before


async def test_start_fails_cleanly(tmp_path: Path):
    home = tmp_path / "busy"
    async with Node(home, profile=FAST) as first:
        taken = first.address
        with pytest.raises(OSError):
            async with Node(tmp_path / "other", listen=taken, profile=FAST):
                pass
    # The failed node released its data dir and threads.
    async with Node(tmp_path / "other", profile=FAST) as again:
        assert again.id


# -- a bigger cluster ----------------------------------------------------------------------


@pytest.mark.slow
async def test_sixteen_nodes_over_http(tmp_path: Path):
    async with contextlib.AsyncExitStack() as stack:
        c = Cluster("http", tmp_path, stack)
        nodes = await c.grow(16)
        text = "a lesson for sixteen hosts"
        await nodes[-1].remember(text, category="learning")
        await nodes[7].trip_breaker("mesh", reason="16")

        async def knows(n: Node) -> bool:
            return await recalled(n, text) and n.breaker("mesh").state == "open"

        await until(lambda: everywhere(nodes, knows), "all sixteen nodes", timeout=30)
        await until(
            lambda: all(len([p for p in n.peers() if p.key]) == 15 for n in nodes),
            "every node knows every other through announcements",
            timeout=30,
        )


def test_bad_arguments_are_refused_before_anything_starts(tmp_path: Path):
    from gossip import Node as Exported
    from gossip.config import ConfigError

    assert Exported is Node
    with pytest.raises(ConfigError, match="host:port"):
        Node(tmp_path / "n", listen="localhost")
    with pytest.raises(ConfigError, match="host:port"):
        Node(tmp_path / "n", peers=["nowhere"])
    with pytest.raises(ConfigError, match="unknown profile"):
        Node(tmp_path / "n", profile="wan")
    assert not (tmp_path / "n").exists()


async def test_no_record_is_pushed_to_an_address_that_has_not_proved_its_key(tmp_path: Path):
    """A configured address could be anyone: until it answers signed by a trusted key,
    it gets only a DIGEST (no records), even while a write is pushed eagerly. In plaintext
    mode (the stub speaks plain HTTP); over TLS it gets nothing at all (test_tls.py)."""
    from aiohttp import web

    seen: list[tuple[str, bytes]] = []
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        seen.append((request.path, await request.read()))
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/v1/sync", stall)
    app.router.add_post("/v1/push", stall)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with Node(tmp_path / "a", peers=[f"127.0.0.1:{port}"], profile=QUIET,
                        tls=False) as a:  # fmt: skip
            await until(lambda: seen, "the first round's request")
            await a.remember("launch codes: 0000", category="learning")
            release.set()
            await until(lambda: a.peers()[0].failures > 0, "the stalled exchange to fail")
            assert [path for path, _ in seen] == ["/v1/sync"]
            assert Message.decode(seen[0][1]).type is MessageType.DIGEST
            assert not any(b"launch codes" in body for _, body in seen)
    finally:
        release.set()
        await runner.cleanup()


async def test_trust_on_a_stuck_replica_fails_cleanly_and_changes_nothing(tmp_path: Path):
    other = Identity.generate().public_id
    async with Node(tmp_path / "n", profile=FAST.with_(request_timeout=0.3)) as node:
        async with replica_thread_held(node):
            with pytest.raises(GossipError, match="nothing changed"):
                node.trust(other, "late")
        await node.sync_now()  # the worker has run whatever was queued by now
        assert other not in node.keyring()
        node.trust(other, "now")
        assert node.keyring()[other] == "now"


async def test_sync_with_a_wrong_address_leaves_no_peer_behind(tmp_path: Path):
    from gossip.config import ConfigError

    async with Node(tmp_path / "n", profile=FAST) as node:
        with socket.socket() as s:  # a port nobody listens on (bound, never listening)
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
            report = await node.sync_with(dead)
        assert (report.exchanges, report.failures) == (0, 1)
        assert node.peers() == []  # a typo does not become a peer retried forever
        with pytest.raises(ConfigError, match="port 0"):
            await node.sync_with("127.0.0.1:0")


async def test_a_hung_peer_holds_its_own_exchange_not_the_rounds(tmp_path: Path):
    """A peer that accepts connections and never answers: every exchange with it waits
    for the request timeout (a minute here), but the rounds go on with the other peer."""
    held: list[asyncio.StreamWriter] = []
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    hung = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    homes = [tmp_path / "a", tmp_path / "b"]
    await asyncio.to_thread(create_hosts, homes)
    slow = FAST.with_(request_timeout=60.0, fanout=1, eager_push=False)
    try:
        async with Node(homes[1], listen="127.0.0.1:0", profile=slow) as b:
            first, second = "written before the hung exchange", "written during it"
            await b.remember(first, category="x")
            async with Node(homes[0], listen="127.0.0.1:0", peers=[hung, b.address],
                            profile=slow) as a:  # fmt: skip
                await until(lambda: held, "an exchange with the hung peer")
                assert await until(lambda: recalled(a, first), "the first record", 10)
                await b.remember(second, category="x")
                assert await until(lambda: recalled(a, second), "the second record", 10)
                (row,) = [p for p in a.peers() if p.address == hung]
                assert row.failures == 0, "the hung exchange has not even timed out yet"
    finally:
        release.set()
        server.close()
        await server.wait_closed()
