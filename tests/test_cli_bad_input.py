"""The `gossip` command given bad arguments and bad files: a clear message and an exit
code (1 for an error, one line ``gossip: …`` on stderr; 2 for a usage error, with the
usage), never a traceback, never an "unexpected error", never a lost file.

The argument fuzz calls ``gossip.cli.main`` in this process (hundreds of cases; a real
process costs ~0.3 s each); the bad files go through real processes, as a user meets them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip.cli import EXPORT_MAGIC, main
from tests.test_cli import failed, gossip, init, ok

COMMANDS = [
    ["init"], ["id"], ["version"], ["remember"], ["recall"], ["retract"],
    ["breaker"], ["breaker", "trip"], ["breaker", "reset"], ["breaker", "list"],
    ["bench"], ["bench", "record"], ["bench", "show"],
    ["trust"], ["trust", "add"], ["trust", "remove"], ["trust", "list"],
    ["export"], ["import"], ["frobnicate"], [],
    # Each command with its required arguments, so that the fuzz gets past argparse:
    ["remember", "a lesson", "--category", "c"], ["retract", "abcdef"],
    ["breaker", "trip", "b", "--reason", "r", "--cooldown", "60"], ["breaker", "reset", "b"],
    ["bench", "record", "s", "m", "1"], ["trust", "add", "A" * 43], ["trust", "remove", "x"],
    ["recall", "lesson"],
]  # fmt: skip
OPTIONS = ["--category", "--subject", "--tag", "--expires-in", "--limit", "--author",
           "--include-untrusted", "--json", "--reason", "--cooldown", "--failures", "--unit",
           "--name", "--yjs", "--home", "--", "-h"]  # fmt: skip
VALUES = ["", " ", "0", "-1", "1", "1e309", "-1e309", "nan", "inf", "1.5", "9" * 40,
          "x" * 5000, "provider:x", "kimi-coding/k2p5", "é\u202e\u200b", "\x1b[2J", "a\nb",
          "-" + "A" * 42, "A" * 43, "A" * 44, "self", "abcdef", "0" * 64, "/", "-",
          "/nonexistent/dir/file", "../..", "%s%n", "{}", "[]", "null", "--home"]  # fmt: skip


def run_main(argv: list[str], stdin: bytes = b"") -> tuple[int, str]:
    """``main(argv)`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    old_in = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: usage errors and -h
                code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.stdin = old_in
    return code, err.getvalue()


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A data dir with a few records, a file, a directory, and a place with no data dir."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    home = root / "home"
    assert run_main(["--home", str(home), "init"])[0] == 0
    assert run_main(["--home", str(home), "remember", "a lesson", "--category", "c"])[0] == 0
    (root / "file").write_bytes(b"not a dir")
    (root / "dir").mkdir()
    return {"home": home, "file": root / "file", "dir": root / "dir", "missing": root / "none"}


def test_bad_arguments_never_give_a_traceback(
    homes: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `export VALUE` writes relative paths: not in the repo
    key_before = (homes["home"] / "host.key").read_bytes()
    paths = [str(p) for p in homes.values()] + [str(homes["home"] / "host.key"),
                                                  str(homes["home"] / "store.db")]  # fmt: skip
    tokens = st.sampled_from(OPTIONS) | st.sampled_from(VALUES) | st.sampled_from(paths)
    seen: dict[int, int] = {}

    file_commands = st.builds(lambda c, p: [c, p], st.sampled_from(["export", "import"]),
                              st.sampled_from(paths))  # fmt: skip

    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(command=st.sampled_from(COMMANDS) | file_commands,
           rest=st.lists(tokens, max_size=3),
           where=st.sampled_from(["home", "home", "home", "file", "dir", "missing"]))  # fmt: skip
    def fuzz(command: list[str], rest: list[str], where: str) -> None:
        argv = ["--home", str(homes[where]), *command, *rest]
        if "init" in command and where == "missing":
            return  # would create a data dir: fine, but not what is fuzzed here
        code, err = run_main(argv)
        seen[code] = seen.get(code, 0) + 1
        assert "Traceback" not in err, (argv, err)
        assert "unexpected error" not in err, (argv, err)
        assert code in (0, 1, 2), (argv, code, err)
        if code == 1:
            assert err.startswith("gossip: ") and err.count("\n") == 1, (argv, err)
        if code == 2:
            assert "usage: gossip" in err, (argv, err)

    fuzz()
    print(f"cli argument fuzz: exit codes {seen}")
    assert {1, 2} <= set(seen)
    # Nothing the fuzz did may have cost the data dir its key or its store.
    assert (homes["home"] / "host.key").read_bytes() == key_before
    assert run_main(["--home", str(homes["home"]), "recall"])[0] == 0


def test_export_never_overwrites_the_data_dirs_own_files(tmp_path: Path) -> None:
    """Found by the argument fuzz: `gossip export <home>/host.key` replaced the private key
    with the export and said "exported" (exit 0): the host's identity was gone for good.
    The same for the store, its config and its lock, also through a symlink or `..`."""
    home = tmp_path / "h"
    init(home)
    ok(home, "remember", "keep me", "--category", "c")
    files = {p.name: p.read_bytes() for p in home.iterdir() if p.name != "lock"}  # lock: a pid
    (tmp_path / "dir-link").symlink_to(home)
    targets = [home / name for name in files] + [home / ".." / "h" / "store.db",
                                                 tmp_path / "dir-link" / "host.key"]  # fmt: skip
    targets.append(home / "lock")
    failed(gossip(home, "export", str(home / "host.key")), "data dir")  # as the user met it
    for target in targets:  # and every other own file, in this process
        code, err = run_main(["--home", str(home), "export", str(target)])
        assert code == 1 and "data dir" in err and err.count("\n") == 1, (target, err)
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.name != "lock"} == files
    # Nor another data dir's (the fuzz met it: `--home OTHER export HOME/host.key`).
    other = tmp_path / "other"
    init(other)
    code, err = run_main(["--home", str(other), "export", str(home / "host.key")])
    assert code == 1 and "data dir" in err, err
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.name != "lock"} == files
    # A symlink to the key is replaced itself (a rename does not follow it): allowed.
    (tmp_path / "key-link").symlink_to(home / "host.key")
    assert run_main(["--home", str(home), "export", str(tmp_path / "key-link")])[0] == 0
    assert not (tmp_path / "key-link").is_symlink()
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.name != "lock"} == files
    assert "keep me" in ok(home, "recall")


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    """What `gossip import` and `gossip export` make of bad files, and a data dir whose
    files are not what they should be. Each kind once as a real process; the variants of
    a bad export file in this process (the same code, without 0.3 s a case)."""
    home = tmp_path / "h"
    init(home)
    ok(home, "remember", "a lesson", "--category", "c")
    export = tmp_path / "good.bin"
    ok(home, "export", str(export))
    good = export.read_bytes()
    bad = {
        "empty": b"",
        "random": os.urandom(3000),
        "truncated": good[:-7],
        "other version": b"sm-gossip export 7\n" + good[len(EXPORT_MAGIC):],
        "huge length": EXPORT_MAGIC + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
        "junk updates": EXPORT_MAGIC + b"\x05hello\x00",
    }
    for name, data in bad.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        code, err = run_main(["--home", str(home), "import", str(path)])
        assert code == 1 and "Traceback" not in err, (name, err)
        if name != "junk updates":  # that one lists what it refused, then exits 1
            assert err.startswith("gossip: ") and err.count("\n") == 1 and str(path) in err
        code, err = run_main(["--home", str(home), "import", "-"], stdin=data)
        assert code == 1 and "Traceback" not in err, (name, err)
    failed(gossip(home, "import", str(tmp_path / "random.bin")), "random.bin", "not an")
    failed(gossip(home, "import", str(tmp_path)), str(tmp_path), "directory")
    failed(gossip(home, "import", str(tmp_path / "missing.bin")), "missing.bin")
    failed(gossip(home, "export", str(tmp_path / "no" / "such" / "dir.bin")), "no directory")
    failed(gossip(home, "export", str(tmp_path)), str(tmp_path), "directory")
    # A data dir that is a file; a store that is a directory; an empty key file.
    failed(gossip(export, "recall"), "gossip init")
    (home / "store.db").rename(tmp_path / "store.db")
    (home / "store.db").mkdir()
    failed(gossip(home, "recall"), "store.db")
    (home / "store.db").rmdir()
    (tmp_path / "store.db").rename(home / "store.db")
    (home / "host.key").rename(tmp_path / "host.key")
    (home / "host.key").write_bytes(b"")
    os.chmod(home / "host.key", 0o600)
    failed(gossip(home, "id"), "host.key")
