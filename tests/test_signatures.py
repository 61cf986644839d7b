"""Bulk signature verification in worker processes (crdt/signatures.py): the verdicts are
those of verifying one by one, in order, whatever the batch holds, a worker killed, or
the process that started the workers killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from crdt import Identity
from crdt import signatures as sigs
from crdt.identity import verify


def mixed_batch(n: int) -> list[tuple[str, bytes, bytes]]:
    """Valid signatures of several keys, with every kind of invalid one mixed in."""
    keys = [Identity.generate() for _ in range(3)]
    out = []
    for i in range(n):
        ident = keys[i % 3]
        data = f"record {i} ".encode() * (i % 7 + 1)
        sig = ident.sign(data)
        kind = i % 11
        if kind == 1:
            data += b"!"  # tampered data
        elif kind == 2:
            sig = sig[:-1] + bytes([sig[-1] ^ 1])  # flipped bit
        elif kind == 3:
            out.append((keys[(i + 1) % 3].public_id, sig, data))  # another key
            continue
        elif kind == 4:
            out.append(("not a public id", sig, data))
            continue
        elif kind == 5:
            sig = sig[:40]  # short signature
        elif kind == 6:
            data = b""
            sig = ident.sign(data)  # empty data, valid
        out.append((ident.public_id, sig, data))
    return out


def test_a_large_batch_gets_the_verdicts_of_one_by_one_in_order():
    batch = mixed_batch(3 * sigs.PROCESS_THRESHOLD)
    expected = [verify(*t) for t in batch]
    assert 0 < sum(expected) < len(expected)
    assert sigs.start_verifying(batch)() == expected
    assert sigs.worker_pids(), "a batch this large is verified by worker processes"


def test_a_small_batch_is_verified_in_the_calling_thread():
    batch = mixed_batch(sigs.PROCESS_THRESHOLD - 1)
    assert sigs.start_verifying(batch)() == [verify(*t) for t in batch]


def test_a_killed_worker_costs_speed_not_verdicts():
    batch = mixed_batch(2 * sigs.PROCESS_THRESHOLD)
    expected = [verify(*t) for t in batch]
    assert sigs.start_verifying(batch)() == expected
    before = sigs.worker_pids()
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    assert sigs.start_verifying(batch)() == expected  # verified here instead
    assert sigs.start_verifying(batch)() == expected  # by new workers
    after = sigs.worker_pids()
    assert after and not set(after) & set(before)


CHILD = """
import sys
from crdt import Identity, signatures
ident = Identity.generate()
batch = [(ident.public_id, ident.sign(b"x%d" % i), b"x%d" % i) for i in range(600)]
assert all(signatures.start_verifying(batch)())
print(" ".join(map(str, signatures.worker_pids())), flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_workers_end_when_the_process_that_started_them_is_killed():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pids = [int(p) for p in child.stdout.readline().split()]
        assert pids
        child.kill()
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if _running(p)]
            time.sleep(0.05)
        assert not alive, f"workers {alive} outlived the process that started them"
    finally:
        child.kill()
        child.wait()


def _running(pid: int) -> bool:
    """A live process, not a zombie waiting for its (dead) parent's reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
