"""One request at a time to a running daemon's local API, over the data dir's
``api.sock`` (or loopback TCP with the token in ``api.token``), each with a deadline.

Standard library only, so a command that talks to the daemon starts quickly; it must
never import ``gossip.api`` (aiohttp), and it speaks the little HTTP/1.1 it needs itself
(one request per connection, ``Connection: close``; a body by length, chunked, or up to
the end): ``http.client`` would cost every command its imports (``email``, ``ssl``), a
tenth of its start-up. Nobody answering (no daemon, a stale socket, a time-out, an
answer that is not HTTP) is ``Unreachable``; a refusal is the operation's own error
class (``errors.from_status``). ``gossip.client`` and the CLI's remote session use it.
"""

from __future__ import annotations

import io
import json
import math
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
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


class BadAnswer(ConnectionError):
    """What came back is not an HTTP/1.1 answer we can read (an OSError: unreachable)."""


_MAX_LINE = 65536  # a status, header or chunk-size line
_MAX_HEADERS = 100


class _Response:
    """One HTTP/1.1 answer read from ``file``: ``status``, ``headers`` (names in lower
    case), then the body by ``read`` (all of it) or ``readline`` (the event feed)."""

    def __init__(self, file: io.BufferedReader) -> None:
        self._file = file
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise BadAnswer(f"not an HTTP answer: {b' '.join(parts)[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise BadAnswer(f"a malformed header line: {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        else:
            raise BadAnswer("too many header lines")
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        if not self._chunked and length is not None and not length.isdigit():
            raise BadAnswer(f"a malformed Content-Length: {length[:40]!r}")
        self._left = None if self._chunked or length is None else int(length)
        self._pending = b""  # read, not yet handed out (readline)
        self._done = self.status in (204, 304) or self._left == 0

    def _line(self) -> bytes:
        line = self._file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise BadAnswer("a line of the answer is too long")
        if not line:
            raise BadAnswer("the daemon closed the connection before it answered")
        return line

    def _piece(self) -> bytes:
        """The next bytes of the body; b"" at its end."""
        if self._done:
            return b""
        if self._chunked:
            size = self._line().split(b";", 1)[0].strip()
            try:
                n = int(size, 16)
            except ValueError:
                raise BadAnswer(f"a malformed chunk size: {size[:20]!r}") from None
            if n == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers, if any
                    pass
                self._done = True
                return b""
            data = self._exactly(n)
            self._exactly(2)  # the CRLF after each chunk
            return data
        if self._left is None:  # up to the end of the connection
            data = self._file.read1(65536)
            self._done = not data
            return data
        data = self._exactly(min(self._left, 65536))
        self._left -= len(data)
        self._done = self._left == 0
        return data

    def _exactly(self, n: int) -> bytes:
        data = self._file.read(n)
        if len(data) < n:
            raise BadAnswer("the daemon closed the connection in the middle of its answer")
        return data

    def read(self) -> bytes:
        pieces = [self._pending]
        self._pending = b""
        while piece := self._piece():
            pieces.append(piece)
        return b"".join(pieces)

    def readline(self, limit: int) -> bytes:
        """One line of the body (with its newline) of at most ``limit`` bytes; b"" at the
        end."""
        while b"\n" not in self._pending and len(self._pending) < limit:
            piece = self._piece()
            if not piece:
                break
            self._pending += piece
        cut = self._pending.find(b"\n", 0, limit)
        cut = min(len(self._pending), limit) if cut < 0 else cut + 1
        line, self._pending = self._pending[:cut], self._pending[cut:]
        return line


class _Exchange:
    """One request and its answer on a connection of its own, made by ``request`` with
    ``connect`` (so that its failure is the request's), closed by ``close``."""

    def __init__(self, connect: Callable[[], _DeadlineSocket], host: str) -> None:
        self._connect = connect
        self._host = host
        self.sock: _DeadlineSocket | None = None
        self._file: io.BufferedReader | None = None

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: dict[str, str]) -> None:  # fmt: skip
        if any(not 0x20 < ord(c) < 0x7F for c in path):
            raise BadAnswer(f"a request path must be printable ASCII: {path[:80]!r}")
        self.sock = self._connect()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}",
                 "Accept-Encoding: identity", "Connection: close"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        self.sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b""))

    def getresponse(self) -> _Response:
        assert self.sock is not None
        self._file = self.sock.makefile("rb")
        return _Response(self._file)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.sock is not None:
            self.sock.close()


def _unix(path: str, deadline: float) -> _Exchange:
    def connect() -> _DeadlineSocket:
        sock = _DeadlineSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.deadline = deadline
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return sock

    return _Exchange(connect, "localhost")


def _tcp(host: str, port: int, deadline: float) -> _Exchange:
    def connect() -> _DeadlineSocket:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        plain = socket.create_connection((host, port), left)
        sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.deadline = deadline
        return sock

    return _Exchange(connect, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


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

    def _connection(self, deadline: float) -> _Exchange:
        if self.tcp is not None:
            host, _, port = self.tcp.rpartition(":")
            return _tcp(host.strip("[]"), int(port), deadline)
        return _unix(str(self.socket_path), deadline)

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
        except OSError as e:
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
            except OSError as e:
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


def _messages(resp: _Response, where: object) -> Iterator[FeedMessage]:
    """The events of a text/event-stream answer (comments skipped)."""
    id_, type_, data = "", "message", []
    while True:
        try:
            line = resp.readline(1 << 20)
        except OSError as e:
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
