"""A connection flood on a node's peer port, from loopback only, bounded in count and time.

``Flood`` opens ``idle`` TLS connections that complete the handshake with a stranger's
certificate (anybody can make one: the pinning anchor is public) and then say nothing,
and ``slow`` slowloris connections that send a request's headers one line a second,
from loopback source addresses of their own (127.0.0.2 and 127.0.0.3 by default, so a
trusted peer on 127.0.0.1 is another address). It holds them for ``hold`` seconds at most and then
closes every socket it opened, whatever happened.

As a script, the measurement in docs/threat-model.md ("Connection floods"): two real
daemons, the flooded one with 128 file descriptors (``ulimit -n``), its RSS and open
descriptors before and under the flood, and whether ``gossip remember`` through its API
and ``gossip sync`` from its trusted peer still work:

    .venv/bin/python -m tests.flood [--idle 500] [--slow 50] [--nofile 128]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdt import Identity
from gossip.transport.tls import ensure_certificate

LOOPBACK_SOURCE = "127.0.0.2"  # the idle connections'
SLOW_SOURCE = "127.0.0.3"  # the slowloris ones': each address has caps of its own


def stranger_context(home: Path) -> ssl.SSLContext:
    """A TLS client context presenting a certificate for a fresh key in ``home``, which
    checks nothing of the server (a flooder does not care who answers)."""
    identity = Identity.load_or_create(home)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(ensure_certificate(home, identity), home / "host.key")
    return ctx


@dataclass
class FloodResult:
    attempts: int = 0  # connections tried
    opened: int = 0  # handshakes that finished (the server may still close them at once)
    failed: int = 0  # refused, reset or closed during the handshake
    closed_by_server: int = 0  # opened, then closed by the server before the hold ended
    held_at_end: int = 0  # still open when the hold ended
    longest_s: float = 0.0  # the longest life of one the server closed

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "longest_s": round(self.longest_s, 1)}


class Flood:
    """``idle`` + ``slow`` workers, each keeping one connection open: when the server
    closes or refuses it, the worker opens another (as an attacker would), until
    ``hold`` seconds have passed or ``max_attempts`` connections were tried. ``run``
    returns when all have stopped, every socket closed."""

    def __init__(self, address: str, ctx: ssl.SSLContext | None, *, idle: int = 500,
                 slow: int = 50, hold: float = 20.0, source: str = LOOPBACK_SOURCE,
                 slow_source: str = SLOW_SOURCE, concurrency: int = 50,
                 max_attempts: int | None = None) -> None:  # fmt: skip
        host, _, port = address.rpartition(":")
        assert host.startswith("127.") or host in ("[::1]", "localhost"), "loopback only"
        self.host, self.port = host, int(port)
        self.ctx = ctx
        self.idle, self.slow, self.hold = idle, slow, hold
        self.source, self.slow_source = source, slow_source
        self.max_attempts = max_attempts if max_attempts is not None else 10 * (idle + slow)
        self._gate = asyncio.Semaphore(concurrency)
        self.idle_result = FloodResult()
        self.slow_result = FloodResult()
        self.ramped = asyncio.Event()  # every worker tried its first connection
        self._first_tries = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def attempts(self) -> int:
        return self.idle_result.attempts + self.slow_result.attempts

    async def run(self) -> None:
        workers = [
            *(self._worker(self.idle_result, slow=False) for _ in range(self.idle)),
            *(self._worker(self.slow_result, slow=True) for _ in range(self.slow)),
        ]
        tasks = [asyncio.create_task(w) for w in workers]
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hold):
                    await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.ramped.set()

    def _tried(self, first: bool) -> None:
        if first:
            self._first_tries += 1
            if self._first_tries == self.idle + self.slow:
                self.ramped.set()

    async def _worker(self, result: FloodResult, *, slow: bool) -> None:
        first = True
        while self.attempts < self.max_attempts:
            result.attempts += 1
            writer: asyncio.StreamWriter | None = None
            try:
                async with self._gate:
                    try:
                        reader, writer = await asyncio.open_connection(
                            self.host, self.port, ssl=self.ctx,
                            local_addr=(self.slow_source if slow else self.source, 0),
                            ssl_handshake_timeout=5.0 if self.ctx else None,
                        )  # fmt: skip
                    except (OSError, ssl.SSLError, TimeoutError):
                        result.failed += 1
                        self._tried(first)
                        first = False
                        await asyncio.sleep(0.05)  # refused: try again, not in a hot loop
                        continue
                result.opened += 1
                self._tried(first)
                first = False
                await self._hold(reader, writer, result, slow)
            except asyncio.CancelledError:
                if writer is not None and not writer.transport.is_closing():
                    result.held_at_end += 1
                raise
            finally:
                if writer is not None:
                    writer.transport.abort()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    result: FloodResult, slow: bool) -> None:  # fmt: skip
        """Until the server closes the connection (then counted); cancelled at the end."""
        started = time.monotonic()
        try:
            if slow:  # one header line a second, never the blank line that ends them
                lines = [b"POST /v1/sync HTTP/1.1\r\n", b"Host: x\r\n"]
                lines += [f"X-Slow-{k}: {k}\r\n".encode() for k in range(10_000)]
                for line in lines:
                    writer.write(line)
                    await writer.drain()
                    try:
                        async with asyncio.timeout(1.0):
                            if not await reader.read(4096):
                                break
                    except TimeoutError:
                        continue
            else:
                while await reader.read(4096):
                    pass
        except (OSError, ssl.SSLError):
            pass
        result.closed_by_server += 1
        result.longest_s = max(result.longest_s, time.monotonic() - started)


class FloodThread:
    """A ``Flood`` run in a thread with its own event loop, for tests that call daemons
    with blocking clients meanwhile. ``start`` returns once every worker has tried its
    first connection (or ``ramp`` seconds have passed); ``stop`` ends it and joins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._ramped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.flood: Flood | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def start(self, ramp: float = 30.0) -> FloodThread:
        self._thread.start()
        self._ramped.wait(ramp)
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self.flood is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended: the hold did
                self._loop.call_soon_threadsafe(self.flood.stop)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flood thread did not stop"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            flood = self.flood = Flood(*self._args, **self._kwargs)
            ramped = asyncio.create_task(flood.ramped.wait())
            ramped.add_done_callback(lambda _: self._ramped.set())
            try:
                await flood.run()
            except BaseException as e:  # reported by start()
                self.error = e
            finally:
                self._ramped.set()
                ramped.cancel()

        asyncio.run(main())


def process_figures(pid: int) -> dict[str, int]:
    """RSS (kB) and open file descriptors of a process, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"rss_kb": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def _call(gossip: Any, home: Path, *args: str) -> dict[str, Any]:
    """A CLI command: whether it worked, how long it took, what it said if not."""
    started = time.monotonic()
    try:
        done = gossip(home, *args, timeout=30)
    except subprocess.TimeoutExpired:
        return {"ok": False, "seconds": 30.0, "error": "no answer within 30 s"}
    worked = done.returncode == 0
    return {"ok": worked, "seconds": round(time.monotonic() - started, 1),
            "error": None if worked else done.stderr.strip()[-200:]}  # fmt: skip


def measure(tmp: Path, *, idle: int, slow: int, nofile: int, hold: float) -> dict[str, Any]:
    """Two daemons (n1 with ``nofile`` descriptors), n1's peer port flooded: figures."""
    from tests.daemons import gossip, make_cluster, ok

    n1, n2 = make_cluster(tmp, 2)
    n1.nofile = nofile
    out: dict[str, Any] = {"idle": idle, "slow": slow, "nofile": nofile}
    try:
        n1.start()
        n2.start()
        assert n1.proc is not None
        ok(n2.home, "sync", "--json")
        out["before"] = process_figures(n1.proc.pid)
        flood = FloodThread(n1.address, stranger_context(tmp / "stranger"), idle=idle,
                            slow=slow, hold=hold)  # fmt: skip
        flood.start()
        try:
            time.sleep(2.0)  # the flood at its height
            out["during"] = process_figures(n1.proc.pid)
            out["remember"] = _call(gossip, n1.home, "remember", "written under a flood",
                                    "--category", "learning")  # fmt: skip
            out["sync"] = _call(gossip, n2.home, "sync", n1.address, "--json")
            out["after_calls"] = process_figures(n1.proc.pid)
        finally:
            flood.stop()
        assert flood.flood is not None
        out["idle_connections"] = flood.flood.idle_result.to_json()
        out["slow_connections"] = flood.flood.slow_result.to_json()
    finally:
        for d in (n1, n2):
            d.kill()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--nofile", type=int, default=128)
    parser.add_argument("--hold", type=float, default=90.0)
    args = parser.parse_args()
    assert args.idle + args.slow <= 2000 and args.hold <= 120, "bounded: at most 2000, 120 s"
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), idle=args.idle, slow=args.slow, nofile=args.nofile,
                         hold=args.hold)  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
