"""Real-process chaos: five `gossip serve` daemons on loopback, a writer on each, random
SIGKILLs and restarts; then every acknowledged memory must be on every node.

Shared by ``tests/test_chaos.py`` (50 events, marked slow) and ``scripts/chaos`` (a longer
run: ``--events 200 --seed S``).

- **Writers**: one thread per node posts memories with unique texts
  (``chaos s<seed> n<k> w<i>``) to its daemon's local API (``POST /v1/memories``). Each
  write ends as one of: *acknowledged* (201 with the record id: durable there), *failed*
  (the API socket was missing or refused the connection: nothing was sent), *refused*
  (a 4xx answer: the daemon said no), or *maybe* (the connection died mid-request, a
  timeout, a 5xx: it may or may not have been written).
- **Chaos**: ``events`` times, after a random pause, SIGKILL a random running daemon and
  restart it in the background after a random delay; at most ``max_down`` are down (or
  restarting) at once, so the load goes on.
- **End**: restart everything, wait (with a deadline) until every node holds as many
  records as the others and no fewer than were acknowledged, stop them with SIGTERM
  (exit 0), run ``PRAGMA integrity_check`` on each ``store.db`` (read-only), then open
  each data dir in-process and compare record sets: every acknowledged id on every node
  (``lost``), no record whose text was never attempted, was refused or never sent, and no
  text twice (``unexpected``), identical sets everywhere (``diverged``).

Everything is killed by pid, even on failure; on failure the seed and each daemon's log
tail are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdt import Replica
from crdt.views import Views
from gossip.client import ApiRefused, ApiUnavailable

from .daemons import Daemon, make_cluster

WARNING = re.compile(r"^\S+ (WARNING|ERROR|CRITICAL)\b|Traceback")


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, str] = field(default_factory=dict)  # text -> id
    maybe: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)

    def attempted(self) -> set[str]:
        return set(self.acked) | self.maybe | self.failed | self.refused


@dataclass
class Result:
    seed: int
    events: int = 0
    restarts: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    acknowledged: int = 0
    maybe: int = 0
    maybe_present: int = 0
    failed: int = 0
    refused: int = 0
    records: int = 0
    lost: int = 0
    unexpected: int = 0
    diverged: int = 0
    integrity: dict[str, str] = field(default_factory=dict)
    log_warnings: list[str] = field(default_factory=list)  # WARNING/ERROR/Traceback lines
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    chaos_seconds: float = 0.0
    converge_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        integrity = "ok" if all(v == "ok" for v in self.integrity.values()) else self.integrity
        rs = sorted(self.restart_seconds) or [0.0]
        return (
            f"chaos seed={self.seed}: {self.events} SIGKILLs, {self.restarts} restarts "
            f"(ready in {rs[len(rs) // 2]:.1f} s median, {rs[-1]:.1f} s max); "
            f"writes: {self.acknowledged} acknowledged, {self.maybe} maybe "
            f"({self.maybe_present} present), {self.failed} not sent, {self.refused} refused; "
            f"records per node {self.records}; lost {self.lost}, unexpected {self.unexpected}, "
            f"diverged {self.diverged}; integrity_check {integrity}; "
            f"{len(self.log_warnings)} warning/error lines in the daemon logs; "
            f"runtime {self.seconds:.1f} s (chaos {self.chaos_seconds:.1f} s, "
            f"convergence {self.converge_seconds:.1f} s)"
        )


class Node:
    """A Daemon plus the chaos bookkeeping (guarded by the cluster's lock)."""

    def __init__(self, index: int, daemon: Daemon) -> None:
        self.index = index
        self.daemon = daemon
        self.up = False  # started and answering; killable, writable
        self.restarter: threading.Thread | None = None


def _write(node: Node, text: str, out: Outcomes) -> None:
    try:
        answer = node.daemon.api.request(
            "POST", "/v1/memories", {"text": text, "category": "learning"}, timeout=10
        )
    except ApiRefused as e:
        target = out.refused if e.status < 500 else out.maybe
        with out.lock:
            target.add(text)
        return
    except ApiUnavailable as e:
        msg = str(e)
        # connect() failed: the socket file is gone or nobody listens on it: nothing sent
        not_sent = "[Errno 2]" in msg or "[Errno 111]" in msg
        with out.lock:
            (out.failed if not_sent else out.maybe).add(text)
        return
    with out.lock:
        out.acked[text] = answer["id"]


def _writer(node: Node, seed: int, stop: threading.Event, out: Outcomes, pause: float) -> None:
    i = 0
    while not stop.is_set():
        if not node.up:
            time.sleep(0.02)
            continue
        i += 1
        _write(node, f"chaos s{seed} n{node.index} w{i}", out)
        time.sleep(pause)


def _records(home: Path) -> tuple[dict[str, str], str | None]:
    """id -> memory text (or ``<kind>``) of every immutable record in a stopped data dir;
    and what its kept views (views.sqlite, through every SIGKILL) answer otherwise than
    views built afresh from its document, None if nothing."""
    replica = Replica.open(home, create=False)
    try:
        recs = {
            rid: rec.fields.get("text", "") if rec.kind == "memory" else f"<{rec.kind}>"
            for rid, rec in replica.records().items()
        }
        answers = []
        for kept in (True, False):
            with Views(replica, kept=kept) as v:
                hits = v.recall(limit=10**6, include_untrusted=True, mode="lexical").hits
                answers.append((sorted(m.id for m in hits), v.held()))
        return recs, None if answers[0] == answers[1] else "kept views differ from afresh"
    finally:
        replica.close()


def _integrity(home: Path) -> str:
    db = sqlite3.connect(f"file:{home / 'store.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    return "; ".join(str(r[0]) for r in rows)


def _total(d: Daemon) -> int | None:
    try:
        return int(d.get("/v1/status")["records"]["total"])
    except (ApiUnavailable, ApiRefused, KeyError, TypeError, ValueError):
        return None


def run(
    workdir: Path,
    *,
    seed: int,
    events: int = 50,
    n: int = 5,
    max_down: int = 3,
    pause: tuple[float, float] = (0.1, 0.6),
    restart_delay: tuple[float, float] = (0.0, 0.8),
    write_pause: float = 0.05,
    converge_timeout: float = 60.0,
    started: list[Daemon] | None = None,
    log: Any = print,
) -> Result:
    """One chaos run in ``workdir``; every daemon it starts is appended to ``started`` (for
    a fixture to kill) and killed by pid before returning, whatever happened."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    result = Result(seed=seed)
    out = Outcomes()
    cluster = make_cluster(workdir, n)
    nodes = [Node(k, d) for k, d in enumerate(cluster, start=1)]
    started = started if started is not None else []
    lock = threading.Lock()
    restart_errors: list[str] = []
    stop = threading.Event()
    writers: list[threading.Thread] = []

    def restart(node: Node, delay: float) -> None:
        time.sleep(delay)
        t = time.monotonic()
        try:
            node.daemon.start(wait=True)
        except Exception as e:  # a daemon that cannot restart is a finding
            with lock:
                restart_errors.append(f"n{node.index} did not restart: {e}")
            return
        with lock:
            node.up = True
            result.restarts += 1
            result.restart_seconds.append(time.monotonic() - t)

    try:
        for node in nodes:
            started.append(node.daemon)
            node.daemon.start(wait=False)
        for node in nodes:
            node.daemon.wait_ready()
            node.up = True
        for node in nodes:
            t = threading.Thread(target=_writer, args=(node, seed, stop, out, write_pause),
                                 name=f"writer-n{node.index}", daemon=True)  # fmt: skip
            t.start()
            writers.append(t)

        t_chaos = time.monotonic()
        while result.events < events:
            time.sleep(rng.uniform(*pause))
            with lock:
                if restart_errors:
                    break
                down = [x for x in nodes if not x.up]
                if len(down) >= max_down:
                    continue  # wait for a restart to finish
                victim = rng.choice([x for x in nodes if x.up])
                victim.up = False
            victim.daemon.kill()
            result.events += 1
            delay = rng.uniform(*restart_delay)
            victim.restarter = threading.Thread(
                target=restart, args=(victim, delay), name=f"restart-n{victim.index}", daemon=True
            )
            victim.restarter.start()
        for node in nodes:
            if node.restarter is not None:
                node.restarter.join(60)
        result.chaos_seconds = time.monotonic() - t_chaos
        stop.set()
        for t in writers:
            t.join(30)
        result.problems += restart_errors
        for node in nodes:  # one that failed to restart gets a last chance
            if not node.up:
                try:
                    node.daemon.start(wait=True)
                    node.up = True
                except Exception as e:
                    result.problems.append(f"n{node.index} did not start at the end: {e}")

        # -- convergence ---------------------------------------------------------------
        t_conv = time.monotonic()
        result.acknowledged = len(out.acked)
        deadline = t_conv + converge_timeout
        last_sync = 0.0
        totals: list[int | None] = []
        while True:
            totals = [_total(x.daemon) for x in nodes]
            if (None not in totals and len(set(totals)) == 1
                    and totals[0] >= result.acknowledged):  # fmt: skip
                break
            if time.monotonic() > deadline:
                result.problems.append(f"no convergence within {converge_timeout} s: {totals}")
                break
            if time.monotonic() - last_sync > 2.0:  # nudge: one exchange with every peer
                for x in nodes:
                    with contextlib.suppress(ApiUnavailable, ApiRefused):
                        x.daemon.post("/v1/sync", {})
                last_sync = time.monotonic()
            time.sleep(0.2)
        result.converge_seconds = time.monotonic() - t_conv

        for node in nodes:
            rc = node.daemon.stop(signal.SIGTERM, timeout=30)
            if rc != 0:
                result.problems.append(f"n{node.index} exited {rc} on SIGTERM")

        # -- checks --------------------------------------------------------------------
        held: list[dict[str, str]] = []
        for node in nodes:
            home = node.daemon.home
            result.integrity[f"n{node.index}"] = verdict = _integrity(home)
            if verdict != "ok":
                result.problems.append(f"n{node.index} store.db integrity_check: {verdict}")
            recs, views_differ = _records(home)
            held.append(recs)
            if views_differ:
                result.problems.append(f"n{node.index}: {views_differ}")

        for node in nodes:
            result.log_warnings += [
                f"n{node.index}: {line}"
                for line in node.daemon.log.splitlines()
                if WARNING.search(line)
            ]

        allowed = set(out.acked) | out.maybe
        lost: set[str] = set()
        unexpected: set[str] = set()
        for node, recs in zip(nodes, held, strict=True):
            texts = list(recs.values())
            ids = set(recs)
            missing = {t for t, rid in out.acked.items() if rid not in ids}
            if missing:
                result.problems.append(
                    f"n{node.index} lacks {len(missing)} acknowledged: {sorted(missing)[:10]}"
                )
            lost |= missing
            unexpected |= {t for t in texts if t not in allowed}
            unexpected |= {t for t in set(texts) if texts.count(t) > 1}
            unexpected |= {t for rid, t in recs.items() if t in out.acked and out.acked[t] != rid}
        union = set().union(*held)
        diverged = {rid for rid in union if any(rid not in h for h in held)}
        result.records = len(held[0])
        result.maybe = len(out.maybe)
        result.maybe_present = len({t for t in held[0].values() if t in out.maybe})
        result.failed = len(out.failed)
        result.refused = len(out.refused)
        result.lost = len(lost)
        result.unexpected = len(unexpected)
        result.diverged = len(diverged)
        if unexpected:
            result.problems.append(f"{len(unexpected)} unexpected: {sorted(unexpected)[:10]}")
        if diverged:
            result.problems.append(f"{len(diverged)} records not on every node")
        if result.acknowledged < events:
            result.problems.append(f"only {result.acknowledged} writes acknowledged")
    except BaseException as e:
        result.problems.append(f"{type(e).__name__}: {e}")
        raise
    finally:
        stop.set()
        for node in nodes:
            node.daemon.kill()
        result.seconds = time.monotonic() - t0
        log(result.summary())
        for line in result.log_warnings[:20]:
            log(f"  {line}")
        if not result.ok:
            log(f"CHAOS FAILED (seed {seed}): " + "\n  ".join(["", *result.problems]))
            for node in nodes:
                tail = "\n    ".join(node.daemon.log.splitlines()[-25:])
                log(f"--- log tail of n{node.index} ({node.daemon.log_path}):\n    {tail}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Real-process chaos: SIGKILL/restart daemons under a write load, "
        "then check every acknowledged write."
    )
    p.add_argument("--events", type=int, default=200, help="SIGKILLs (default 200)")
    p.add_argument("--seed", type=int, default=None, help="default: random")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--max-down", type=int, default=3)
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", flush=True)
    tmp = tempfile.mkdtemp(prefix="gossip-chaos-")
    try:
        result = run(Path(tmp), seed=seed, events=args.events, n=args.nodes,
                     max_down=args.max_down, converge_timeout=args.converge_timeout,
                     log=lambda s: print(s, flush=True))  # fmt: skip
    finally:
        if args.keep:
            print(f"data dirs and logs kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
