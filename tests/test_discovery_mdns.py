"""mDNS discovery, the pure parts: our TXT record and reading others' (the driver runs
over real multicast in test_discovery_mdns_netns.py)."""

from __future__ import annotations

import asyncio

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
