"""`scripts/demo` is the README's first command: it must keep working, unattended."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
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
        [sys.executable, str(ROOT / "scripts" / "demo_mesh.py"), "--forgeries", "--dir",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.count("refused —") == 4 and "ACCEPTED" not in text
    assert "the pre-delete took nothing" in text and "bob has it: True" in text


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_the_demo_its_daemons_and_removes_its_keys(short_tmp_path, signum):
    tmp_path = short_tmp_path  # the demo's data dirs go below TMPDIR
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen([str(ROOT / "scripts" / "demo")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in demo.stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not any(x.startswith("running;") for x in seen):
            assert demo.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        base = Path(re.search(r"data in (\S+)", seen[0])[1])
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "".join(seen))]
        assert len(pids) == 3 and base.is_dir() and base.parent == tmp_path
        demo.send_signal(signum)
        assert demo.wait(30) == 0
        reader.join(10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        orphans = [p for p in pids if _running(p)]
        for pid in orphans:  # leave nothing behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert not orphans, f"the demo left its daemons running: {orphans}"
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert "stopped the 3 daemons cleanly" in text, text[-2000:]
    assert not base.exists(), text[-2000:]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
