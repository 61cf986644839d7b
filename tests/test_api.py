"""The local API: a real node and a real aiohttp server on a Unix socket (and loopback
TCP), spoken to by a real aiohttp client, by raw bytes and by curl. No mocks.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gossip.api import MAX_BODY, LocalApi, read_token
from gossip.api.feed import Feed
from gossip.config import ConfigError, Profile
from gossip.daemon import EventLog
from gossip.node import Node
from tests.test_node import create_hosts, until

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = Profile.local()


@dataclass
class Served:
    node: Node
    api: LocalApi
    feed: Feed
    session: aiohttp.ClientSession
    base: str = "http://localhost"

    async def call(self, method: str, path: str, **kw) -> tuple[int, object]:
        async with self.session.request(method, self.base + path, **kw) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


@asynccontextmanager
async def served(home: Path, *, peers=(), tcp: str | None = None) -> AsyncIterator[Served]:
    feed = Feed()
    async with Node(home, peers=peers, profile=FAST, name=home.name) as node:
        log = asyncio.create_task(EventLog(node, feed).run())
        token = read_token(home) if tcp else None
        api = LocalApi(node, feed, home=home, name=home.name, tcp=tcp, token=token)
        await api.start()
        connector = aiohttp.UnixConnector(path=str(api.socket_path))
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                yield Served(node, api, feed, session)
        finally:
            await api.close()
            log.cancel()
            await asyncio.gather(log, return_exceptions=True)


async def test_a_data_dir_too_deep_for_its_socket_is_refused_by_name(tmp_path: Path):
    home = tmp_path / ("d" * (110 - len(str(tmp_path))))
    create_hosts([home])
    refused = r"api.sock is 1[0-2][0-9] bytes long.*at most 10[37]: choose a shorter data dir"
    with pytest.raises(ConfigError, match=refused):
        async with served(home):
            pass
    assert not (home / "api.sock").exists()
    # `gossip serve` says so before it opens anything (no replica, no listener).
    from tests.daemons import gossip

    serve = gossip(home, "serve", "--listen", "127.0.0.1:0", "--no-mdns", "--agents-listen", "")
    assert serve.returncode != 0 and re.search(refused, serve.stderr), serve.stderr
    assert "Traceback" not in serve.stderr and "peers on" not in serve.stderr
    assert not (home / "api.sock").exists()


async def test_socket_is_0600_and_refuses_web_pages(tmp_path: Path):
    (home,) = [tmp_path / "a"]
    create_hosts([home])
    async with served(home) as s:
        mode = (home / "api.sock").stat().st_mode
        assert stat.S_ISSOCK(mode) and mode & 0o777 == 0o600
        assert (await s.call("GET", "/v1/status"))[0] == 200
        for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"},
                        {"Origin": "null"}, {"Host": "evil.example"},
                        {"Host": "localhost.evil.example:80"},
                        {"Host": "192.168.1.5"}, {"Host": "[::1].evil.com"},
                        {"Host": "[::1]evil"}, {"Host": "localhost:abc"},
                        {"Host": "[127.0.0.1]"}, {"Host": "localhost:80:80"}):  # fmt: skip
            status, body = await s.call("GET", "/v1/status", headers=headers)
            assert status == 403, headers
            assert "error" in body
        for host in ("localhost", "127.0.0.1:8080", "[::1]:1", "api.sock"):
            assert (await s.call("GET", "/v1/peers", headers={"Host": host}))[0] == 200, host
        # an absolute-form target names another host: refused, whatever Host says
        answer = await asyncio.to_thread(
            _raw_http, home / "api.sock",
            b"GET http://evil.com/v1/status HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: close\r\n\r\n")  # fmt: skip
        assert _status(answer) in (400, 403), answer[:200]
        # a write from a page is refused before it happens
        status, _ = await s.call("POST", "/v1/memories", headers={"Origin": "http://x"},
                                 json={"text": "planted", "category": "learning"})  # fmt: skip
        assert status == 403
        assert s.node.recall("planted") == []
    assert not (home / "api.sock").exists()


async def test_tcp_needs_the_token_and_loopback(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    node = Node(home)
    with pytest.raises(ConfigError, match="loopback"):
        LocalApi(node, Feed(), home=home, tcp="0.0.0.0:0", token="x" * 20)
    with pytest.raises(ConfigError, match="token"):
        LocalApi(node, Feed(), home=home, tcp="127.0.0.1:0")
    async with served(home, tcp="127.0.0.1:0") as s:
        token = (home / "api.token").read_text().strip()
        assert (home / "api.token").stat().st_mode & 0o777 == 0o600
        url = f"http://{s.api.tcp_address}/v1/status"
        async with aiohttp.ClientSession() as tcp:
            async with tcp.get(url) as resp:
                assert resp.status == 401
            async with tcp.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            auth = {"Authorization": f"Bearer {token}"}
            async with tcp.get(url, headers=auth) as resp:
                assert resp.status == 200
                assert (await resp.json())["id"] == s.node.id
            async with tcp.get(url, headers={**auth, "Origin": "http://x"}) as resp:
                assert resp.status == 403
            async with tcp.get(url, headers={"Authorization": f"bearer {token}"}) as resp:
                assert resp.status == 200  # the scheme is case-insensitive (RFC 9110)
        # a non-ASCII credential is a 401, not a 500
        host, port = s.api.tcp_address.rsplit(":", 1)
        answer = await asyncio.to_thread(
            _raw_tcp, host, int(port),
            b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\r\n"
            b"Connection: close\r\n\r\n")  # fmt: skip
        assert _status(answer) == 401, answer[:200]


async def test_an_ipv6_listener_reports_a_usable_address(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    async with served(home, tcp="[::1]:0") as s:
        assert s.api.tcp_address is not None and s.api.tcp_address.startswith("[::1]:")
        token = (home / "api.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as tcp, tcp.get(
            f"http://{s.api.tcp_address}/v1/status", headers=auth
        ) as resp:
            assert resp.status == 200


async def test_memories_breakers_benchmarks_trust_round_trip(tmp_path: Path):
    home = tmp_path / "a"
    (me,) = create_hosts([home])
    other = create_hosts([tmp_path / "b"])[0]
    async with served(home) as s:
        status, body = await s.call("POST", "/v1/memories", json={
            "text": "Provider X drops requests at 03:00 UTC", "category": "anti-pattern",
            "subject": "provider:x", "tags": ["outage"]})  # fmt: skip
        assert status == 201
        rid = body["id"]
        status, body = await s.call("GET", "/v1/memories", params={"q": "provider drops"})
        assert status == 200 and [m["id"] for m in body["memories"]] == [rid]
        assert body["memories"][0]["author_name"] == "self"
        status, shown = await s.call("GET", f"/v1/memories/{rid[:10]}")
        assert status == 200 and shown["id"] == rid and shown["signature_ok"] is True
        assert shown["provenance"]["local"] is True and shown["trusted"] is True
        assert shown["memory"]["text"].startswith("Provider X")
        status, body = await s.call("POST", f"/v1/memories/{rid}/retract", json={"reason": "fixed"})
        assert status == 200 and body["retraction"]
        assert (await s.call("GET", "/v1/memories", params={"q": "provider"}))[1]["memories"] == []
        status, body = await s.call("POST", f"/v1/memories/{rid}/retract", json={})
        assert status == 200 and body["already_retracted"] is True

        status, b = await s.call("POST", "/v1/breakers/trip", json={
            "name": "kimi-coding/k2p5", "reason": "5 timeouts", "cooldown": 60})  # fmt: skip
        assert status == 200 and b["state"] == "open" and b["tripped_by"] == [me]
        status, b = await s.call("GET", "/v1/breaker", params={"name": "kimi-coding/k2p5"})
        assert b["state"] == "open"
        assert [x["name"] for x in (await s.call("GET", "/v1/breakers"))[1]] == ["kimi-coding/k2p5"]
        status, b = await s.call("POST", "/v1/breakers/reset", json={"name": "kimi-coding/k2p5"})
        assert status == 200 and b["state"] == "closed"
        status, _ = await s.call("POST", "/v1/breakers/reset", json={"name": "never-heard-of"})
        assert status == 404
        status, b = await s.call("GET", "/v1/breaker", params={"name": "never-named"})
        assert status == 200 and b["state"] == "unknown"  # not closed: nobody said so

        bench = {"subject": "kimi-coding/k2p5", "metric": "latency_p50", "value": 1.5, "unit": "s"}
        status, _ = await s.call("POST", "/v1/benchmarks", json=bench)
        assert status == 201
        found = (await s.call("GET", "/v1/benchmarks", params={"subject": bench["subject"]}))[1]
        assert found[0]["values"] == {"value": 1.5}

        status, body = await s.call("POST", "/v1/trust", json={"key": other, "name": "bob"})
        assert status == 200 and body["updated"] is False
        keyring = (await s.call("GET", "/v1/trust"))[1]
        assert {(k["id"], k["name"], k["self"]) for k in keyring} >= {(other, "bob", False)}
        assert (await s.call("DELETE", "/v1/trust/bob"))[0] == 200
        assert (await s.call("DELETE", "/v1/trust/bob"))[0] == 404
        assert (await s.call("DELETE", f"/v1/trust/{me}"))[0] == 400

        status, inspect = await s.call("GET", "/v1/inspect")
        assert status == 200 and inspect["records_by_kind"] == {"memory": 1, "retract": 1}
        status, text = await s.call("GET", "/metrics")
        assert status == 200 and 'gossip_records{kind="memory"} 1' in text


async def test_bad_input_is_a_4xx_naming_the_field(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    async with served(home) as s:
        cases = [
            ("POST", "/v1/memories", {"json": {"text": 5, "category": "x"}}, 400, "text"),
            ("POST", "/v1/memories", {"json": {"text": "x"}}, 400, "category"),
            ("POST", "/v1/memories", {"json": {"text": "x", "category": "y", "extra": 1}},
             400, "extra"),
            ("POST", "/v1/memories", {"json": {"text": "x", "category": "y", "tags": "a"}},
             400, "tags"),
            ("POST", "/v1/memories", {"json": ["not", "an", "object"]}, 400, "body"),
            ("POST", "/v1/memories", {"data": b"{not json", "headers": {"Content-Type":
             "application/json"}}, 400, "body"),
            ("POST", "/v1/memories", {"data": b'{"text": "\\ud800", "category": "x"}'},
             400, "text"),
            ("POST", "/v1/memories", {"data": b'{"text": "x", "category": "y", '
             b'"expires_in": NaN}'}, 400, "body"),
            ("POST", "/v1/memories", {"data": b"x" * (MAX_BODY + 1)}, 413, "body"),
            ("POST", "/v1/breakers/trip", {"json": {"name": "b", "cooldown": -1}}, 400,
             "cooldown"),
            ("POST", "/v1/breakers/trip", {"json": {"name": "b", "cooldown": True}}, 400,
             "cooldown"),
            ("POST", "/v1/benchmarks", {"json": {"subject": "a|b", "metric": "m", "value": 1}},
             400, "subject"),
            ("POST", "/v1/benchmarks", {"json": {"subject": "a", "metric": "m", "value": "1"}},
             400, "value"),
            ("POST", "/v1/trust", {"json": {"key": "not-a-key"}}, 400, "key"),
            ("GET", "/v1/memories?limit=0", {}, 400, "limit"),
            ("GET", "/v1/memories?bogus=1", {}, 400, "bogus"),
            ("GET", "/v1/memories?include_untrusted=maybe", {}, 400, "include_untrusted"),
            ("GET", "/v1/memories/zz", {}, 400, "id"),
            ("GET", "/v1/memories/abcdef01", {}, 404, "id"),
            ("GET", "/v1/breaker", {}, 400, "name"),
            ("POST", "/v1/sync", {"json": {"address": "no port"}}, 400, "address"),
            # an unknown name that cannot be encoded is still named in a 400
            ("POST", "/v1/memories", {"data": b'{"\\ud800": 1}'}, 400, "\ud800"),
            ("POST", "/v1/breakers/reset", {"data": b'{"\\ud800": 1}'}, 400, "\ud800"),
            ("GET", "/v1/events", {"headers": {"Last-Event-ID": "x-\u00b2"}}, 400,
             "last_event_id"),
            ("GET", "/v1/events?last_event_id=a%20b", {}, 400, "last_event_id"),
        ]
        for method, path, kw, status, field in cases:
            got, body = await s.call(method, path, **kw)
            assert (got, body.get("field")) == (status, field), (path, kw, body)
        sock = home / "api.sock"
        for request in (  # bytes no client library would send
            b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: \xff\r\n"
            b"Connection: close\r\n\r\n",
            f"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {s.feed.run}-\u00b2"
            "\r\nConnection: close\r\n\r\n".encode(),
        ):
            answer = await asyncio.to_thread(_raw_http, sock, request)
            assert _status(answer) == 400, answer[:300]
            assert answer.count(b"HTTP/1.1") == 1, answer[:300]
        # a huge declared body is refused before it is read: nothing is sent at all
        answer = await asyncio.wait_for(asyncio.to_thread(
            _raw_http, sock,
            b"POST /v1/memories HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000000000\r\n\r\n", 1.0, True), 5)  # fmt: skip
        assert _status(answer) == 413, answer[:300]
        assert (await s.call("GET", "/v1/nothing-here"))[0] == 404
        assert (await s.call("PUT", "/v1/memories"))[0] == 405


async def read_events(s: Served, count: int, headers: dict | None = None) -> list[dict]:
    """The first ``count`` events of a fresh /v1/events stream (id, event, data)."""
    out: list[dict] = []
    async with s.session.get(s.base + "/v1/events", headers=headers or {}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        current: dict = {}
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if current:
                    out.append(current)
                    current = {}
                    if len(out) >= count:
                        return out
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            current[k] = json.loads(v) if k == "data" else v
    return out


async def test_events_resume_with_last_event_id(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    async with served(home) as s:
        for k in range(3):
            await s.node.remember(f"lesson {k}", category="learning")
        await until(lambda: s.feed._seq >= 3, "three events in the feed")
        # A consumer that saw the first event resumes after it: it gets 2 and 3, in order.
        first = (await read_events(s, 1, {"Last-Event-ID": f"{s.feed.run}-0"}))[0]
        assert first["event"] == "record" and first["data"]["record"]["fields"]["text"] == (
            "lesson 0"
        )
        rest = await read_events(s, 2, {"Last-Event-ID": first["id"]})
        assert [e["data"]["record"]["fields"]["text"] for e in rest] == ["lesson 1", "lesson 2"]
        # Live: a stream sees a write made after it connected (resuming from the last id
        # seen, it cannot miss one made while it was connecting either).
        reader = asyncio.create_task(read_events(s, 1, {"Last-Event-ID": s.feed.last_id}))
        await s.node.trip_breaker("provider:x", reason="503s", cooldown=60)
        (live,) = await asyncio.wait_for(reader, 10)
        assert live["event"] == "breaker" and live["data"]["state"] == "open"
        # An id from another run (a restarted daemon) is a gap, said so.
        (gap,) = await read_events(s, 1, {"Last-Event-ID": "deadbeef-2"})
        assert gap["event"] == "lost"


async def test_a_consumer_that_falls_behind_is_cut_off_with_a_final_event():
    feed = Feed(ring=8, max_queue=4)
    listener = feed.listen()
    for k in range(10):
        feed.publish("record", {"n": k})
    assert listener.cut and len(listener.queue) <= 4
    assert await listener.get() is None  # the stream ends; the handler then sends:
    final = feed.cutoff_event("run-3")
    assert final.type == "cutoff" and b"id:" not in final.sse()
    # The ring still lets it resume from where it was (within the ring).
    again = feed.listen(f"{feed.run}-6")
    assert [e.data["n"] for e in again.queue] == [6, 7, 8, 9]
    assert feed.listen(f"{feed.run}-1").queue[0].type == "lost"  # older than the ring
    # An id the API would refuse is still only a gap to the feed, and encodes as ASCII.
    for odd in (f"{feed.run}-\u00b2", f"{feed.run}-\udcff", "\xff"):
        (lost,) = feed.listen(odd).queue
        assert lost.type == "lost" and lost.sse().isascii()


async def test_show_names_the_peer_a_record_came_from(tmp_path: Path):
    homes = [tmp_path / "a", tmp_path / "b"]
    ids = create_hosts(homes)
    async with Node(homes[0], profile=FAST) as a, served(homes[1], peers=[a.address]) as s:
        rid = await a.remember("kimi times out above 30k tokens", category="anti-pattern")
        await until(lambda: s.node.recall("kimi"), "the memory on b")
        status, shown = await s.call("GET", f"/v1/records/{rid}")
        assert status == 200
        assert shown["author"] == ids[0] and shown["trusted"] is True
        assert shown["provenance"]["local"] is False
        assert shown["provenance"]["source"] == ids[0] and shown["provenance"]["received_at"]
        status, peers = await s.call("GET", "/v1/peers")
        assert status == 200 and peers[0]["key"] == ids[0]


def _raw_http(sock_path: Path, request: bytes, timeout: float = 10.0,
              first: bool = False) -> bytes:  # fmt: skip
    """A request as bytes over the socket, as any language can send it; with ``first``,
    only what arrives up to the end of the first answer's headers."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(str(sock_path))
        c.sendall(request)
        return _answer(c, first)


def _raw_tcp(host: str, port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection((host.strip("[]"), port), 10) as c:
        c.sendall(request)
        return _answer(c, False)


def _answer(c, first: bool) -> bytes:
    chunks: list[bytes] = []
    while chunk := c.recv(65536):
        chunks.append(chunk)
        if first and b"\r\n\r\n" in b"".join(chunks):
            break
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_a_non_python_consumer_needs_only_http_over_the_socket(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    async with served(home) as s:
        sock = s.api.socket_path
        body = b'{"text":"written with raw bytes","category":"learning"}'
        request = (b"POST /v1/memories HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(body), body))  # fmt: skip
        answer = await asyncio.to_thread(_raw_http, sock, request)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        curl = shutil.which("curl")
        if curl is None:
            got = await asyncio.to_thread(
                _raw_http, sock,
                b"GET /v1/memories?q=raw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )  # fmt: skip
            text = got.split(b"\r\n\r\n", 1)[1]
        else:
            out = await asyncio.to_thread(
                subprocess.run, [curl, "-sf", "--unix-socket", str(sock),
                                 "http://localhost/v1/memories?q=raw"],
                capture_output=True, timeout=20,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            text = out.stdout
        hits = json.loads(text)["memories"]
        assert [h["text"] for h in hits] == ["written with raw bytes"]


async def test_a_consumer_that_stops_reading_is_cut_off_over_http(tmp_path: Path):
    home = tmp_path / "a"
    create_hosts([home])
    feed = Feed(max_queue=8)
    async with Node(home, profile=FAST) as node:
        api = LocalApi(node, feed, home=home, sse_write_timeout=60)
        await api.start()
        writer = None
        try:
            reader, writer = await asyncio.open_unix_connection(str(api.socket_path))
            writer.write(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await writer.drain()
            await until(lambda: feed._listeners, "the stream to listen")
            (listener,) = feed._listeners
            pad = "x" * 4096
            k = 0
            while not listener.cut:  # we read nothing: socket buffers fill, then its queue
                feed.publish("record", {"n": k, "pad": pad})
                k += 1
                await asyncio.sleep(0)
                assert k < 100_000, "never cut off"
            data = await asyncio.wait_for(reader.read(), 30)  # reading again: then EOF
        finally:
            if writer is not None:
                writer.close()
                await writer.wait_closed()
            await api.close()
    assert data.startswith(b"HTTP/1.1 200")
    last_record, cutoff = data.rfind(b"event: record"), data.find(b"event: cutoff")
    assert 0 < last_record < cutoff, data[-500:]
    assert b'"resume_from"' in data[cutoff:] and data.count(b"event: cutoff") == 1
    assert not feed._listeners  # the stream ended; nothing is kept for it


async def test_rejected_updates_are_counted_by_rule(tmp_path: Path):
    from crdt import records
    from gossip.exportfile import encode_export
    from tests.forge import Writer

    home = tmp_path / "a"
    create_hosts([home])
    mallory = Writer()
    own = mallory.put(records.memory(mallory.identity, "mine", category="c", ts=1))
    tampered = own.raw[:-1] + bytes([own.raw[-1] ^ 1])
    async with served(home) as s:
        status, summary = await s.call("POST", "/v1/import", params={"name": "forged"},
                                       data=b"".join(encode_export([tampered])))  # fmt: skip
        assert status == 200 and [r["rule"] for r in summary["refused"]] == ["digest"]
        status, body = await s.call("POST", "/v1/import", data=b"not an export")
        assert status == 400 and body["field"] == "body"
        assert (await s.call("GET", "/v1/inspect"))[1]["rejected_by_rule"] == {"digest": 1}
        text = (await s.call("GET", "/metrics"))[1]
        assert 'gossip_updates_rejected_total{rule="digest"} 1' in text


async def test_a_supersedes_naming_another_authors_memory_is_ignored_and_said_so(
    tmp_path: Path,
):
    """Issue 17, item 9: b (trusted) signs a memory that "supersedes" a's: a's stays in
    recall, `show` says the supersedes is ignored; a writing one over b's is a 409."""
    import time

    from crdt import Replica, records

    a_home, b_home = tmp_path / "a", tmp_path / "b"
    create_hosts([a_home, b_home])
    now = time.time_ns() // 1_000_000
    async with served(a_home) as s:
        lesson = {"text": "a's lesson on provider x", "category": "learning"}
        status, made = await s.call("POST", "/v1/memories", json=lesson)
        assert status == 201, made
        mine = made["id"]
        with Replica.open(b_home) as b:
            theirs = records.memory(b.identity, "b's lesson", category="learning", ts=now)
            takeover = records.memory(b.identity, "b replaces a's lesson", category="learning",
                                      supersedes=mine, ts=now + 1)  # fmt: skip
            raws = [b.put(theirs).raw, b.put(takeover).raw]
        outcomes = await s.node.offer(raws, source="test")
        assert [o.status for o in outcomes] == ["applied", "applied"]
        assert any(m.id == mine for m in s.node.recall("provider"))
        status, shown = await s.call("GET", f"/v1/records/{takeover.id}")
        assert status == 200 and shown["supersedes"]["id"] == mine, shown
        assert shown["supersedes"]["honoured"] is False
        assert shown["supersedes"]["note"].startswith("ignored"), shown
        status, own = await s.call("GET", f"/v1/records/{mine}")
        assert own["supersedes"] is None
        status, refused = await s.call("POST", "/v1/memories", json={
            "text": "a over b", "category": "learning", "supersedes": theirs.id})  # fmt: skip
        assert status == 409 and refused["field"] == "supersedes", refused
        status, fine = await s.call("POST", "/v1/memories", json={
            "text": "a's newer lesson", "category": "learning", "supersedes": mine})  # fmt: skip
        assert status == 201, fine
        status, shown = await s.call("GET", f"/v1/records/{fine['id']}")
        assert shown["supersedes"]["honoured"] is True, shown


async def test_a_trip_longer_than_the_cap_is_refused(tmp_path: Path):
    """Issue 17, item 9: a cooldown over ``[breakers] max_open`` (a day by default)."""
    home = tmp_path / "a"
    create_hosts([home])
    async with served(home) as s:
        status, body = await s.call("POST", "/v1/breakers/trip", json={
            "name": "k2p5", "reason": "forever", "cooldown": 3 * 86400})  # fmt: skip
        assert status == 409 and body["field"] == "cooldown", body
        assert body["code"] == "conflict"
        status, body = await s.call("POST", "/v1/breakers/trip", json={
            "name": "k2p5", "reason": "forever", "cooldown": 2 * 365 * 86400})  # fmt: skip
        assert status == 400 and body["code"] == "invalid", body
        status, body = await s.call("POST", "/v1/breakers/trip", json={
            "name": "k2p5", "reason": "503s", "cooldown": 3600})  # fmt: skip
        assert status == 200 and body["state"] == "open", body


async def test_errors_carry_a_code_and_a_503_says_when_to_retry(tmp_path: Path):
    """Issue 17, item 9: every refusal names its class (``code``, for programs); an empty
    `last_event_id` is no event id; a busy replica's 503 carries ``Retry-After``."""
    from tests.test_node import replica_thread_held

    home = tmp_path / "a"
    create_hosts([home])
    async with served(home) as s:
        for method, path, status, code in (
            ("GET", "/v1/records/abcdef", 404, "not_found"),
            ("GET", "/v1/nowhere", 404, "not_found"),
            ("DELETE", "/v1/status", 405, "not_allowed"),
            ("GET", "/v1/events?last_event_id=", 400, "invalid"),
            ("POST", "/v1/trust", 400, "invalid"),
        ):
            got, body = await s.call(method, path)
            assert (got, body["code"]) == (status, code), (method, path, body)
        # The replica's thread held for longer than a read may wait:
        async with replica_thread_held(s.node), s.session.get(s.base + "/v1/inspect") as resp:
            body = await resp.json()
            assert resp.status == 503 and resp.headers["Retry-After"] == "1", body
            assert body["code"] == "unavailable"


async def test_status_does_not_call_untrusted_peers_unreachable(tmp_path: Path):
    """New-user test: with every peer an unknown key, status said "none of 2 peers is
    reachable" although both answered; it says they are not trusted instead."""
    a, b = tmp_path / "a", tmp_path / "b"
    create_hosts([a, b], trusted=[])  # each trusts only itself
    async with Node(b, profile=FAST) as nb, served(a, peers=[nb.address]) as s:
        await until(lambda: any(p.state == "unknown-key" for p in s.node.peers()),
                    "b's row to say unknown-key")  # fmt: skip
        status, body = await s.call("GET", "/v1/status")
        assert status == 200
        assert not any("reachable" in w for w in body["warnings"]), body["warnings"]
        assert any("not trusted" in w for w in body["warnings"]), body["warnings"]
