"""peers.json (gossip/peerfile.py): what a node last learned of each peer's state vector,
kept for a restarted node and for commands with no daemon. Real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gossip import peerfile
from gossip.peerfile import Known

K1, K2, K3 = "a" * 43, "b" * 43, "c" * 43


def _known(key: str, sv_at: int, clock: int = 3, name: str = "") -> Known:
    return Known(key, name, ("127.0.0.1:7471",), "static", {7: clock}, sv_at, sv_at)


def test_save_merges_newest_first_per_key_and_drops_forgotten_peers(tmp_path: Path):
    peerfile.save(tmp_path, [_known(K1, 100, 2, "n1"), _known(K2, 100)], {7: 5}, 150)
    saved = peerfile.load(tmp_path)
    assert (saved.saved_at, saved.ours) == (150, {7: 5})
    assert saved.peers[K1] == _known(K1, 100, 2, "n1")
    # A node that knew only K1, and older than the file: the file's K1 stays, K2 too.
    peerfile.save(tmp_path, [_known(K1, 50, 1)], {7: 6}, 200)
    assert peerfile.load(tmp_path).peers[K1].sv == {7: 2}
    peerfile.save(tmp_path, [_known(K1, 300, 4), _known(K3, 300)], {7: 6}, 300,
                  forgotten=[K2])  # fmt: skip
    saved = peerfile.load(tmp_path)
    assert sorted(saved.peers) == [K1, K3] and saved.peers[K1].sv == {7: 4}


def test_the_file_is_0600_whatever_the_umask_and_bounded(tmp_path: Path):
    old = os.umask(0)
    try:
        peerfile.save(tmp_path, [_known(f"{i:043d}", i) for i in range(300)], {}, 1)
    finally:
        os.umask(old)
    path = tmp_path / peerfile.PEER_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    peers = peerfile.load(tmp_path).peers
    assert len(peers) == peerfile.MAX_PEERS and min(e.sv_at for e in peers.values()) == 44
    assert [p.name for p in tmp_path.iterdir()] == [peerfile.PEER_FILE]  # no temporary left


def test_a_damaged_file_is_ignored_and_replaced(tmp_path: Path):
    path = tmp_path / peerfile.PEER_FILE
    for junk in (b"", b"not json", b"[]", b'{"saved_at": 1, "ours": [], "peers": [{}]}',
                 b'{"saved_at": 1, "ours": [["x", 1]], "peers": []}',
                 b'{"saved_at": 1, "ours": [[1, -1]], "peers": []}'):  # fmt: skip
        path.write_bytes(junk)
        assert peerfile.load(tmp_path) == peerfile.Saved(), junk
    peerfile.save(tmp_path, [_known(K1, 10)], {}, 20)
    assert list(peerfile.load(tmp_path).peers) == [K1]
    assert peerfile.load(tmp_path / "nowhere") == peerfile.Saved()
