"""Calling an operation from a synchronous program (the CLI, the Python client): through
the daemon's local API when one runs on the data dir, else on the data dir itself
(invariant 10: the lock decides). Both sessions check the parameters with the same
fields before anything else, and raise the same ``gossip.errors`` classes, so a command
says the same with or without a daemon.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crdt import StoreLocked
from crdt.identity import KEY_FILE
from crdt.lock import DataDirLock

from ..connection import ApiConnection
from ..errors import GossipError, Unreachable
from .offline import LOCK_WAIT_S, ReplicaHost
from .operation import OPERATIONS, Operation

API_TIMEOUT_S = 30.0  # a request to the daemon
SLOW_TIMEOUT_S = 600.0  # an operation marked slow: a catch-up, an export or import
DAEMON_WAIT_S = 10.0  # a data dir held by a daemon that does not answer yet: it is starting


class Session:
    """Operations on one host; ``remote`` says whether a daemon answers them."""

    remote = False

    def call(self, operation: str, /, **params: Any) -> Any:
        """Run ``operation`` with ``params`` (Python values; None means not given)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalSession(Session):
    """Operations run here on the data dir (``offline.ReplicaHost``), opened on the first
    call and held (with its lock) until ``close``."""

    def __init__(self, home: Path, *, lock_wait: float = LOCK_WAIT_S,
                 progress: Callable[[int, int], None] | None = None) -> None:  # fmt: skip
        self.host = ReplicaHost(home, lock_wait=lock_wait, progress=progress)
        self._daemon: RemoteSession | None = None  # a daemon took the lock before we did
        self._daemon_wait = lock_wait  # for its API, as long as for the lock
        import asyncio  # here: a remote session never runs a loop

        self._runner = asyncio.Runner()

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return self._daemon is not None

    def call(self, operation: str, /, **params: Any) -> Any:
        if self._daemon is not None:
            return self._daemon.call(operation, **params)
        op = OPERATIONS[operation]
        checked = op.check(params)
        try:
            return self._runner.run(op.handler(self.host, checked))
        except StoreLocked as locked:
            # The lock was free when the session was chosen, and a starting daemon took
            # it first (the lock decides, invariant 10): talk to it once it answers.
            try:
                api = None if self.host.opened else daemon_api(self.host.home,
                                                               wait=self._daemon_wait)
            except GossipError:  # held, but by no daemon that answers in time
                api = None
            if api is None:
                raise locked from None
            self._daemon = RemoteSession(api)
            return self._daemon.call(operation, **params)

    def close(self) -> None:
        try:
            self._runner.run(self.host.aclose())
        finally:
            self._runner.close()


class RemoteSession(Session):
    """Operations sent to the daemon's local API, shaped by each operation's HTTP form."""

    remote = True

    def __init__(self, api: ApiConnection, *, timeout: float = API_TIMEOUT_S) -> None:
        self.api = api
        self.timeout = timeout

    def call(self, operation: str, /, **params: Any) -> Any:
        op = OPERATIONS[operation]
        checked = op.check(params)
        method, path, query, body, raw = request_of(op, checked)
        try:
            return self.api.request(method, path, body, query=query or None, raw=raw,
                                    binary=op.binary,
                                    timeout=SLOW_TIMEOUT_S if op.slow else self.timeout)
        except Unreachable as e:
            raise Unreachable(f"{e} (is `gossip serve` still running?)") from None


def request_of(op: Operation, params: Any) -> tuple[str, str, dict[str, Any], Any, Any]:
    """(method, path, query, JSON body, raw body) of ``op`` with checked ``params``:
    a parameter at its default is left out of the query, ``None`` out of everything."""
    path = op.path
    for f in op.path_fields:
        path = path.replace("{" + f.name + "}", urllib.parse.quote(str(params[f.name]), safe=""))
    query = {f.name: _text(params[f.name]) for f in op.query_fields
             if params[f.name] is not None and params[f.name] != f.default}  # fmt: skip
    raw = params[op.raw] if op.raw else None
    body = None
    if op.method not in ("GET", "DELETE") and raw is None:
        body = {f.name: _json(params[f.name]) for f in op.body_fields
                if params[f.name] is not None}  # fmt: skip
    return op.method, path, query, body, raw


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def open_session(home: Path, *, progress: Callable[[int, int], None] | None = None,
                 wait: float = DAEMON_WAIT_S) -> Session:  # fmt: skip
    """The daemon's API if a daemon holds ``home``; else the data dir itself. A daemon
    that holds the data dir but does not answer yet (it is starting) is waited for, up
    to ``wait`` seconds; so is another command that holds it briefly."""
    api = daemon_api(home, wait=wait)
    if api is not None:
        return RemoteSession(api)
    return LocalSession(home, progress=progress)


def daemon_api(home: Path, *, wait: float = DAEMON_WAIT_S) -> ApiConnection | None:
    """The running daemon's API, or None when no process holds the data dir."""
    if not home.is_dir() or not (home / KEY_FILE).exists():
        return None
    api = ApiConnection(home, timeout=API_TIMEOUT_S)
    deadline = time.monotonic() + wait
    while True:
        if api.socket_path.exists() and api.alive(timeout=2.0):
            return api
        holder = lock_holder(home)
        if holder is None:
            return None
        if time.monotonic() > deadline:
            raise GossipError(
                f"the data dir {home} is in use by {holder}, and no daemon API answers at "
                f"{api.socket_path}"
            )
        time.sleep(0.05)


def lock_holder(home: Path) -> str | None:
    """Who holds the data dir's lock now ("pid N"), or None if nobody does."""
    lock = DataDirLock(home)
    try:
        lock.acquire(wait=0.0)
    except StoreLocked as e:
        found = re.search(r"in use by (pid \d+|another process)", str(e))
        return found.group(1) if found else "another process"
    lock.release()
    return None
