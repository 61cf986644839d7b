"""What a `gossip` command imports before it answers (issue 18: the start-up a user pays on
every command). A command that talks to a running daemon over ``api.sock`` needs neither
the replica (pycrdt), the semantic index (numpy, the embedding model), the keys' crypto
(cryptography, PyNaCl), the store (sqlite3), an event loop, nor a node's network stack
(aiohttp, zeroconf): the daemon has them. Checked by the modules a real process loaded,
never by a time (scripts/bench/startup.py measures the time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.daemons import Daemon, free_port, ok

# Each of these costs a user milliseconds to tens of milliseconds per command.
HEAVY = ("pycrdt", "numpy", "wordllama", "cryptography", "nacl", "sqlite3", "asyncio",
         "aiohttp", "zeroconf", "crdt.replica", "crdt.views.core", "crdt.semantic",
         "gossip.peers")  # fmt: skip

# Runs commands through ``gossip.cli.main`` in one fresh interpreter, then says which of
# HEAVY it loaded (on the last line of stdout).
_CHILD = """
import json, sys
from gossip.cli import main
codes = [main(list(args)) for args in json.loads(sys.argv[1])]
heavy = json.loads(sys.argv[2])
print(json.dumps({"codes": codes, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _run(home: Path, *commands: list[str]) -> tuple[list[int], list[str], str]:
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(commands), json.dumps(HEAVY)],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    *shown, last = done.stdout.splitlines()
    found = json.loads(last)
    return found["codes"], found["loaded"], "\n".join(shown)


def test_commands_through_a_daemon_import_none_of_the_heavy_modules(
    tmp_path: Path, daemons: list
) -> None:
    home = tmp_path / "h"
    ok(home, "init", "--name", "h")
    d = Daemon(home, free_port(), []).start()
    daemons.append(d)
    codes, loaded, shown = _run(
        home,
        ["remember", "the proxy drops idle sockets after 30 s", "--category", "learning"],
        ["recall", "proxy", "--mode", "lexical"],
        ["recall", "proxy"],
        ["status"],
    )
    assert codes == [0, 0, 0, 0], shown
    assert "the proxy drops idle sockets" in shown  # the daemon answered the recall
    assert loaded == [], f"a command through the daemon imported {loaded}"


def test_the_same_commands_without_a_daemon_open_the_data_dir(tmp_path: Path) -> None:
    """The counterpart: with no daemon the command opens the replica itself, so it does
    load them (the check above would catch a command that silently went local)."""
    home = tmp_path / "h"
    ok(home, "init", "--name", "h")
    codes, loaded, shown = _run(
        home, ["remember", "the proxy drops idle sockets", "--category", "learning"],
        ["recall", "proxy", "--mode", "lexical"],
    )
    assert codes == [0, 0], shown
    assert "the proxy drops idle sockets" in shown
    assert {"pycrdt", "sqlite3", "crdt.replica"} <= set(loaded)


def test_version_imports_no_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from gossip.cli import main; main(['--version']); "
         "import json; print(json.dumps(sorted(m for m in sys.modules "
         "if m.startswith(('gossip.', 'crdt')))))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    version, modules = done.stdout.splitlines()
    assert version.startswith("sm-gossip ")
    # the package's errors (gossip/__init__.py), and none of the commands' modules
    assert set(json.loads(modules)) <= {"crdt", "crdt.errors", "gossip.errors", "gossip.cli"}
