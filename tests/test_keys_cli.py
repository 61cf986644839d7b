"""`gossip trust invite/join`, `trust remove` (a signed revoke), `key rotate` and `show`,
as a user runs them: real processes, a real daemon on 127.0.0.1, real data dirs."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from crdt.identity import RETIRED_DIR
from tests.daemons import Daemon, free_port
from tests.test_cli import as_json, failed, gossip, ok


def test_invite_join_revoke_and_rotate_from_the_command_line(tmp_path: Path, daemons):
    a_home, b_home, c_home = (tmp_path / n for n in ("a", "b", "c"))
    a_id = ok(a_home, "init", "--name", "a").strip()
    b_id = ok(b_home, "init", "--name", "b").strip()
    ok(c_home, "init", "--name", "c")
    a = Daemon(a_home, free_port(), [])
    daemons.append(a.start())

    # Two commands: an invitation on a member (through its daemon), a join on the newcomer
    # (no daemon there: the command runs a node just long enough).
    token = ok(a_home, "trust", "invite", "--name", "b-laptop").strip()
    assert token.startswith("smg1.") and "\n" not in token
    # The token on stdin: no secret on a command line (review finding 10).
    out = gossip(b_home, "trust", "join", "--json", stdin=token.encode() + b"\n")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    joined = json.loads(out.stdout)
    assert joined["inviter"] == a_id
    assert {e["id"]: e["how"] for e in as_json(b_home, "trust", "list")}[a_id] == "keyring"
    entries = {e["id"]: e for e in as_json(a_home, "trust", "list")}
    assert entries[b_id]["name"] == "b-laptop" and entries[b_id]["trusted"]
    # The token is single use, and its secret never reaches the daemon's log.
    failed(gossip(c_home, "trust", "join", "-", stdin=token.encode()), "already used")
    secret = json.loads(_unb64(token.removeprefix("smg1.")))["s"]
    assert secret not in a.log
    failed(gossip(c_home, "trust", "join", stdin=token[:-4].encode()), "damaged")
    late = ok(a_home, "trust", "invite", "--ttl", "0.001").strip()
    time.sleep(0.01)
    joined_late = gossip(c_home, "trust", "join", late)  # on the command line: a warning
    assert joined_late.returncode == 1 and "expired" in joined_late.stderr
    assert "warning: a token on the command line" in joined_late.stderr

    # b writes; a gets it; a (which vouched for b) revokes b retroactively: a signed record.
    mid = ok(b_home, "remember", "b's lesson about provider x", "--category", "learning").strip()
    ok(b_home, "sync", a.address)
    assert [m["id"] for m in as_json(a_home, "recall", "provider")] == [mid]
    out = ok(a_home, "trust", "remove", b_id, "--retroactive")
    assert out.startswith(f"revoked {b_id}")
    assert as_json(a_home, "recall", "provider") == []
    shown = ok(a_home, "show", mid)  # still in the document, and explained
    assert "NOT trusted" in shown and "revoked by" in shown and "retroactively" in shown

    # b rotates (no daemon): a new key, the old one kept 0600 under retired/.
    new = ok(b_home, "key", "rotate").strip()
    assert new != b_id and ok(b_home, "id").strip() == new
    kept = b_home / RETIRED_DIR / f"{b_id}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    entries = {e["id"]: e for e in as_json(b_home, "trust", "list")}
    assert entries[b_id]["name"] == "self (retired)" and entries[new]["how"] == "self"
    assert [m["id"] for m in as_json(b_home, "recall", "provider")] == [mid]  # still counts


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_key_rotate_through_the_daemon(tmp_path: Path, daemons):
    home = tmp_path / "a"
    old = ok(home, "init", "--name", "a").strip()
    d = Daemon(home, free_port(), [])
    daemons.append(d.start())
    ok(home, "remember", "before the rotation", "--category", "learning")
    new = ok(home, "key", "rotate").strip()
    assert new != old and d.get("/v1/status")["id"] == new
    ok(home, "remember", "after the rotation", "--category", "learning")
    authors = {m["author"] for m in as_json(home, "recall")}
    assert authors == {old, new}
    d.stop()
    assert ok(home, "id").strip() == new  # the daemon installed the new key file
