"""Real-process chaos (issue 7): five daemons on loopback, a writer on each, 50 random
SIGKILL/restart events; every acknowledged write ends on every node, nothing unexpected
appears, every store passes ``PRAGMA integrity_check``. See tests/chaos.py and
docs/reliability.md; ``scripts/chaos --events 200 --seed S`` is the long run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .chaos import run

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("GOSSIP_CHAOS_SEED", "7"))


def test_five_daemons_survive_50_sigkills_under_a_write_load(tmp_path: Path, daemons: list):
    result = run(tmp_path, seed=SEED, events=50, started=daemons)
    assert result.ok, f"seed {SEED}: {result.problems}"
    assert result.events >= 50 and result.lost == 0 and result.unexpected == 0
    assert result.integrity and set(result.integrity.values()) == {"ok"}
