"""The one thread that touches a replica.

``crdt.Replica`` is not thread-safe and does blocking work (SQLite commits, signature
checks, Yjs merges). A node therefore hands every replica call to one ``ReplicaWorker``
thread and awaits the result, so the event loop never blocks and the replica never sees
two callers at once.

Reads jump the queue: a job submitted with ``READ`` priority runs before any queued
write or ingest, and a long job may call ``run_reads()`` between its steps (the node's
ingest does, between chunks of a large delta) so that a peer sending a lot never makes a
local ``recall`` wait for all of it.

Contract: ``after_job`` (if given) runs in the worker thread after every job, before the
job's result is delivered; it must not raise. Nothing else here knows what a replica is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

READ = 0  # served first
WRITE = 1  # local writes, ingest, exchange steps
_STOP = 2  # after everything queued


class ReplicaWorker:
    """A single thread running submitted jobs, reads first."""

    def __init__(self, *, name: str = "sm-replica", after_job: Callable[[], None] | None = None):
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._after_job = after_job
        self.jobs = 0  # jobs run, ever: how a watcher tells the worker has worked
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def submit(
        self, fn: Callable[..., T], *args: Any, priority: int = WRITE
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(*args)``; RuntimeError once closed."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the replica worker is closed")
            self._queue.put((priority, next(self._seq), _Job(fn, args, fut)))
        return fut

    async def call(self, fn: Callable[..., T], *args: Any, priority: int = WRITE) -> T:
        """Run ``fn(*args)`` in the worker and await its result (or exception)."""
        return await asyncio.wrap_future(self.submit(fn, *args, priority=priority))

    def run_reads(self) -> None:
        """From inside a job: run the reads queued meanwhile (never a write)."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("run_reads() is for jobs running in the worker")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[0] != READ:
                self._queue.put(item)  # same priority and sequence: order is kept
                return
            self._execute(item[2])

    def close(self) -> None:
        """Cancel the jobs not yet started, let the running one finish, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = []
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._queue.put((_STOP, next(self._seq), None))
        for _, _, job in pending:
            if job is not None:
                job.future.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        self.jobs += 1
        try:
            result = job.fn(*job.args)
        except BaseException as e:
            self._finish()
            job.future.set_exception(e)
            return
        self._finish()
        job.future.set_result(result)

    def _finish(self) -> None:
        if self._after_job is not None:
            try:
                self._after_job()
            except Exception:  # a hook bug must not lose the job's result
                log.exception("the replica worker's after-job hook failed")


class _Job:
    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], future: Any) -> None:
        self.fn = fn
        self.args = args
        self.future = future
