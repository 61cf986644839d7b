"""Child process for tests/test_durability.py: a real writer that gets SIGKILLed.

write HOME ROUND [--snapshot-min-bytes N] [--kill-at-snapshot-commit K]
    Open the replica in HOME, print "ready", then put memory records in a loop. After
    each ``put`` returns, print the record id and flush: that line is the
    acknowledgement. Runs until killed (or until --max writes, then idles).
    With --kill-at-snapshot-commit K, the child SIGKILLs itself as the COMMIT of
    its K-th snapshot transaction starts (the snapshot is written, not committed).

create HOME --kill-at {connect,create-table,commit,key-file}
    Open a fresh replica in HOME and SIGKILL itself at the given point of the first
    open (found through real hooks: audit events and SQLite's statement trace).
    Prints "survived" if the point was never reached.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

KEY_NAME = "host.key"
_dying = False


def die() -> None:
    global _dying
    _dying = True  # os.kill is audited too: do not re-enter the hooks
    os.kill(os.getpid(), signal.SIGKILL)


def trace_kill(conn: sqlite3.Connection, should_die) -> None:
    """SIGKILL this process when ``should_die(sql)`` says so for a statement SQLite starts."""
    conn.set_trace_callback(lambda sql: die() if should_die(sql) else None)


def cmd_write(args: argparse.Namespace) -> None:
    from crdt import Replica, ReplicaLimits, records

    limits = None
    if args.snapshot_min_bytes:
        # A small threshold (and no ratio) so that snapshots keep being taken as we write.
        limits = ReplicaLimits(snapshot_min_bytes=args.snapshot_min_bytes, snapshot_ratio=0.0)
    replica = Replica.open(args.home, limits=limits, lock_wait=5.0)
    if args.kill_at_snapshot_commit:
        seen = {"snapshots": 0, "in_snapshot": False}

        def should_die(sql: str) -> bool:
            head = sql.lstrip().upper()
            if head.startswith("INSERT OR REPLACE INTO SNAPSHOT"):
                seen["in_snapshot"] = True
                seen["snapshots"] += 1
            elif head.startswith("COMMIT") and seen["in_snapshot"]:
                seen["in_snapshot"] = False
                return seen["snapshots"] >= args.kill_at_snapshot_commit
            return False

        trace_kill(replica._store._db, should_die)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for i in range(args.max):
        rec = records.memory(
            replica.identity,
            f"round {args.round} record {i} " + "y" * 150,
            category="durability",
            subject="provider:crash",
            tags=("crash", f"round-{args.round}"),
            ts=time.time_ns() // 1_000_000,
        )
        replica.put(rec)
        out.write(rec.id + "\n")  # acknowledged: put() has returned, so it is durable
        out.flush()
    time.sleep(60)  # wait to be killed; the parent bounds this


def cmd_create(args: argparse.Namespace) -> None:
    home = Path(args.home)
    point = args.kill_at
    after_key_open = {"armed": False}
    new_conns: list[sqlite3.Connection] = []
    first_statement = {"create-table": "CREATE TABLE", "commit": "COMMIT"}.get(point, "")

    def is_first(sql: str) -> bool:
        return sql.lstrip().upper().startswith(first_statement)

    def trace_new_connections(*_: object) -> None:
        # The audit event fires before the connection is initialised; install the
        # statement trace at the first profiler event after it is (connect's return).
        while new_conns:
            try:
                trace_kill(new_conns[0], is_first)
            except sqlite3.ProgrammingError:
                return
            new_conns.pop(0)

    def hook(event: str, hook_args: tuple) -> None:
        if _dying:
            return
        if event == "sqlite3.connect/handle" and isinstance(hook_args[0], sqlite3.Connection):
            if point == "connect":
                die()  # the database file has just been created (or opened)
            elif first_statement:
                new_conns.append(hook_args[0])
        elif point == "key-file":
            # The first audited step after the key file was created: it exists, but
            # nothing has been written to it yet.
            if after_key_open["armed"]:
                die()
            if event == "open" and isinstance(hook_args[0], str | bytes | os.PathLike):
                name = os.path.basename(os.fsdecode(hook_args[0]))
                flags = hook_args[2] if isinstance(hook_args[2], int) else 0
                if KEY_NAME in name and flags & os.O_CREAT:
                    after_key_open["armed"] = True

    from crdt import Replica

    sys.addaudithook(hook)
    if first_statement:
        sys.setprofile(trace_new_connections)

    Replica.open(home).close()
    print("survived", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("home")
    w.add_argument("round", type=int)
    w.add_argument("--snapshot-min-bytes", type=int, default=0)
    w.add_argument("--kill-at-snapshot-commit", type=int, default=0)
    w.add_argument("--max", type=int, default=5000)
    c = sub.add_parser("create")
    c.add_argument("home")
    c.add_argument("--kill-at", choices=["connect", "create-table", "commit", "key-file"])
    args = ap.parse_args()
    {"write": cmd_write, "create": cmd_create}[args.cmd](args)


if __name__ == "__main__":
    main()
