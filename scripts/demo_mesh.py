"""`scripts/demo`: three real `gossip serve` daemons on 127.0.0.1 in a temporary directory.

Each host gets a key (`gossip init`), trusts the other two (`gossip trust add`) and runs
a daemon with the others as static peers. A memory written on one arrives on the other
two; a breaker tripped on another is open everywhere; `gossip peers` shows the mesh. Then
it keeps running (Ctrl-C, SIGTERM or SIGHUP stop it) or stops after ``--seconds N``,
SIGTERMing every daemon by pid (they run in their own sessions, so nothing else would).
A temporary directory is removed at the end: it holds the three hosts' private keys.
Every step is a real command, printed as it runs.

``--forgeries`` runs the gate's walk-through instead (``demo_forgeries.py`` beside it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from gossip.client import ApiConnection, ApiUnavailable

NAMES = ("n1", "n2", "n3")


class Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.homes = {n: base / n for n in NAMES}
        self.ports = {n: _free_port() for n in NAMES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def gossip(self, name: str, *args: str, show: bool = True) -> str:
        """Run `gossip ARGS` on host ``name``, print the command and its output."""
        env = {**os.environ, "GOSSIP_HOME": str(self.homes[name])}
        out = subprocess.run([sys.executable, "-m", "gossip.cli", *args], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"demo: `gossip {shlex.join(args)}` on {name} failed: "
                             f"{out.stderr.strip()}")  # fmt: skip
        if show:
            print(f"  {name}$ gossip {shlex.join(args)}")
            for line in out.stdout.rstrip("\n").splitlines():
                print(f"      {line}")
        return out.stdout

    def setup(self) -> None:
        ids = {n: self.gossip(n, "init", "--name", n, show=False).strip() for n in NAMES}
        for n in NAMES:
            for other in NAMES:
                if other != n:
                    self.gossip(n, "trust", "add", ids[other], "--name", other, show=False)
        print("1. three hosts, each with its own Ed25519 key, each trusting the other two:")
        for n in NAMES:
            print(f"   {n}  {ids[n]}  127.0.0.1:{self.ports[n]}")

    def start(self) -> None:
        print("\n2. one `gossip serve` per host, the other two as static peers "
              f"(logs in {self.base}/n*.log):")  # fmt: skip
        for n in NAMES:
            peers = [a for other in NAMES if other != n
                     for a in ("--peer", f"127.0.0.1:{self.ports[other]}")]  # fmt: skip
            args = [sys.executable, "-m", "gossip.cli", "serve", "--home", str(self.homes[n]),
                    "--listen", f"127.0.0.1:{self.ports[n]}", "--profile", "local",
                    # No agents' listener: three daemons on one host would contend for
                    # 127.0.0.1:8888, and one might take it from a daemon of the user's.
                    "--no-mdns", "--agents-listen", "", *peers]  # fmt: skip
            with open(self.base / f"{n}.log", "wb") as log:
                # Own process group: a Ctrl-C reaches the demo, which stops them in order.
                self.procs[n] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                                 start_new_session=True)  # fmt: skip
            print(f"   {n}: gossip serve --listen 127.0.0.1:{self.ports[n]} "
                  f"--peer … (pid {self.procs[n].pid})")  # fmt: skip
        for n in NAMES:
            api = ApiConnection(self.homes[n])
            _until(lambda n=n, api=api: self._alive(n) and api.alive(), f"the daemon of {n}")

    def _alive(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.poll() is not None:
            log = (self.base / f"{name}.log").read_text(errors="replace")
            raise SystemExit(f"demo: the daemon of {name} exited:\n{log}")
        return True

    def show(self) -> None:
        print("\n3. a memory written on n3 ...")
        t0 = time.perf_counter()
        self.gossip("n3", "remember", "kimi-coding/k2p5 times out above 30k tokens",
                    "--category", "anti-pattern", "--subject", "kimi-coding/k2p5")  # fmt: skip
        for n in ("n1", "n2"):
            api = ApiConnection(self.homes[n])
            _until(lambda api=api: _call(api, "/v1/memories", q="kimi tokens")["memories"],
                   f"the memory on {n}")  # fmt: skip
        print(f"   ... arrived on n1 and n2 within {(time.perf_counter() - t0) * 1000:.0f} ms:")
        self.gossip("n1", "recall", "kimi tokens")

        print("\n4. a breaker tripped on n1 ...")
        t0 = time.perf_counter()
        self.gossip("n1", "breaker", "trip", "provider:x", "--reason", "503 burst",
                    "--cooldown", "600")  # fmt: skip
        for n in ("n2", "n3"):
            api = ApiConnection(self.homes[n])
            _until(lambda api=api: _call(api, "/v1/breaker", name="provider:x")["state"]
                   == "open", f"the breaker on {n}")  # fmt: skip
        print(f"   ... is open on n2 and n3 within {(time.perf_counter() - t0) * 1000:.0f} ms:")
        self.gossip("n3", "breaker", "list")

        print("\n5. the mesh as n1 sees it:")
        self.gossip("n1", "peers")
        print("\n6. what n2's daemon logged (one line per event):")
        lines = (self.base / "n2.log").read_text(errors="replace").splitlines()
        for line in lines[-8:]:
            print(f"   {line}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for n, proc in self.procs.items():
            try:
                codes[n] = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[n] = proc.wait()
        clean = all(c == 0 for c in codes.values())
        print(f"stopped the {len(codes)} daemons" + (" cleanly" if clean else f": {codes}"))


def _call(api: ApiConnection, path: str, **query: str) -> dict:
    try:
        return api.request("GET", path, query=query)
    except ApiUnavailable:
        return {"memories": [], "state": "unknown"}


def _until(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not come within {timeout:.0f} s")
        time.sleep(0.02)


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C does."""


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, metavar="N",
                   help="stop after N seconds in all (default: run until Ctrl-C)")  # fmt: skip
    p.add_argument("--dir", type=Path, help="use this directory instead of a temporary one")
    p.add_argument("--forgeries", action="store_true",
                   help="run the ingest gate's walk-through instead")  # fmt: skip
    args = p.parse_args(argv)
    temporary = args.dir is None
    base = args.dir or Path(tempfile.mkdtemp(prefix="sm-gossip-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, base)
    finally:
        if temporary:  # it holds private keys; --dir keeps a directory you chose
            shutil.rmtree(base, ignore_errors=True)
            print(f"removed {base}")


def _run(args: argparse.Namespace, base: Path) -> int:
    if args.forgeries:
        import demo_forgeries as walkthrough  # beside this script (sys.path[0])

        walkthrough.main(base)
        return 0
    started = time.monotonic()
    print(f"sm-gossip demo — three daemons on 127.0.0.1, data in {base}\n")
    demo = Demo(base)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    try:
        demo.setup()
        demo.start()
        demo.show()
        if args.seconds is None:
            print("\nrunning; try `GOSSIP_HOME=" f"{demo.homes['n2']} gossip peers --watch` "
                  "in another terminal. Ctrl-C stops (and removes a temporary "
                  "directory).")  # fmt: skip
            while True:
                time.sleep(3600)
        left = args.seconds - (time.monotonic() - started)
        if left > 0:
            print(f"\nrunning for {left:.0f} more seconds (--seconds {args.seconds:g}) ...")
            time.sleep(left)
        print()
    except KeyboardInterrupt:
        print()
    except Stopped as e:
        print(f"\n{e} received")
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):  # stopping is not to be cut short
            signal.signal(signum, signal.SIG_IGN)
        demo.stop()
    print("Next: `scripts/test` runs the whole suite; docs/ explains the rest.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
