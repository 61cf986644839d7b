"""The TypeScript client (clients/typescript/, issue 20): its own tests, run with Node's
test runner against real daemons started from this Python (``GOSSIP_PYTHON``), so
``scripts/test`` and CI run them. Dev dependencies come from the committed lockfile
(``npm ci``), installed only when ``node_modules`` is missing or was made from another
lockfile. No Node is a failure, never a skip: CI must run these.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "typescript"
STAMP = "node_modules/.sm-gossip-lockfile-sha256"  # the lockfile node_modules was made from
NODE_MAJOR = 20


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the TypeScript client's tests need Node.js "
                    f">= {NODE_MAJOR} and npm (https://nodejs.org); they are not optional")
    return found


def _run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(args, cwd=PACKAGE, capture_output=True, text=True,
                             timeout=timeout, env=env)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(args)} took over {timeout:.0f} s:\n{e.stdout}\n{e.stderr}")
    if out.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-20000:]}\n"
                    f"{out.stderr[-5000:]}")  # fmt: skip
    return out.stdout


@pytest.fixture(scope="module")
def built() -> None:
    node, npm = _tool("node"), _tool("npm")
    version = _run([node, "--version"], 30).strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        pytest.fail(f"the TypeScript client needs Node.js >= {NODE_MAJOR}; found {version}")
    lock = hashlib.sha256((PACKAGE / "package-lock.json").read_bytes()).hexdigest()
    stamp = PACKAGE / STAMP
    if not stamp.exists() or stamp.read_text().strip() != lock:
        _run([npm, "ci", "--no-audit", "--no-fund"], 600)
        stamp.write_text(lock + "\n")
    tsc = "node_modules/typescript/bin/tsc"
    _run([node, tsc, "-p", "tsconfig.json"], 300)  # dist/, which the tests import
    _run([node, tsc, "-p", "tsconfig.examples.json"], 300)  # the README's example type-checks


@pytest.mark.slow
def test_typescript_client_against_real_daemons(built: None) -> None:
    env = {**os.environ, "GOSSIP_PYTHON": sys.executable}
    tests = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "test").glob("*.test.mjs"))
    assert tests, "no TypeScript tests found"
    out = _run([_tool("node"), "--test", *tests], 600, env)
    # A `test.skip` or `todo` in a .test.mjs would pass unseen: none may (CI must run all).
    for line in ("# fail 0", "# skipped 0", "# todo 0", "# cancelled 0"):
        assert line in out, f"{line!r} missing from the summary:\n{out[-5000:]}"
    print(out[-400:])
