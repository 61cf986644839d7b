"""The dashboard's logins, sans I/O: one-time codes (`gossip web` asks for one over the
local API) exchanged once for a browser session, so the API token never reaches a
browser, a bookmark or its history.

- A code is random (128 bits), valid for ``CODE_TTL_S`` and for one exchange; at most
  ``MAX_CODES`` wait at once (the oldest goes first).
- A session is random (256 bits), kept in memory only (a daemon restart ends every
  session: run `gossip web` again), valid for ``SESSION_TTL_S``; at most
  ``MAX_SESSIONS`` (the oldest goes first).
- Only hashes are kept, so a lookup's timing says nothing of a secret.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

CODE_TTL_S = 60.0
SESSION_TTL_S = 12 * 3600.0
MAX_CODES = 16
MAX_SESSIONS = 32


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class Logins:
    """Codes and sessions of one dashboard. ``clock`` gives seconds (monotonic)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._codes: OrderedDict[str, float] = OrderedDict()  # digest -> expiry
        self._sessions: OrderedDict[str, float] = OrderedDict()

    def code(self) -> str:
        """A fresh one-time code."""
        code = secrets.token_urlsafe(16)
        self._put(self._codes, code, CODE_TTL_S, MAX_CODES)
        return code

    def redeem(self, code: str) -> str | None:
        """A new session for a code still valid, which is spent; None otherwise."""
        expiry = self._codes.pop(_digest(code), None)
        if expiry is None or self._clock() > expiry:
            return None
        session = secrets.token_urlsafe(32)
        self._put(self._sessions, session, SESSION_TTL_S, MAX_SESSIONS)
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        expiry = self._sessions.get(_digest(session))
        return expiry is not None and self._clock() <= expiry

    def end(self, session: str | None) -> None:
        if session:
            self._sessions.pop(_digest(session), None)

    def _put(self, table: OrderedDict[str, float], secret: str, ttl: float, most: int) -> None:
        now = self._clock()
        for key in [k for k, expiry in table.items() if now > expiry]:
            del table[key]
        while len(table) >= most:
            table.popitem(last=False)
        table[_digest(secret)] = now + ttl
