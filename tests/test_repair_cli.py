"""`gossip repair` as a user runs it (issue 17, item 5): real daemons on 127.0.0.1, real
processes, real SQLite files. A byte changes in a stored update on A; every command says
what to run; `serve` refuses instead of rebuilding; `repair` refuses while a daemon holds
the data dir (naming how to stop it), then keeps what verifies; `gossip sync` with B
brings back the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

from gossip.ops.session import LocalSession
from tests.daemons import Daemon, free_port, gossip, make_cluster, ok
from tests.test_repair import flip_in_update


def recalled(home: Path) -> set[str]:
    return {m["text"] for m in json.loads(ok(home, "recall", "--limit", "100", "--json",
                                             "--include-untrusted"))}  # fmt: skip


def test_repair_from_the_command_line_then_a_peer_refills(tmp_path: Path, daemons) -> None:
    a, b = make_cluster(tmp_path, 2)
    # Twelve writes, one signed update each, through the operation `gossip remember`
    # runs, in this process: twelve processes would prove nothing more here.
    with LocalSession(a.home) as session:
        for i in range(12):
            session.call("remember", text=f"lesson {i} about provider x", category="learning")
    daemons.append(b.start())
    ok(a.home, "sync", b.address)  # no daemon on A: the command runs a node for it
    want = recalled(a.home)
    assert recalled(b.home) == want and len(want) == 12

    # While A's daemon runs, repair is refused, naming how to stop it.
    daemons.append(a.start())
    refused = gossip(a.home, "repair")
    assert refused.returncode == 1, refused
    assert "systemctl --user stop sm-gossip" in refused.stderr, refused.stderr
    assert f"kill {a.proc.pid}" in refused.stderr, refused.stderr  # type: ignore[union-attr]
    assert not (a.home / "damaged").exists()
    a.stop()

    flip_in_update(a.home, 6)
    for args in (("recall",), ("status",), ("export", str(tmp_path / "x.bin"))):
        out = gossip(a.home, *args)
        assert out.returncode == 1 and "`gossip repair`" in out.stderr, (args, out.stderr)
    served = Daemon(a.home, free_port(), [])
    served.start(wait=False)
    daemons.append(served)
    assert served.proc is not None and served.proc.wait(30) == 1
    assert "`gossip repair`" in served.log, served.log
    init = gossip(a.home, "init")
    assert init.returncode == 1 and "host.key" in init.stderr

    repaired = gossip(a.home, "repair", "--json")
    assert repaired.returncode == 0, repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["dropped"] == 1 and report["keyring"] == 1, report
    assert report["kept"] >= 6 and report["moved_to"].startswith(str(a.home / "damaged")), report
    human = gossip(a.home, "repair")  # a healthy store now: everything kept
    assert human.returncode == 0 and human.stdout.startswith("kept "), human
    assert "dropped 0" in human.stdout and "host.key" in human.stderr, human

    assert len(recalled(a.home)) < len(want)
    synced = ok(a.home, "sync", b.address)
    assert "0 failed" in synced, synced
    assert recalled(a.home) == want
