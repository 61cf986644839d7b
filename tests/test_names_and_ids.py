"""Keyring names and public ids (issue 17, item 6), on real data dirs.

One name names one key and ``self`` is this host's; a key never seen here is trusted with
a note showing its fingerprint, which `gossip id` prints too; a mistyped id (one changed
character) is never accepted silently: given with its fingerprint it is refused, given
alone it comes with the note and a fingerprint that differs from the host's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crdt import Identity, Replica, records
from crdt.identity import fingerprint
from gossip.errors import Conflict, Invalid
from gossip.ops.session import LocalSession
from tests.test_cli import failed, gossip, ok


def one_typo(key: str) -> str:
    """``key`` with its 11th character changed: still a well-formed public id."""
    wrong = "A" if key[10] != "A" else "B"
    return key[:10] + wrong + key[11:]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    return home


def test_self_is_reserved_and_names_are_unique(home: Path) -> None:
    peer, other = Identity.generate().public_id, Identity.generate().public_id
    with LocalSession(home) as s:
        for name in ("self", "Self", " self "):
            with pytest.raises(Invalid) as ei:
                s.call("trust_add", key=peer, name=name)
            assert ei.value.field == "name", ei.value
        s.call("trust_add", key=peer, name="desk")
        with pytest.raises(Conflict) as ei:
            s.call("trust_add", key=other, name="Desk")
        assert "desk" in str(ei.value) and fingerprint(peer) in str(ei.value), ei.value
        assert s.call("trust_add", key=peer, name="desk")["updated"]  # its own name again
        names = [e["name"] for e in s.call("trust_list")]
    assert names.count("self") == 1 and names.count("desk") == 1, names
    failed(gossip(home, "trust", "add", other, "--name", "self"), "'self' names this host")


def test_a_key_never_seen_says_so_with_its_fingerprint(home: Path, tmp_path: Path) -> None:
    seen_home = tmp_path / "b"
    with Replica.open(seen_home) as b:
        b.put(records.memory(b.identity, "b was here", category="learning", ts=1))
        seen = b.author
    ok(seen_home, "export", str(tmp_path / "b.bin"))
    ok(home, "import", str(tmp_path / "b.bin"))
    never = Identity.generate().public_id
    with LocalSession(home) as s:
        known = s.call("trust_add", key=seen, name="b")
        unknown = s.call("trust_add", key=never, name="c")
    assert known["seen"] and known["note"] is None, known
    assert known["fingerprint"] == fingerprint(seen)
    assert not unknown["seen"] and fingerprint(never) in unknown["note"], unknown
    assert "never seen" in unknown["note"]


def test_one_changed_character_is_caught_or_surfaced(home: Path, tmp_path: Path) -> None:
    real = Identity.generate().public_id
    typo = one_typo(real)
    assert fingerprint(typo) != fingerprint(real)
    # With the fingerprint read out from the other host: refused, the keyring untouched.
    out = gossip(home, "trust", "add", typo, "--fingerprint", fingerprint(real).lower())
    failed(out, "mistyped")
    assert typo not in ok(home, "trust", "list")
    # The fingerprint as typed by a person (no dash, 0 for O, 1 for I) still matches.
    spoken = fingerprint(real).replace("-", " ").replace("O", "0").replace("I", "1")
    ok(home, "trust", "add", real, "--fingerprint", spoken)
    # Without it: trusted, but never silently: the note and the typo's own fingerprint.
    out = gossip(home, "trust", "add", typo, "--name", "typo")
    assert out.returncode == 0, out.stderr
    assert "never seen" in out.stderr and fingerprint(typo) in out.stderr, out.stderr


def test_gossip_id_prints_the_fingerprint(home: Path) -> None:
    out = gossip(home, "id")
    assert out.returncode == 0
    key = out.stdout.strip()
    assert len(out.stdout.splitlines()) == 1, "stdout stays the id alone (scripts read it)"
    assert fingerprint(key) in out.stderr, out.stderr
