"""`scripts/demo` is the README's first command: it must keep working."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_and_shows_what_it_claims(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", f"from pathlib import Path; import gossip.demo as d; "
                               f"d.main(Path({str(tmp_path)!r}))"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.count("refused —") == 4 and "ACCEPTED" not in text
    assert "the pre-delete took nothing" in text and "bob has it: True" in text
    assert "is recalled on n1 and n2" in text and "is open on n2 and n3" in text
