"""ReplicaWorker: one thread, reads first, reads between the steps of a long job."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gossip.events import EventsLost, PeerChanged, Subscription
from gossip.node.worker import READ, WRITE, ReplicaWorker


async def test_jobs_run_in_one_thread_and_results_come_back():
    worker = ReplicaWorker()
    try:
        names = {await worker.call(lambda: threading.current_thread().name) for _ in range(5)}
        assert names == {"sm-replica"}
        with pytest.raises(ZeroDivisionError):
            await worker.call(lambda: 1 / 0)
    finally:
        worker.close()
    assert not worker.thread.is_alive()
    with pytest.raises(RuntimeError):
        worker.submit(lambda: None)


def test_reads_jump_the_queue_and_run_between_steps():
    order: list[str] = []
    gate = threading.Event()
    worker = ReplicaWorker()
    try:
        blocker = worker.submit(gate.wait)  # holds the thread while we queue the rest

        def long_job() -> None:
            order.append("step 1")
            worker.submit(order.append, "read", priority=READ)  # arrives meanwhile
            worker.run_reads()
            order.append("step 2")

        jobs = [
            worker.submit(long_job, priority=WRITE),
            worker.submit(order.append, "write", priority=WRITE),
        ]
        gate.set()
        blocker.result(5)
        # Queued while the long job runs: a read goes in between its steps, a write after.
        jobs[0].result(5)
        jobs[1].result(5)
        assert order == ["step 1", "read", "step 2", "write"]
        order.clear()
        gate.clear()
        blocker = worker.submit(gate.wait)
        w = worker.submit(order.append, "write", priority=WRITE)
        r = worker.submit(order.append, "read", priority=READ)
        gate.set()
        w.result(5)
        r.result(5)
        assert order == ["read", "write"]
    finally:
        worker.close()


def test_close_cancels_what_has_not_started():
    gate, holding = threading.Event(), threading.Event()
    worker = ReplicaWorker()

    def hold() -> bool:
        holding.set()
        return gate.wait(5)

    running = worker.submit(hold)
    assert holding.wait(5)  # it has started: close() must let it finish
    queued = worker.submit(lambda: "never")
    threading.Timer(0.05, gate.set).start()
    worker.close()
    assert running.result() is True
    assert queued.cancelled()


def test_after_job_runs_in_the_worker_after_each_job():
    seen: list[str] = []
    worker = ReplicaWorker(after_job=lambda: seen.append(threading.current_thread().name))
    try:
        worker.submit(lambda: None).result(5)
        with pytest.raises(ValueError):
            worker.submit(int, "x").result(5)
    finally:
        worker.close()
    assert seen == ["sm-replica", "sm-replica"]


async def test_slow_subscriber_loses_oldest_events_and_gets_a_marker():
    sub = Subscription(3)
    events = [PeerChanged("added", None) for _ in range(5)]  # type: ignore[arg-type]
    for e in events:
        sub.put(e)
    assert await sub.get() == EventsLost(2)
    assert [await sub.get() for _ in range(3)] == events[2:]
    waiter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.close()
    assert await waiter is None


async def test_the_heap_is_given_back_in_the_worker_once_work_has_stopped():
    from crdt.heap import trim_heap
    from gossip.node.rest import give_back_at_rest

    worker = ReplicaWorker()
    ran: list[str] = []
    ticks: asyncio.Queue[None] = asyncio.Queue()  # each item: one period has passed
    looked = asyncio.Event()

    async def run(fn):
        assert fn is trim_heap
        ran.append(await worker.call(lambda: threading.current_thread().name, priority=READ))
        await worker.call(fn, priority=READ)

    async def wait():
        looked.set()  # the loop has taken the last period into account
        await ticks.get()

    async def period(work: int = 0) -> None:
        for _ in range(work):
            await worker.call(lambda: len(bytearray(5 << 20)))  # allocated and freed
        looked.clear()
        ticks.put_nowait(None)
        await asyncio.wait_for(looked.wait(), 10)

    rest = asyncio.create_task(give_back_at_rest(lambda: worker.jobs, run, wait))
    try:
        await asyncio.wait_for(looked.wait(), 10)
        await period()
        assert ran == ["sm-replica"]  # once after start: what opening left behind
        await period()
        assert ran == ["sm-replica"]  # nothing ran since: nothing to give back
        await period(work=3)
        await period(work=1)
        assert len(ran) == 1  # never while work goes on
        await period()
        assert ran == ["sm-replica"] * 2  # a quiet period after work: once
        await period()
        assert len(ran) == 2  # its own jobs are not work
    finally:
        rest.cancel()
        await asyncio.gather(rest, return_exceptions=True)
        worker.close()
