"""Views that cannot keep their file (``views.sqlite``): a directory in its place, a lock
another process holds past the busy timeout (at the open and in the middle of a run), a
full disk (a small tmpfs). The views fall back to memory for the run, say why in a
warning and in ``unkept``, answer exactly as views built afresh, and leave the file as
it is: nothing is moved aside as damaged. A daemon starts and serves, keeps serving when
its file is locked mid-run, and its status warns."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.daemons import Daemon

from crdt import records
from crdt.views.kept import VIEWS_FILE
from tests.test_views_kept import T, _filled, _kept, _open, _prepared, _same_as_afresh

IN_MEMORY = "held in memory for this run"


def _nothing_aside(home: Path) -> None:
    assert not [p.name for p in home.iterdir() if ".corrupt-" in p.name]


def _warned(caplog: pytest.LogCaptureFixture, *words: str) -> str:
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    for word in (IN_MEMORY, "restart", VIEWS_FILE, *words):
        assert word in warned[0], warned[0]
    assert "damaged" not in warned[0]
    return warned[0]


def test_a_directory_in_place_of_the_file_leaves_the_views_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, _ = _filled(home)
    (home / VIEWS_FILE).mkdir()
    with r:
        with caplog.at_level(logging.INFO, logger="crdt.views"), _kept(r) as v:
            assert v.path is None and v.unkept and "SQLITE_CANTOPEN" in v.unkept
            _warned(caplog, "SQLITE_CANTOPEN")
            _same_as_afresh(v)
            r.put(records.memory(r.identity, "written while unkept, about provider",
                                 category="c", ts=T))  # fmt: skip
            hits = v.recall("written while unkept", mode="lexical").hits
            assert [h.text for h in hits][:1] == ["written while unkept, about provider"]
        assert (home / VIEWS_FILE).is_dir()  # left as it is
        _nothing_aside(home)
        (home / VIEWS_FILE).rmdir()
        with _kept(r) as v:
            assert v.unkept is None and v.replayed is None  # kept again, built in full


def test_a_file_locked_by_another_process_at_the_open_is_not_moved_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, rest = _filled(home, upto=20)
    with r:
        with _kept(r):
            pass
        assert {o.status for o in r.ingest_batch(rest)} == {"applied"}  # to replay
        before = (home / VIEWS_FILE).read_bytes()
        outside = sqlite3.connect(home / VIEWS_FILE, isolation_level=None)
        try:
            outside.execute("BEGIN EXCLUSIVE")
            with caplog.at_level(logging.INFO, logger="crdt.views"), _kept(r) as v:
                assert v.unkept and "database is locked [SQLITE_BUSY]" in v.unkept
                _warned(caplog, "database is locked")
                _same_as_afresh(v)
        finally:
            outside.close()
        _nothing_aside(home)
        assert (home / VIEWS_FILE).read_bytes() == before
        with _kept(r) as v:  # the lock gone: resumed, the records replayed
            assert v.unkept is None and v.replayed and v.replayed > 0
            _same_as_afresh(v)


def test_a_batch_the_file_refuses_mid_run_falls_back_to_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, rest = _filled(home, upto=20)
    with r:
        v = _kept(r)
        outside = sqlite3.connect(home / VIEWS_FILE, isolation_level=None)
        try:
            outside.execute("BEGIN EXCLUSIVE")
            with caplog.at_level(logging.INFO, logger="crdt.views"):
                assert {o.status for o in r.ingest_batch(rest[:3])} == {"applied"}
            assert r.listener_failures == 0  # the replica's listener did not fail
            assert v.unkept and "the views could not" in v.unkept and "a batch" in v.unkept
            _warned(caplog, "database is locked [SQLITE_BUSY]")
            _same_as_afresh(v)  # the batch the file refused is in memory with the rest
        finally:
            outside.close()
        assert {o.status for o in r.ingest_batch(rest[3:])} == {"applied"}
        _same_as_afresh(v)  # followed live, in memory
        v.close()
        _nothing_aside(home)
        with _kept(r) as v:  # the file, still at its last commit, is brought up to date
            assert v.unkept is None and v.replayed and v.replayed > 0
            _same_as_afresh(v)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at ``tmp_path / "fs"``, unmounted after the test."""
    where = tmp_path / "fs"
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        why = f"cannot mount a tmpfs here (root needed): {out.stderr.strip()}"
        print(why)
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(fs: Path) -> Path:
    """Fill ``fs`` to the last byte (bounded by its size): the file that does it."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(8 * 1024):  # 8 MiB at most, on a 4 MiB fs
            try:
                os.write(fd, b"\0" * 1024)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        else:
            raise AssertionError("the fs did not fill")
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("had", ["none", "kept"])
def test_a_full_disk_leaves_the_views_in_memory(
        small_fs: Path, caplog: pytest.LogCaptureFixture, had: str) -> None:  # fmt: skip
    home = small_fs / "h"
    if had == "kept":  # kept views behind the store: the resume must write
        r, rest = _filled(home, upto=20)
        with _kept(r):
            pass
        assert {o.status for o in r.ingest_batch(rest)} == {"applied"}
    else:
        r, _ = _filled(home)
    with r:
        filler = _fill(small_fs)
        try:
            with caplog.at_level(logging.INFO, logger="crdt.views"), _kept(r) as v:
                assert v.unkept
                message = _warned(caplog)
                # SQLite's own words: SQLITE_FULL, or SQLITE_IOERR_SHMSIZE if its -shm
                # cannot grow, or the OS's ENOSPC at the file's creation.
                assert any(w in message for w in ("SQLITE_FULL", "SQLITE_IOERR",
                                                  "No space left")), message  # fmt: skip
                _same_as_afresh(v)
        finally:
            filler.unlink()
        _nothing_aside(home)
        with _kept(r) as v:
            assert v.unkept is None
            _same_as_afresh(v)


def _home_with_a_lesson(tmp_path: Path) -> tuple[Path, str]:
    """A data dir of its own with one memory written without a daemon, and its id."""
    from tests.daemons import ok

    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    return home, ok(home, "remember", "a lesson about kimi", "--category", "learning").strip()


def _serve(home: Path, daemons: list) -> Daemon:
    from tests.daemons import Daemon, free_port

    d = Daemon(home, free_port(), [])
    daemons.append(d.start())
    return d


def test_a_daemon_starts_serves_and_warns_when_its_views_cannot_be_kept(
        tmp_path: Path, daemons: list) -> None:  # fmt: skip
    home, mid = _home_with_a_lesson(tmp_path)
    (home / VIEWS_FILE).unlink(missing_ok=True)
    (home / VIEWS_FILE).mkdir()
    d = _serve(home, daemons)
    hits = d.get("/v1/memories", q="kimi", mode="lexical")["memories"]
    assert [m["id"] for m in hits] == [mid]
    warnings = d.get("/v1/status")["warnings"]
    assert any("not kept on disk this run" in w and "SQLITE_CANTOPEN" in w
               for w in warnings), warnings  # fmt: skip
    assert d.stop() == 0, d.log
    assert IN_MEMORY in d.log
    _nothing_aside(home)


def test_a_daemon_whose_views_file_is_locked_mid_run_keeps_serving(
        tmp_path: Path, daemons: list) -> None:  # fmt: skip
    from tests.daemons import ok

    home, first = _home_with_a_lesson(tmp_path)
    d = _serve(home, daemons)
    outside = sqlite3.connect(home / VIEWS_FILE, isolation_level=None)
    try:
        outside.execute("BEGIN EXCLUSIVE")
        late = ok(home, "remember", "a later lesson about kimi", "--category",
                  "learning").strip()  # through the daemon: its views' batch is refused
        hits = d.get("/v1/memories", q="kimi", mode="lexical")["memories"]
        assert {m["id"] for m in hits} == {first, late}
        warnings = d.get("/v1/status")["warnings"]
        assert any("not kept on disk this run" in w and "SQLITE_BUSY" in w
                   for w in warnings), warnings  # fmt: skip
    finally:
        outside.close()
    again = ok(home, "remember", "one more lesson about kimi", "--category",
               "learning").strip()  # fmt: skip
    hits = d.get("/v1/memories", q="kimi", mode="lexical")["memories"]
    assert {m["id"] for m in hits} == {first, late, again}
    assert d.stop() == 0, d.log
    assert "could not write a batch" in d.log or "could not commit a batch" in d.log
    _nothing_aside(home)
    d.start()  # the file, at its last commit, is brought up to date
    assert not [w for w in d.get("/v1/status")["warnings"] if "not kept" in w]
    hits = d.get("/v1/memories", q="kimi", mode="lexical")["memories"]
    assert {m["id"] for m in hits} == {first, late, again}


def test_prepared_views_are_kept_and_a_damaged_file_is_still_moved_aside(
        tmp_path: Path) -> None:  # fmt: skip
    home = tmp_path / "h"
    _prepared(home)
    (home / VIEWS_FILE).write_bytes(b"not SQLite" * 500)
    with _open(home) as r, _kept(r) as v:
        assert v.unkept is None  # damage: set aside and rebuilt in the file, not in memory
    assert [p for p in home.iterdir() if ".corrupt-" in p.name]
