"""The `gossip` command as a user runs it: a real process, a real data dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def gossip(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "gossip.cli", *args], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_init_then_id_prints_the_same_public_id(tmp_path):
    home = tmp_path / "h"
    init = gossip(home, "init")
    assert init.returncode == 0, init.stderr
    ident = gossip(home, "id")
    assert ident.returncode == 0
    assert ident.stdout.strip() == init.stdout.strip()
    assert len(ident.stdout.strip()) == 43 and ident.stdout.count("\n") == 1
    assert (home / "host.key").stat().st_mode & 0o777 == 0o600
    assert (home / "store.db").stat().st_mode & 0o777 == 0o600


def test_init_refuses_to_overwrite_an_identity(tmp_path):
    home = tmp_path / "h"
    first = gossip(home, "init").stdout
    again = gossip(home, "init")
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr
    assert "Traceback" not in again.stderr
    assert gossip(home, "id").stdout == first


def test_id_without_init_is_a_clear_error(tmp_path):
    out = gossip(tmp_path / "nothing", "id")
    assert out.returncode == 1
    assert "gossip init" in out.stderr and "Traceback" not in out.stderr


def test_world_readable_key_is_refused_by_the_cli(tmp_path):
    home = tmp_path / "h"
    gossip(home, "init")
    os.chmod(home / "host.key", 0o644)
    out = gossip(home, "id")
    assert out.returncode == 1
    assert "chmod 600" in out.stderr and "Traceback" not in out.stderr
