"""Run every benchmark in a fixed order and write docs/benchmarks.{json,md} and the plots
in docs/img/ (what `scripts/bench/all` runs once .venv has the bench extra).

Each module's ``run(quick)`` runs in a fresh child process (its own event loop, its own
memory: one benchmark's leftovers never weigh on the next's RSS or timings); the child
writes the result as JSON. A module that is missing, lacks ``run``, raises or dies is
reported as not measured, and the others still run. ``plot(result, docs/img)`` runs
here, afterwards.

Each entry carries the machine, command and date of the run that measured it. Entries of
the previous docs/benchmarks.json are kept for benchmarks not run this time (``--only``)
and, marked stale with the reason, for those that failed: a partial or failed run never
erases figures (or prose) measured before. Each module's ``HISTORY`` (hand-run comparisons,
designs) is taken afresh for every entry. The JSON's ``note`` (a header sentence on what a
partial run left as it was) is kept by an ``--only`` run and dropped by a full one.

Usage: scripts/bench/all [--quick] [--only NAME,NAME]
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import common
import report

ORDER = ("ingest", "convergence", "bytes", "catchup", "recall", "recall_quality", "embedding",
         "agents", "startup", "restart", "status", "availability", "memory", "growth")  # fmt: skip
HERE = Path(__file__).resolve().parent
CHILD = (
    "import json, sys; sys.path.insert(0, {here!r}); import {name} as m; "
    "r = m.run({quick!r}); open({out!r}, 'w').write(json.dumps(r))"
)


def run_one(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    """The module's result with ``status`` ok, or a stub saying why there is none."""
    if not (HERE / f"{name}.py").exists():
        return {"name": name, "status": "missing", "error": f"no scripts/bench/{name}.py"}
    try:
        module = importlib.import_module(name)
    except Exception as e:
        return {"name": name, "status": "failed", "error": f"import: {e!r}"}
    if not callable(getattr(module, "run", None)):
        return {"name": name, "status": "failed", "error": "the module has no run(quick)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        code = CHILD.format(here=str(HERE), name=name, quick=quick, out=str(out))
        t0 = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-c", code], timeout=timeout,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"name": name, "status": "failed", "error": f"timed out after {timeout:.0f} s"}
        seconds = time.monotonic() - t0
        if done.returncode != 0 or not out.exists():
            sys.stderr.write(done.stderr)
            tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            return {"name": name, "status": "failed", "error": tail[0], "seconds": seconds}
        result = json.loads(out.read_text())
    return {**result, "name": name, "status": "ok", "seconds": seconds}


def plot_one(name: str, entry: dict[str, Any], img: Path) -> None:
    if entry.get("status") != "ok":
        return
    try:
        entry["plots"] = list(importlib.import_module(name).plot(entry, img))
    except Exception:
        traceback.print_exc()
        entry["plots"] = []
        entry.setdefault("notes", []).append("(its plot failed in this run)")


def merge(
    previous: list[dict[str, Any]], fresh: list[dict[str, Any]], ran: list[str]
) -> list[dict[str, Any]]:
    """This run's entries, in ORDER; an earlier measurement where this run has none."""
    before = {e["name"]: e for e in previous}
    now = {e["name"]: e for e in fresh}
    out = []
    for name in [*ORDER, *(n for n in before if n not in ORDER)]:
        old, new = before.get(name), now.get(name)
        if new is not None and (new["status"] == "ok" or old is None or old["status"] != "ok"):
            out.append(new)
        elif old is not None and old["status"] == "ok":
            if new is not None:
                old = {**old, "stale": f"{new['status']}: {new.get('error', '')}"}
            out.append(old)
        elif new is not None or name in ran:
            out.append(new or {"name": name, "status": "missing"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few trials (minutes)")
    ap.add_argument("--only", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--docs", type=Path, default=common.ROOT / "docs", help="output directory")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = ap.parse_args()
    names = [n for n in ORDER if not args.only or n in args.only.split(",")]
    timeout = args.timeout or (600.0 if args.quick else 7200.0)
    command = "scripts/bench/all" + (" --quick" if args.quick else "")
    if args.only:
        command += f" --only {args.only}"
    machine = common.machine()
    print(f"benchmarks on {common.machine_line(machine)}: {', '.join(names)}", flush=True)
    img = args.docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    out_json = args.docs / "benchmarks.json"
    before = json.loads(out_json.read_text()) if out_json.exists() else {"results": []}
    previous = before["results"]
    out_md = args.docs / "benchmarks.md"
    hand = out_md.read_text() if out_md.exists() else ""
    if previous and hand != report.render(report.with_history(before)):
        print(f"warning: {out_md} was edited by hand since {out_json} was written: this run "
              "replaces it (`python scripts/bench/report.py --render | diff - docs/benchmarks.md`"
              " shows the edits; move them into the modules' HISTORY)", file=sys.stderr)
    else:
        hand = ""
    results = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        entry = run_one(name, args.quick, timeout)
        entry.update(machine=machine, run_command=command)
        plot_one(name, entry, img)
        results.append(entry)
        print(entry.get("headline") or f"{name}: {entry['status']}: {entry.get('error')}")
    doc = {"command": command, "machine": machine, "results": merge(previous, results, names)}
    if args.only and before.get("note"):
        doc["note"] = before["note"]  # what the earlier partial run said of the other entries
    doc = report.with_history(doc)
    out_json.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    out_md.write_text(report.render(doc))
    print("\nwrote", out_md, "and", out_json)
    if hand:
        kept = Path(tempfile.gettempdir()) / "benchmarks.md.by-hand"
        kept.write_text(hand)
        print(f"the hand-edited {out_md} it replaced: {kept}", file=sys.stderr)
    for e in doc["results"]:
        stale = f" [stale: {e['stale']}]" if e.get("stale") else ""
        print(" ", (e.get("headline") or f"{e['name']}: not measured ({e['status']})") + stale)


if __name__ == "__main__":
    main()
