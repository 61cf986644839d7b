"""A Python client of the local API, and the best-effort reader of DESIGN.md invariant 11.

Two layers:

- ``ApiConnection`` (``gossip.connection``): one request at a time to a running daemon,
  over the data dir's ``api.sock`` (or loopback TCP with the token). Raises
  ``ApiUnavailable`` (nobody answers: no daemon, a dead socket, a timeout) or
  ``ApiRefused`` (the daemon said no: status, message, field).
- ``Client``: what an agent embeds. Reads (``recall``, ``breaker``, ``benchmark``) never
  raise and never take longer than their timeout: daemon → the data dir opened in-process
  (only when no daemon holds it) → empty/unknown, logging "degraded mode" once per outage.
  Writes raise a typed error (``GossipError`` subclasses): a lost write must be noticed.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from .connection import ApiConnection, ApiRefused, ApiUnavailable
from .errors import OpError

log = logging.getLogger(__name__)

T = TypeVar("T")




class Client:
    """The best-effort client: see the module docstring. Every call is an operation of
    ``gossip.ops`` (the daemon's, through its API; else the same handler run here on the
    data dir), so a read answers alike either way.

        gossip = Client()                       # $GOSSIP_HOME or the platform data dir
        hits = gossip.recall("provider x")      # [] if nothing answers within 1 s
        if gossip.breaker("kimi-coding/k2p5")["state"] == "open": ...
        gossip.remember("…", category="anti-pattern")   # raises if it cannot be written
    """

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        timeout: float = 1.0,
        write_timeout: float = 10.0,
        fallback: bool = True,
    ) -> None:
        from .ops.session import RemoteSession

        self.api = ApiConnection(home, timeout=timeout)
        self.home = self.api.home
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.fallback = fallback
        self.degraded = False
        self._lock = threading.Lock()
        self._reads = RemoteSession(self.api, timeout=timeout)
        self._writes = RemoteSession(self.api, timeout=write_timeout)

    # -- reads: never raise ------------------------------------------------------------

    def recall(self, query: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Memories as the daemon's views see them (``category``, ``subject``, ``tag``,
        ``author``, ``limit``, ``include_untrusted``); [] when degraded."""
        answer = self._read("recall", {"q": query, **filters}, None, "recall")
        return answer["memories"] if answer is not None else []

    def breaker(self, name: str) -> dict[str, Any]:
        """The merged breaker; ``state`` is ``"unknown"`` when degraded."""
        unknown = {"name": name, "state": "unknown", "tripped_by": [], "reason": "",
                   "resets_at": None, "observations": []}  # fmt: skip
        found: dict[str, Any] = self._read("breaker", {"name": name}, unknown, "breaker")
        return found

    def benchmark(self, subject: str, metric: str) -> dict[str, Any] | None:
        """The recency-weighted summary across trusted hosts; None if none or degraded."""
        found = self._read("bench_show", {"subject": subject, "metric": metric}, [],
                           "benchmark")  # fmt: skip
        return found[0] if found else None

    def _read(self, operation: str, params: dict[str, Any], empty: T, what: str) -> T:
        from .ops import OPERATIONS

        deadline = time.monotonic() + self.timeout  # one limit for both ways of reading
        try:
            params = _from_text(OPERATIONS[operation], params)
            OPERATIONS[operation].check(params)
        except OpError as e:  # refused before asking anyone: says nothing of an outage
            log.warning("sm-gossip: a %s with bad arguments: %s; answering empty", what, e)
            return empty
        try:
            value: T = self._reads.call(operation, **params)
        except OpError as e:  # refused (by the daemon, or its rules here): no outage
            self._recovered()
            log.warning("sm-gossip: the daemon refused a %s: %s; answering empty", what, e)
            return empty
        except Exception as e:  # never raise on a read
            reason = str(e)
        else:
            self._recovered()
            return value
        left = deadline - time.monotonic()
        if self.fallback and left <= 0:
            reason += "; no time left to read the data dir in-process"
        elif self.fallback:
            try:
                found: T = _in_process(self.home, operation, params, left)
            except Exception as e:
                reason += f"; in-process read failed too: {e}"
            else:
                self._degraded(f"{what}: {reason}; read the data dir in-process")
                return found
        self._degraded(f"{what}: {reason}; answering empty")
        return empty

    def _degraded(self, reason: str) -> None:
        with self._lock:
            first = not self.degraded
            self.degraded = True
        if first:  # a warning once per outage (docs/api.md), however the read was answered
            log.warning("sm-gossip degraded mode: %s", reason)

    def _recovered(self) -> None:
        with self._lock:
            was, self.degraded = self.degraded, False
        if was:
            log.info("sm-gossip: the daemon answers again; degraded mode over")

    # -- writes: raise -----------------------------------------------------------------

    def remember(self, text: str, *, category: str, subject: str | None = None,
                 tags: list[str] | tuple[str, ...] = (), expires_in: float | None = None,
                 supersedes: str | None = None,
                 idempotency_key: str | None = None) -> str:  # fmt: skip
        """Write a memory through the daemon; returns its record id once durable there.
        Retrying with the same ``idempotency_key`` (e.g. a UUID) never writes it twice."""
        return str(self._writes.call("remember", text=text, category=category, subject=subject,
                                     tags=list(tags), expires_in=expires_in,
                                     supersedes=supersedes,
                                     idempotency_key=idempotency_key)["id"])  # fmt: skip

    def retract(self, record_id: str, *, reason: str = "") -> str | None:
        return self._writes.call("retract", id=record_id, reason=reason).get("retraction")

    def trip_breaker(self, name: str, *, reason: str = "", cooldown: float = 600.0,
                     failures: int = 0) -> dict[str, Any]:  # fmt: skip
        out: dict[str, Any] = self._writes.call("breaker_trip", name=name, reason=reason,
                                                cooldown=cooldown, failures=failures)  # fmt: skip
        return out

    def reset_breaker(self, name: str, *, reason: str = "") -> dict[str, Any]:
        out: dict[str, Any] = self._writes.call("breaker_reset", name=name, reason=reason)
        return out

    def record_benchmark(self, subject: str, metric: str, value: float, *,
                         unit: str = "") -> None:  # fmt: skip
        self._writes.call("bench_record", subject=subject, metric=metric, value=value, unit=unit)


def _from_text(op: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Filters given as text (``limit="2"``, ``include_untrusted="true"``) read as a query
    string would be; an empty text filter is not given."""
    from .ops.fields import Text

    out = {}
    for name, value in params.items():
        try:
            kind = op.field(name).kind
        except KeyError:
            out[name] = value  # unknown: the operation refuses it, naming it
            continue
        if isinstance(value, str) and not isinstance(kind, Text):
            value = op.field(name).parse(value)
        out[name] = value if value != "" else None
    return out


def _in_process(home: Path, operation: str, params: dict[str, Any], timeout: float) -> Any:
    """``operation`` run here on the data dir, because no daemon answers; in a thread, so
    that a large store costs the caller at most ``timeout``. Fails at once if another
    process (a starting daemon) holds the data dir."""
    from .ops.session import LocalSession

    box: dict[str, Any] = {}

    def job() -> None:
        try:
            with LocalSession(home, lock_wait=0.0) as s:
                box["value"] = s.call(operation, **params)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=job, name="sm-gossip read", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"reading {home} took longer than {timeout:.1f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["ApiConnection", "ApiRefused", "ApiUnavailable", "Client"]
