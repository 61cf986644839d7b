"""Real `gossip serve` processes for tests: start on loopback, wait for the API, stop with
a signal or SIGKILL. The ``daemons`` fixture (conftest.py) kills, by pid, whatever a test
leaves running, even when it fails."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossip.client import ApiConnection


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gossip(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "gossip.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def ok(home: Path, *args: str) -> str:
    out = gossip(home, *args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Daemon:
    """One `gossip serve` on 127.0.0.1:``port`` with data dir ``home``."""

    def __init__(self, home: Path, port: int, peers: list[str], extra: tuple[str, ...] = ()):
        self.home = home
        self.port = port
        self.peers = peers
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home.parent / f"{home.name}.log"
        self.api = ApiConnection(home, timeout=10)
        self.nofile: int | None = None  # RLIMIT_NOFILE for the process (``ulimit -n``)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Daemon:
        args = [sys.executable, "-m", "gossip.cli", "serve", "--home", str(self.home),
                "--listen", self.address, "--profile", "local", "--no-mdns",
                *self.extra]  # fmt: skip
        if "--agents-listen" not in self.extra:  # never the shared default 127.0.0.1:8888
            args += ["--agents-listen", ""]
        for p in self.peers:
            args += ["--peer", p]
        if self.nofile is not None:  # exec: the pid is still the daemon's
            args = ["sh", "-c", f'ulimit -n {int(self.nofile)} && exec "$@"', "sh", *args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.log}")
            return self.api.alive(timeout=1.0)

        wait_for(up, f"the daemon of {self.home.name}", timeout)

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, **query: Any) -> Any:
        return self.api.request("GET", path, query=query or None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.api.request("POST", path, body)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def peers_json(self) -> list[dict[str, Any]]:
        return json.loads(ok(self.home, "peers", "--json"))


def make_cluster(tmp_path: Path, n: int) -> list[Daemon]:
    """``n`` initialised homes that trust each other, each with the others as static peers
    (not started)."""
    homes = [tmp_path / f"n{k}" for k in range(1, n + 1)]
    ports = [free_port() for _ in homes]
    ids = [ok(h, "init", "--name", h.name).strip() for h in homes]
    for h in homes:
        for other, key in zip(homes, ids, strict=True):
            if other != h:
                ok(h, "trust", "add", key, "--name", other.name)
    return [
        Daemon(h, port, [f"127.0.0.1:{p}" for p in ports if p != port])
        for h, port in zip(homes, ports, strict=True)
    ]
