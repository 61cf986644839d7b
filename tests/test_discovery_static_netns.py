"""A static peer given by name is resolved again at each connection: a host that moves
is found again. Needs a network namespace (for a private ``/etc/hosts``); skips or
fails like the mDNS namespace tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_discovery_mdns_netns import PREFIX, ip, make_keys, our_namespaces, require_netns

CHILD = Path(__file__).with_name("netns_move_child.py")
pytestmark = pytest.mark.slow


def test_a_static_peer_that_moves_is_found_again_by_name(tmp_path: Path):
    require_netns()
    ns = f"{PREFIX}c-move"
    etc = Path("/etc/netns") / ns  # `ip netns exec` bind-mounts etc/hosts over /etc/hosts
    made_parent = not etc.parent.exists()
    homes = [tmp_path / "a", tmp_path / "b"]
    make_keys(homes, trusted=homes)
    try:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("")
        r = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(CHILD), str(etc / "hosts"),
             *map(str, homes)],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
    finally:
        ip("netns", "del", ns, check=False)
        shutil.rmtree(etc, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):  # not empty: someone else uses it now
                etc.parent.rmdir()
    assert not our_namespaces(ns) and not etc.exists()
