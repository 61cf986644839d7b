"""mDNS discovery, the pure parts: our TXT record and reading others' (the driver runs
over real multicast in test_discovery_mdns_netns.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from gossip.config import MdnsSettings, Profile
from gossip.discovery.mdns import (
    SERVICE_TYPE,
    Sighting,
    _advertised,
    instance_name,
    parse_service,
    txt_properties,
)
from gossip.node import Node
from gossip.peers import PeerInfo

from .test_node import create_hosts, recalled, until

ID = "kSU0yMj0MmRsmFvvmsA3aU8qCdwAQgdSYuPJK8VEfnw"


def test_our_txt_record_fits_and_names_us():
    props = txt_properties(ID, "build-box " * 20, 1)
    assert props["id"] == ID and props["v"] == "1" and len(props["name"]) == 64
    assert all(len(f"{k}={v}".encode()) <= 255 for k, v in props.items())
    name = instance_name(ID)
    assert name.endswith("." + SERVICE_TYPE) and len(name.split(".")[0]) <= 63
    assert instance_name(ID) == name != instance_name(ID[::-1])


def test_a_sighting_carries_the_claimed_id_and_usable_addresses():
    s = parse_service(
        "x." + SERVICE_TYPE,
        {"id": ID, "v": "1", "name": "laptop"},
        ["10.0.0.7", "127.0.0.1", "169.254.3.4", "0.0.0.0", "10.0.0.7", "bogus"],
        7471,
        version=1,
    )
    assert s == Sighting("x." + SERVICE_TYPE, ID, "laptop", ("10.0.0.7:7471",))


def test_what_is_not_a_peer_we_can_talk_to_is_ignored():
    ok = {"id": ID, "v": "1"}
    assert parse_service("x", {**ok, "v": "2"}, ["10.0.0.7"], 7471, version=1) is None
    assert parse_service("x", {"id": ID}, ["10.0.0.7"], 7471, version=1) is None
    assert parse_service("x", ok, ["10.0.0.7"], None, version=1) is None
    assert parse_service("x", ok, ["10.0.0.7"], 0, version=1) is None
    assert parse_service("x", ok, ["127.0.0.1"], 7471, version=1) is None


def test_a_malformed_id_is_no_claim_at_all():
    for bad in ("", "short", ID + "x", ID[:-1] + "!", None):
        s = parse_service(
            "x", {"id": bad, "v": "1", "name": "\x1b[31m"}, ["10.0.0.7"], 1, version=1
        )
        assert s is not None and s.key is None and s.name == ""


async def test_no_usable_interface_is_a_warning_not_an_error(tmp_path, no_leaks):
    settings = MdnsSettings(interfaces=("no-such-if0",))
    async with Node(tmp_path / "n", profile=Profile.local(), mdns=True,
                    mdns_settings=settings) as node:  # fmt: skip
        for _ in range(200):
            (status,) = [d for d in node.discovery() if d.source == "mdns"]
            if status.state == "warning":
                break
            await asyncio.sleep(0.01)
        assert status.state == "warning" and "no-such-if0" in status.detail
        await node.remember("still works")
        assert [m.text for m in node.recall("still works")] == ["still works"]


def test_what_we_advertise_for_each_kind_of_listen_address():
    ifs = ["10.0.0.5", "192.168.1.5"]
    assert _advertised("0.0.0.0", ifs) == (ifs, "")
    assert _advertised("10.0.0.5", ifs) == (["10.0.0.5"], "")
    assert _advertised("desk.lan", ifs) == (ifs, "")
    addrs, problem = _advertised("127.0.0.1", ifs)
    assert addrs == [] and "loopback" in problem  # browse only, with a warning
    addrs, problem = _advertised("fd00::5", ifs)
    assert addrs == [] and "IPv4 only" in problem


def closed_ports(n: int) -> list[int]:
    """Ports on 127.0.0.1 where nobody listens (a connection is refused at once)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def test_forged_claims_and_goodbyes_never_cut_off_a_trusted_peer(tmp_path, no_leaks):
    """A liar on the LAN advertises a trusted peer's key with eight addresses of its own,
    then cycles goodbyes for it: the peer keeps its real address and stays up. (The
    forged records go in where the mDNS driver hands them to the node.)"""
    homes = [tmp_path / "a", tmp_path / "b"]
    _, b_id = await asyncio.to_thread(create_hosts, homes)
    settings = MdnsSettings(interfaces=("no-such-if0",))  # the driver runs, hears nothing
    async with contextlib.AsyncExitStack() as stack:
        b = await stack.enter_async_context(
            Node(homes[1], listen="127.0.0.1:0", profile=Profile.local())
        )
        a = await stack.enter_async_context(
            Node(homes[0], listen="127.0.0.1:0", profile=Profile.local(), peers=[b.address],
                 mdns=True, mdns_settings=settings)
        )  # fmt: skip

        def row() -> PeerInfo | None:
            return next((r for r in a.peers() if r.key == b_id), None)

        await until(lambda: (r := row()) is not None and r.state == "alive", "a syncs with b")
        assert a.membership.mdns is not None
        lies = tuple(f"127.0.0.1:{p}" for p in closed_ports(8))
        forged = Sighting("sm-gossip-forged." + SERVICE_TYPE, b_id, "b", lies)
        a.membership.mdns.on_seen(forged)
        r = row()
        assert r is not None and r.address == b.address and r.addresses[0] == b.address, r
        assert set(r.unproven) == set(r.addresses[1:]) <= set(lies) and not r.claimed
        await a.remember("after the forged claim")
        await until(lambda: recalled(b, "after the forged claim"), "the memory at b")
        for _ in range(3):
            a.membership.mdns.on_gone(forged)
            r = row()
            assert r is not None and r.state == "alive" and "mdns" not in r.sources, r
            assert r.addresses == (b.address,) and r.next_attempt <= a._now_ms() + 1000
            a.membership.mdns.on_seen(forged)
        await a.remember("after the forged goodbyes")
        await until(lambda: recalled(b, "after the forged goodbyes"), "the memory at b")
        assert row().state == "alive"  # type: ignore[union-attr]


async def test_closing_the_node_never_starts_mdns_again(tmp_path, no_leaks, caplog):
    """mDNS rescans every ``readdress`` seconds; a rescan that fires while the node
    closes (after the goodbyes, while the transport closes) must not register again."""
    caplog.set_level(logging.DEBUG, logger="gossip.discovery.mdns")
    profile = Profile.local().with_(readdress=0.001)  # rescans as often as can be
    settings = MdnsSettings(interfaces=("no-such-if0",))  # every rescan tries to start

    def starts() -> int:
        return sum(r.getMessage().startswith("mDNS: starting") for r in caplog.records)

    for _ in range(5):  # the race is in the timing: give it several chances
        async with Node(tmp_path / "n", profile=profile, mdns=True,
                        mdns_settings=settings) as node:  # fmt: skip
            await until(lambda: starts() >= 3, "mDNS retrying to start")
            before = starts()
        assert not node.running
        assert starts() == before, "mDNS started again while the node closed"
        caplog.clear()
