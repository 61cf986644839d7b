"""One request at a time to a running daemon's local API, over the data dir's
``api.sock`` (or loopback TCP with the token in ``api.token``), each with a deadline.

Standard library only, so a command that talks to the daemon starts quickly; it must
never import ``gossip.api`` (aiohttp). Nobody answering (no daemon, a stale socket, a
time-out) is ``Unreachable``; a refusal is the operation's own error class
(``errors.from_status``). ``gossip.client`` and the CLI's remote session use it.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import default_home
from .errors import OpError, Unreachable, from_status

API_SOCKET = "api.sock"  # the same names as api/guard.py, which this module must not import
TOKEN_FILE = "api.token"
# The names the client has always raised: a refusal is the operation's own error class
# (``gossip.errors``: Invalid, NotFound, Conflict, …, each with ``status`` and ``field``).
ApiRefused = OpError
ApiUnavailable = Unreachable


class _DeadlineSocket(socket.socket):
    """A socket whose every call gets only the time left before one ``deadline``: a
    plain socket timeout is per ``recv``, so a server dribbling a byte at a time would
    hold a read for as long as it likes."""

    deadline = math.inf
    idle: float | None = None  # with no deadline: each call waits at most this long

    def _arm(self) -> None:
        if self.deadline == math.inf:
            self.settimeout(self.idle)
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(left)

    def connect(self, address: Any) -> None:
        self._arm()
        super().connect(address)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)

    def sendall(self, *args: Any) -> None:
        self._arm()  # sendall's timeout bounds the whole call
        super().sendall(*args)

    def send(self, *args: Any) -> int:
        self._arm()
        return super().send(*args)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, deadline: float) -> None:
        super().__init__("localhost", timeout=max(0.0, deadline - time.monotonic()))
        self._path = path
        self._deadline = deadline

    def connect(self) -> None:
        sock = _DeadlineSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.deadline = self._deadline
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _TcpConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, deadline: float) -> None:
        super().__init__(host, port, timeout=max(0.0, deadline - time.monotonic()))
        self._deadline = deadline

    def connect(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        plain = socket.create_connection((self.host, self.port), left)
        sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.deadline = self._deadline
        self.sock = sock


class ApiConnection:
    """Requests to the local API of the daemon of ``home`` (or at ``tcp`` with ``token``)."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        timeout: float = 10.0,
        tcp: str | None = None,
        token: str | None = None,
    ) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.timeout = timeout
        self.tcp = tcp
        self.token = token
        if tcp is not None and token is None:
            path = self.home / TOKEN_FILE
            try:
                self.token = path.read_text("ascii").strip()
            except OSError as e:
                raise ApiUnavailable(f"no API token: cannot read {path}: {e.strerror}") from None

    @property
    def socket_path(self) -> Path:
        return self.home / API_SOCKET

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            return _TcpConnection(host.strip("[]"), int(port), deadline)
        return _UnixConnection(str(self.socket_path), deadline)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
        raw: bytes | None = None,
        binary: bool = False,
    ) -> Any:
        """The decoded JSON answer (the bytes, with ``binary``); ApiUnavailable or
        ApiRefused otherwise. ``raw`` sends bytes as application/octet-stream. The whole
        request (connect, send, every read) gets ``timeout`` seconds in all."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if query:
            pairs = {k: _query_value(v) for k, v in query.items() if v is not None}
            if pairs:
                path += "?" + urllib.parse.urlencode(pairs)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = "application/octet-stream"
        if self.token is not None and self.tcp is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection(deadline)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as e:
            where = self.tcp or self.socket_path
            raise ApiUnavailable(f"no answer from the daemon at {where}: {e}") from None
        finally:
            conn.close()
        if binary and status < 400:
            return answer
        try:
            value = json.loads(answer) if answer else None
        except ValueError:
            value = None
        if status >= 400:
            raise _refusal(status, value)
        if value is None and answer:
            raise ApiUnavailable(f"the daemon's answer to {method} {path} is not JSON")
        return value

    def events(self, last_event_id: str | None = None, *,
               idle: float = 45.0) -> Iterator[FeedMessage]:  # fmt: skip
        """The change feed (``GET /v1/events``), one message at a time, until the daemon
        ends it; after ``last_event_id`` when given. Connecting has ``timeout`` seconds;
        then each read waits at most ``idle`` (the daemon sends a keep-alive every 15 s).
        ``ApiUnavailable`` when nobody answers or the stream breaks; ``ApiRefused``."""
        deadline = time.monotonic() + self.timeout
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        if self.token is not None and self.tcp is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection(deadline)
        where = self.tcp or self.socket_path
        try:
            try:
                conn.request("GET", "/v1/events", headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise ApiUnavailable(f"no answer from the daemon at {where}: {e}") from None
            if resp.status >= 400:
                raise _refusal(resp.status, _json_or_none(resp.read()))
            sock = conn.sock
            if isinstance(sock, _DeadlineSocket):
                sock.deadline, sock.idle = math.inf, idle
            yield from _messages(resp, where)
        finally:
            conn.close()

    def alive(self, timeout: float = 1.0) -> bool:
        """Whether a daemon answers on this data dir's API now."""
        if self.tcp is None and not self.socket_path.exists():
            return False
        try:  # the peer table: an answer that never waits for the replica
            self.request("GET", "/v1/peers", timeout=timeout)
            return True
        except ApiRefused:
            return True  # it answered
        except ApiUnavailable:
            return False


@dataclass(frozen=True)
class FeedMessage:
    """One server-sent event: its id ("" for none: the resume point stays), its type and
    its decoded data."""

    id: str
    type: str
    data: Any


def _messages(resp: http.client.HTTPResponse, where: object) -> Iterator[FeedMessage]:
    """The events of a text/event-stream answer (comments skipped)."""
    id_, type_, data = "", "message", []
    while True:
        try:
            line = resp.readline(1 << 20)
        except (OSError, http.client.HTTPException) as e:
            raise ApiUnavailable(f"the event stream from {where} broke: {e}") from None
        if not line:
            return  # the daemon ended the stream (it stops, or cut this consumer off)
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            if data:
                yield FeedMessage(id_, type_, _json_or_none("\n".join(data).encode()))
            id_, type_, data = "", "message", []
        elif not text.startswith(":"):
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                id_ = value
            elif name == "event":
                type_ = value
            elif name == "data":
                data.append(value)


def _refusal(status: int, value: Any) -> OpError:
    """The error an answer's status and JSON body (``{error, field, code}``) stand for:
    the class its ``code`` names (the daemon's own), else its status's."""
    body = value if isinstance(value, dict) else {}
    code = body.get("code")
    return from_status(status, str(body.get("error") or f"HTTP {status}"), body.get("field"),
                       code if isinstance(code, str) else None)  # fmt: skip


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


__all__ = ["API_SOCKET", "TOKEN_FILE", "ApiConnection", "FeedMessage"]
