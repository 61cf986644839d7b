"""`gossip serve`: one node and its local API, in the foreground, until SIGTERM/SIGINT.

It owns the process-level concerns and nothing else: waiting (bounded) for a CLI command
that holds the data dir, starting the node and then the API (a CLI command that finds the
lock held waits for the API to answer), turning node events into the change feed and into
one log line per meaningful event, and shutting down in order on a signal (API first, so
no request meets a closing node, then the node: tasks, sockets, store).

Replication, the gate and the API's rules live elsewhere (node/, crdt/, api/).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdt import GossipError, StoreLocked

from . import config
from .api import API_SOCKET, AgentsApi, LocalApi, read_token
from .api.feed import Feed, event_json
from .api.local import check_socket_path
from .connection import ApiConnection
from .events import BreakerChanged, Event, EventsLost, PeerChanged, RecordAdded, TrustChanged
from .node import Node, NodeConfig

log = logging.getLogger("gossip.serve")

LOCK_WAIT_S = 10.0  # a CLI command holds the data dir for well under this
RECORD_LOG_DELAY = 0.25  # records arriving within this are logged as one line


@dataclass(frozen=True)
class ServeSettings:
    """What `gossip serve` runs: the node's ``NodeConfig`` and the daemon's own
    listeners and waits."""

    home: Path
    node: NodeConfig
    api_listen: str | None = None
    lock_wait: float = LOCK_WAIT_S
    agents_listen: str = ""  # the agents' front door (docs/agents.md); "" for none
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        home: Path,
        *,
        listen: str | None = None,
        peers: list[str] | tuple[str, ...] = (),
        profile: str | None = None,
        mdns: bool | None = None,
        tailnet: bool | None = None,
        api_listen: str | None = None,
        lock_wait: float = LOCK_WAIT_S,
        insecure_plaintext: bool | None = None,
        agents_listen: str | None = None,
    ) -> ServeSettings:
        """Flags over config.toml over defaults (``NodeConfig.resolve`` for the node)."""
        cfg = config.load(home)
        tls = None if insecure_plaintext is None else not insecure_plaintext
        return cls(
            home=home,
            node=NodeConfig.resolve(cfg, listen=listen, peers=peers, profile=profile, mdns=mdns,
                                    tailnet=tailnet, tls=tls),
            api_listen=api_listen,
            lock_wait=lock_wait,
            agents_listen=_agents_address(
                cfg.agents_listen if agents_listen is None else agents_listen),
        )


def _agents_address(address: str) -> str:
    return config.check_address(address) if address else ""


async def open_node(s: ServeSettings) -> Node:
    """A started node; waits up to ``lock_wait`` for a CLI command holding the data dir."""
    deadline = time.monotonic() + s.lock_wait
    said = False
    while True:
        node = Node(s.home, config=s.node)
        try:
            return await node.__aenter__()
        except StoreLocked as e:
            if time.monotonic() >= deadline:
                raise
            api = ApiConnection(s.home, timeout=1.0)
            if await asyncio.to_thread(api.alive, 1.0):  # not a command: another daemon
                who = re.search(r"pid \d+", str(e))
                raise StoreLocked(f"a daemon already serves {s.home}"
                                  + (f" ({who.group(0)})" if who else "")
                                  + ": stop it first, or give this one another --home") from None
            if not said:
                log.info("waiting for the data dir: %s", e)
                said = True
            await asyncio.sleep(0.1)


def discovery_health(node: Node) -> list[dict[str, Any]]:
    """Per discovery source: {source, state, detail} (``Node.discovery``)."""
    return [d.to_json() for d in node.discovery()]


class EventLog:
    """Node events → the change feed, and one log line per meaningful event. Records that
    arrive together are logged as one line with counts."""

    def __init__(self, node: Node, feed: Feed) -> None:
        self.node = node
        self.feed = feed
        self._received: Counter[str] = Counter()
        self._authors: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._names: dict[str, str] = {}

    async def run(self) -> None:
        async for event in self.node.events():
            kind, data = event_json(event)
            self.feed.publish(kind, data)
            self._log(event)
        self._flush_now()

    def _who(self, author: str) -> str:
        return self._names.get(author) or author[:12]

    def _log(self, event: Event) -> None:
        if isinstance(event, PeerChanged):
            p = event.peer
            if p.key and p.name:
                self._names[p.key] = p.name
            who = p.name or (p.key[:12] if p.key else "?")
            detail = f" ({p.reason})" if p.reason and p.state != "alive" else ""
            if event.change in ("added", "removed"):
                what = f"{event.change} ({p.state})"  # "added (suspect)", "removed (down)"
            else:
                what = f"is {p.state}"  # "is alive", "is suspect", "is left"
            log.info("peer %s %s %s via %s%s", who, p.address, what, p.source, detail)
        elif isinstance(event, BreakerChanged):
            log.info("breaker %s is %s (%s says %s%s)", event.name, event.state,
                     self._who(event.author), event.observed,
                     "" if event.trusted else ", untrusted")  # fmt: skip
        elif isinstance(event, RecordAdded):
            if event.author == self.node.id:
                if event.kind != "host":
                    state_name = event.key.split(":", 2)[-1]
                    what = event.key[:16] if event.root == "records" else state_name
                    log.info("wrote %s %s", event.kind, what)
                return
            self._received[event.kind] += 1
            self._authors.add(event.author)
            if self._flush is None:
                loop = asyncio.get_running_loop()
                self._flush = loop.call_later(RECORD_LOG_DELAY, self._flush_now)
        elif isinstance(event, TrustChanged):
            log.info("trust: %d key(s) now trusted, %d no longer", len(event.added),
                     len(event.removed))  # fmt: skip
        elif isinstance(event, EventsLost):
            log.warning("the event log fell behind and skipped %d events", event.count)

    def _flush_now(self) -> None:
        self._flush = None
        if not self._received:
            return
        total = sum(self._received.values())
        kinds = ", ".join(f"{n} {k}" for k, n in self._received.most_common())
        authors = ", ".join(sorted(self._who(a) for a in self._authors)[:5])
        log.info("received %d record(s) from peers: %s (by %s)", total, kinds, authors)
        self._received.clear()
        self._authors.clear()


async def serve(s: ServeSettings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; raises GossipError if the node or the API cannot start.
    A stop while it still waits for the data dir ends the wait."""
    check_socket_path(s.home / API_SOCKET)  # before anything starts: the API could not
    opening = asyncio.create_task(open_node(s))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not opening.done():
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        log.info("stopped before starting")
        return
    node = opening.result()
    feed = Feed()
    api: LocalApi | None = None
    agents: AgentsApi | None = None
    agents_facts: dict[str, Any] | None = None
    events = EventLog(node, feed)
    task = asyncio.create_task(events.run(), name="event log")
    try:
        token = read_token(s.home) if s.api_listen else None
        api = LocalApi(node, feed, home=s.home, name=s.node.name, tcp=s.api_listen, token=token,
                       discovery=lambda: discovery_health(node),
                       agents=lambda: agents_facts)  # fmt: skip
        await api.start()
        if s.agents_listen:
            agents, agents_facts = await start_agents(s, api)
        tcp = f", http://{api.tcp_address} (token in {s.home / 'api.token'})" if api.tcp else ""
        log.info("serving %s as %s (%s profile): peers on %s, API on %s%s", s.home, node.id,
                 s.node.profile.name, node.address, api.socket_path, tcp)  # fmt: skip
        if s.node.peers:
            log.info("static peers: %s", ", ".join(s.node.peers))
        await stop.wait()
        log.info("stopping")
    finally:
        started = time.monotonic()
        feed.close()  # event streams (the dashboard's too) end, so their handlers return
        if agents is not None:
            await agents.close()
        if api is not None:
            await api.close()
        await node.aclose()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("stopped in %.1f s", time.monotonic() - started)


async def start_agents(s: ServeSettings, api: LocalApi) -> tuple[AgentsApi | None, dict[str, Any]]:
    """The agents' listener (Singularity Memory's routes and MCP) on ``s.agents_listen``,
    with the local API's token. One that cannot listen (the port is taken) is logged,
    said in ``status``, and the daemon runs on without it."""
    from . import ops
    from .api.dashboard import Dashboard
    from .api.mcp import McpHttp

    host = api.host
    facts: dict[str, Any] = {"listen": s.agents_listen, "url": None, "exposed": False,
                             "error": None}  # fmt: skip
    try:
        dashboard = Dashboard(host, api.feed)
        agents = AgentsApi(host, listen=s.agents_listen, token=read_token(s.home),
                           mcp=McpHttp(lambda name, params: ops.run(host, name, params)),
                           dashboard=dashboard)  # fmt: skip
        facts["exposed"] = agents.exposed
        await agents.start()
        host.login_link = dashboard.login_link
    except GossipError as e:
        log.error("agents' listener: %s", e)
        facts["error"] = str(e)
        return None, facts
    facts["url"] = agents.url
    log.info("agents (Singularity Memory API, MCP at /mcp/, the dashboard at /ui/: `gossip web`) "
             "on %s; SINGULARITY_SERVER_URL=%s "
             "SINGULARITY_API_KEY=<the content of %s>", agents.address, agents.url,
             s.home / "api.token")  # fmt: skip
    if agents.exposed:
        log.warning("the agents' listener on %s is EXPOSED beyond this machine", s.agents_listen)
    return agents, facts


def run(s: ServeSettings) -> int:
    """The foreground daemon: serve until SIGTERM or SIGINT. Exit code 0 on a clean stop."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(s, stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
    return 0


def configure_logging(debug: bool = False) -> None:
    """One line per event on stderr, UTC timestamps (journald and launchd keep stderr)."""
    handler = logging.StreamHandler()
    fmt = logging.Formatter("%(asctime)s %(levelname)-5s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    fmt.converter = time.gmtime
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
        logging.getLogger("mcp").setLevel(logging.WARNING)
