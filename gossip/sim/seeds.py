"""Many seeds of the simulator, in this process or in worker processes.

Seeds are independent runs, so on a machine of N cores N processes take them about N
times as fast. Workers are spawned, never forked: the caller may be a multi-threaded
process (a test run, a daemon's tooling), whose locks a fork would copy held.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator

from .world import Config, Result, run

__all__ = ["run_seeds"]

_CONFIG: Config | None = None
_TMPDIR: str | None = None


def run_seeds(seeds: Iterable[int], config: Config, *, tmp: str | None = None,
              jobs: int = 1) -> Iterator[Result]:  # fmt: skip
    """The result of each seed, in the order of ``seeds``; ``jobs`` processes (1: here)."""
    if jobs <= 1:
        for s in seeds:
            yield run(s, config, tmp=tmp)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs, initializer=_init, initargs=(config, tmp)) as pool:
        yield from pool.imap(_one, seeds, chunksize=4)


def _init(config: Config, tmp: str | None) -> None:
    global _CONFIG, _TMPDIR
    _CONFIG, _TMPDIR = config, tmp


def _one(seed: int) -> Result:
    assert _CONFIG is not None
    return run(seed, _CONFIG, tmp=_TMPDIR)
