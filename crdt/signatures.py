"""Bulk signature verification: a few in the calling thread, many in worker processes.

The ingest gate verifies two Ed25519 signatures per one-record update (the header and
the record), and the rest of the gate is Python on one thread. Verifying in threads
looked free (libsodium releases the GIL), but each verify must take the GIL back to
return, and a thread busy with the gate's Python hands it over only every switch
interval: the verifiers starve exactly while the next chunk is being checked. Worker
processes share no GIL, so the gate's Python and the verifications overlap
(docs/benchmarks.md, "Ingest", has the figures).

The workers are plain child processes (``python -I -c`` with the few lines in
``_WORKER``, importing only PyNaCl), not ``multiprocessing``: its spawn and forkserver
methods re-run the embedding program's main module in every worker, and ``fork`` is
unsafe in a process that already runs threads. Each worker is owned by one I/O thread
that writes a batch to its stdin and reads one byte per signature back; the thread
holds the GIL only to hand over bytes, once per batch, never per signature.

One set of workers per process, started on the first large batch (a small batch never
pays for a start) and shared by every replica in the process. A worker exits when its
stdin closes, so the workers never outlive this process, however it ends. If a worker
cannot start or dies, its batch is verified in the calling thread (a verdict is always
computed, only slower) and a new worker is started for the next batch; after
``MAX_FAILURES`` new workers in a row failed, everything is verified in the calling
thread.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .errors import IdentityError
from .identity import public_key_bytes, verify

log = logging.getLogger(__name__)

Triple = tuple[str, bytes, bytes]  # (author public id, signature, signed bytes)

# Below this many signatures (~4 ms of verifying) a batch is verified in the calling
# thread: the first batch sent to the workers starts them (~0.1 s), which a command that
# checks a handful of signatures should not pay.
PROCESS_THRESHOLD = 64
WORKERS = max(1, min(4, os.cpu_count() or 1))

# A request is u32 length then, per signature, 32 key bytes, 64 signature bytes, u32
# length and the signed bytes; the answer is u32 count then one byte (1 = valid) each.
_WORKER = """
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent; EOF ends us
from nacl.signing import VerifyKey
inp, out, keys = sys.stdin.buffer, sys.stdout.buffer, {}
while True:
    head = inp.read(4)
    if len(head) < 4:
        break
    body = inp.read(int.from_bytes(head, "big"))
    res, pos, end = bytearray(), 0, len(body)
    while pos < end:
        key, sig = body[pos:pos + 32], body[pos + 32:pos + 96]
        n = int.from_bytes(body[pos + 96:pos + 100], "big")
        data, pos = body[pos + 100:pos + 100 + n], pos + 100 + n
        vk = keys.get(key)
        if vk is None:
            if len(keys) > 4096:
                keys.clear()
            vk = keys[key] = VerifyKey(key)
        try:
            vk.verify(data, sig)
            res.append(1)
        except Exception:
            res.append(0)
    out.write(len(res).to_bytes(4, "big") + bytes(res))
    out.flush()
"""

_lock = threading.Lock()
_io: ThreadPoolExecutor | None = None
_failures = 0  # new workers that failed in a row; at MAX_FAILURES, verify in-thread
MAX_FAILURES = 3
_local = threading.local()  # each I/O thread's own worker process
_workers: list[subprocess.Popen[bytes]] = []  # started so far (and still running?)


def verify_many(items: Sequence[Triple]) -> list[bool]:
    """Verify every triple in this thread, in order."""
    return [verify(*t) for t in items]


def start_verifying(items: Sequence[Triple]) -> Callable[[], list[bool]]:
    """Start verifying ``items``; call the result to wait for the verdicts, in order.

    A large batch goes to the worker processes in parts, so the caller can go on
    (checking its next batch) while they verify."""
    io = _io_threads() if len(items) >= PROCESS_THRESHOLD else None
    if io is None:
        return lambda: verify_many(items)
    size = -(-len(items) // WORKERS)
    parts = [items[k : k + size] for k in range(0, len(items), size)]
    futures = [io.submit(_in_worker, _request(part)) for part in parts]

    def wait() -> list[bool]:
        out: list[bool] = []
        for part, fut in zip(parts, futures, strict=True):
            got = fut.result()
            out.extend(got if got is not None else verify_many(part))
        return out

    return wait


def _request(items: Sequence[Triple]) -> tuple[bytes, list[int]]:
    """The wire form of the triples a worker can check; indexes of those it cannot (not
    a public id, not 64 bytes of signature), which are invalid without asking."""
    chunks: list[bytes] = []
    invalid: list[int] = []
    for i, (author, sig, data) in enumerate(items):
        try:
            key = public_key_bytes(author)
        except IdentityError:
            invalid.append(i)
            continue
        if len(sig) != 64:
            invalid.append(i)
            continue
        chunks += (key, sig, len(data).to_bytes(4, "big"), data)
    body = b"".join(chunks)
    return len(body).to_bytes(4, "big") + body, invalid


def _in_worker(request: tuple[bytes, list[int]]) -> list[bool] | None:
    """Run in an I/O thread: one request to this thread's worker; None if it failed."""
    global _failures
    payload, invalid = request
    proc = getattr(_local, "proc", None)
    fresh = proc is None
    try:
        if proc is None:
            proc = _local.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _WORKER],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            with _lock:
                _workers.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(payload)
        proc.stdin.flush()
        head = proc.stdout.read(4)
        n = int.from_bytes(head, "big") if len(head) == 4 else -1
        answer = proc.stdout.read(n) if n >= 0 else b""
        if len(answer) != n:
            raise OSError("the signature worker ended early")
    except (OSError, ValueError) as e:
        _local.proc = None
        if proc is not None:
            proc.kill()
            proc.wait()
        if fresh:  # one that worked and then died (killed) is simply replaced
            with _lock:
                _failures += 1
                if _failures == MAX_FAILURES:
                    log.warning("signature workers cannot start (%s); verifying in-thread", e)
        return None
    if fresh:
        _failures = 0
    verdicts = [b == 1 for b in answer]
    for i in invalid:  # back in their places, in order
        verdicts.insert(i, False)
    return verdicts


def worker_pids() -> list[int]:
    """The worker processes running now (for status and tests)."""
    with _lock:
        _workers[:] = [p for p in _workers if p.poll() is None]
        return [p.pid for p in _workers]


def _io_threads() -> ThreadPoolExecutor | None:
    global _io
    if _failures >= MAX_FAILURES:
        return None
    if _io is None:
        with _lock:
            if _io is None:
                _io = ThreadPoolExecutor(WORKERS, thread_name_prefix="sm-verify")
    return _io
