"""`scripts/demo` is the README's first command: it must keep working, unattended."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_scripts_demo_seconds_20_shows_the_memory_and_the_breaker_arriving(tmp_path):
    out = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--seconds", "20", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, start_new_session=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    assert "arrived on n1 and n2" in text and "by n3" in text
    assert "is open on n2 and n3" in text and "provider:x  open" in text
    assert "n1$ gossip peers" in text and text.count("  alive  ") >= 2
    assert "stopped the 3 daemons cleanly" in text
    assert "received" in text  # n2's log shows what it got from its peers
    for n in ("n1", "n2", "n3"):
        assert not (tmp_path / n / "api.sock").exists()  # every daemon stopped


def test_the_forgery_walk_through_refuses_every_forgery(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "gossip.demo", "--forgeries", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.count("refused —") == 4 and "ACCEPTED" not in text
    assert "the pre-delete took nothing" in text and "bob has it: True" in text
