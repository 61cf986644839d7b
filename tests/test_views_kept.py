"""Views kept on disk (``views.sqlite``, issue 18's restart): a reopen resumes them and
replays only what the store gained since their last commit; a crash between the store's
commit and the views' (a real process, SIGKILLed there) is replayed; a damaged,
foreign or mismatched file (another store, another policy, views ahead of the store, a
checkpoint) is reported and rebuilt. After every path the views answer exactly as views
built afresh from the document."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from crdt import Replica, records
from crdt.views import ViewConfig, Views
from crdt.views.kept import VIEWS_FILE
from tests.test_views_bulk import T, history, outputs

CFG = ViewConfig(follow_vouches=True, author_share=0.3)


def now() -> int:
    return T


def _open(home: Path) -> Replica:
    return Replica.open(home, now_ms=now)


def _filled(home: Path, upto: int | None = None) -> tuple[Replica, list[bytes]]:
    """A replica trusting three of the history's writers, holding its first ``upto``
    updates (all by default); the rest are returned."""
    updates, writers = history()
    r = _open(home)
    for w in writers[:3]:
        r.trust(w.id, "w")
    cut = len(updates) if upto is None else upto
    assert {o.status for o in r.ingest_batch(updates[:cut], chunk=5)} == {"applied"}
    return r, updates[cut:]


def _kept(r: Replica, config: ViewConfig = CFG) -> Views:
    return Views(r, config, now_ms=now, kept=True)


def _same_as_afresh(v: Views) -> None:
    """The kept views answer as views built in memory from the document (limit 100: see
    test_views_bulk about FTS5's ties at a cut-off)."""
    with Views(v.replica, v.config, now_ms=now) as afresh:
        assert outputs(v, (100,)) == outputs(afresh, (100,))
        assert v.first_seen(next(iter(v.replica.record_ids()))) is not None


def test_a_reopen_resumes_the_kept_views_and_replays_only_what_came_after(
        tmp_path: Path) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, rest = _filled(home, upto=20)
    try:
        v = _kept(r)
        assert v.replayed is None  # first open: built in full, from the document
        assert stat.S_IMODE((home / VIEWS_FILE).stat().st_mode) == 0o600
        _same_as_afresh(v)
        v.close()
        v = _kept(r)
        assert v.replayed == 0  # nothing new: nothing read from the document
        _same_as_afresh(v)
        # Followed live: each commit is one views transaction, recording its seq.
        assert {o.status for o in r.ingest_batch(rest[:3])} == {"applied"}
        _same_as_afresh(v)
        v.close()
        # The store gains updates while no views follow (an import, a repair's replay):
        # the next open replays exactly the records they carry.
        assert {o.status for o in r.ingest_batch(rest[3:], chunk=2)} == {"applied"}
        v = _kept(r)
        carried = len(r.record_ids()) - 20 - 3  # records root only: state is read whole
        assert v.replayed == carried > 0
        _same_as_afresh(v)
        v.close()
    finally:
        r.close()
    with _open(home) as again, _kept(again) as v:  # a new process's view of the files
        assert v.replayed == 0
        _same_as_afresh(v)


_CHILD = """
import os, signal, sys
from crdt import Replica, records
from crdt.views import ViewConfig, Views
home = sys.argv[1]
r = Replica.open(home, now_ms=lambda: {t})
# Told before the views (listeners run in order): the store has committed, the views not.
r.on_changes(lambda changes: os.kill(os.getpid(), signal.SIGKILL))
v = Views(r, ViewConfig(follow_vouches=True, author_share=0.3), now_ms=lambda: {t}, kept=True)
r.put(records.memory(r.identity, "written just before the kill, about provider",
                     category="c", ts={t}))
"""


def test_a_process_killed_between_the_store_commit_and_the_views_commit(
        tmp_path: Path) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, _ = _filled(home)
    with _kept(r) as v:
        assert v.replayed is None
    r.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.run([sys.executable, "-c", _CHILD.format(t=T), str(home)], env=env,
                           capture_output=True, timeout=120)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with _open(home) as again, _kept(again) as v:
        assert v.replayed == 1  # the acknowledged write, which the views had not taken
        hits = v.recall("written just before the kill", mode="lexical").hits
        assert [h.text for h in hits][:1] == ["written just before the kill, about provider"]
        _same_as_afresh(v)


def _rebuilt_after(home: Path, caplog: pytest.LogCaptureFixture, why: str,
                   config: ViewConfig = CFG) -> None:  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="crdt.views"), _open(home) as r, \
            _kept(r, config) as v:  # fmt: skip
        assert v.replayed is None
        assert any(why in m and VIEWS_FILE in m for m in caplog.messages), caplog.messages
        _same_as_afresh(v)
    with _open(home) as r, _kept(r, config) as v:
        assert v.replayed == 0  # and kept again


def _prepared(home: Path) -> None:
    r, _ = _filled(home)
    with r, _kept(r):
        pass


@pytest.mark.parametrize("damage", ["garbage", "truncated", "page", "foreign"])
def test_a_damaged_or_foreign_views_file_is_reported_moved_aside_and_rebuilt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:  # fmt: skip
    home = tmp_path / "h"
    _prepared(home)
    path = home / VIEWS_FILE
    if damage == "garbage":
        path.write_bytes(b"this is not SQLite" * 100)
    elif damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    elif damage == "page":  # a b-tree page in the middle overwritten: quick_check sees it
        size = path.stat().st_size
        with open(path, "r+b") as f:
            for at in range(4096 * 2, size, 4096 * 3):
                f.seek(at)
                f.write(os.urandom(512))
    else:
        path.unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (x)")
    _rebuilt_after(home, caplog, "moved aside")
    aside = [p.name for p in home.iterdir() if p.name.startswith(f"{VIEWS_FILE}.corrupt-")]
    assert len(aside) == 1, aside  # kept, never overwritten
    warned = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warned and aside[0] in warned[0].getMessage()


def test_views_of_another_store_another_policy_or_ahead_of_the_store_are_rebuilt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, rest = _filled(home, upto=20)
    with r, _kept(r):
        pass
    # Another reading policy: the kept rows' bounded times depend on it.
    _rebuilt_after(home, caplog, "policy", ViewConfig(follow_vouches=True, author_share=0.3,
                                                      backdate_skew_ms=1000))  # fmt: skip
    _rebuilt_after(home, caplog, "policy")  # and back
    # Views ahead of the store: an older copy of the store (and its mark) put back.
    older = tmp_path / "older"
    older.mkdir()
    for name in ("store.db", "store.mark"):
        shutil.copy2(home / name, older / name)
    with _open(home) as r, _kept(r) as v:
        assert {o.status for o in r.ingest_batch(rest)} == {"applied"}
        assert v.replayed == 0
    for name in ("store.db", "store.mark"):
        (home / f"{name}-wal").unlink(missing_ok=True)
        (home / f"{name}-shm").unlink(missing_ok=True)
        shutil.copy2(older / name, home / name)
    _rebuilt_after(home, caplog, "ahead of the store")
    # Another store: `gossip repair` makes a new one (another store_id) from the old.
    from crdt.repair import repair

    repair(home)
    _rebuilt_after(home, caplog, "another store")


def test_a_checkpoint_that_drops_the_update_the_views_were_kept_at_rebuilds_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    r, _ = _filled(home)
    with r:
        for i in range(3):
            r.put(records.memory(r.identity, f"own lesson {i} about provider", category="c",
                                 ts=T - i))  # fmt: skip
        with _kept(r):
            pass
        r.checkpoint()  # drops our own rows, the last one among them: the views' mark
    _rebuilt_after(home, caplog, "no longer holds")


def test_daemons_and_commands_share_the_kept_views_through_sigkill(
        tmp_path: Path, daemons: list) -> None:  # fmt: skip
    from tests.daemons import Daemon, free_port, ok

    home = tmp_path / "a"
    ok(home, "init", "--name", "a")
    ok(home, "remember", "an embedded lesson about kimi", "--category", "learning")
    d = Daemon(home, free_port(), [])
    daemons.append(d.start())
    ids = [ok(home, "remember", f"lesson {i} about kimi through the daemon",
              "--category", "learning").strip() for i in range(3)]  # fmt: skip
    d.kill()  # SIGKILL: the views may be behind the store, never ahead
    found = {m["id"] for m in json.loads(ok(home, "recall", "kimi", "--json", "--mode",
                                             "lexical"))}  # fmt: skip
    assert set(ids) <= found and len(found) == 4  # the command opened the data dir itself
    late = ok(home, "remember", "written with no daemon about kimi", "--category",
              "learning").strip()  # fmt: skip
    d.start()
    hits = d.get("/v1/memories", q="kimi", mode="lexical")["memories"]
    assert {m["id"] for m in hits} == found | {late}
    assert d.stop(signal.SIGTERM) == 0, d.log
    with Replica.open(home) as r, Views(r, kept=True) as v:
        assert v.replayed == 0  # the daemon kept them up to its last commit
        with Views(r) as afresh:
            assert outputs(v, (100,)) == outputs(afresh, (100,))


def test_views_whose_batch_failed_midway_are_rebuilt_at_the_next_open(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    home = tmp_path / "h"
    updates, writers = history()
    r = _open(home)
    with r:
        for w in writers[:3]:
            r.trust(w.id, "w")
        v = _kept(r)

        def refuse(_trust: object) -> None:  # a trust listener that fails the batch
            raise RuntimeError("listener failed")

        v.on_trust_change(refuse)
        r.ingest_batch(updates)  # the vouch changes the trusted set: the listener raises
        assert r.listener_failures == 1
        v.close()
    _rebuilt_after(home, caplog, "did not finish")


def test_an_update_yrs_refuses_is_a_rejection_and_the_views_stay_kept(tmp_path: Path) -> None:
    """yrs refusing an update on the document (a third-party fault, injected at pycrdt's
    apply) happens before the store commits: that update is rejected, the rest of its
    batch applies, the views hear exactly what the store holds, and the next open resumes
    them. (When the document took updates after the store, such a fault left the views
    behind the store and the next open rebuilt them.)"""
    home = tmp_path / "h"
    r, rest = _filled(home, upto=20)
    with r:
        v = _kept(r)
        main, real, calls = r._main, r._main.apply_update, []

        def refuse_the_second(update: bytes) -> None:
            calls.append(update)
            if len(calls) == 2:
                raise RuntimeError("yrs refused the update")
            real(update)

        main.apply_update = refuse_the_second  # type: ignore[method-assign]
        outs = r.ingest_batch(rest[:3])
        assert [o.status for o in outs] == ["applied", "rejected", "applied"]
        assert "pycrdt refused the update" in str(outs[1].error)
        assert r._main is not main  # read back from the store after the refusal
        assert r.untold == 0
        _same_as_afresh(v)
        v.close()
    with _open(home) as r, _kept(r) as v:
        assert v.replayed == 0
        _same_as_afresh(v)
