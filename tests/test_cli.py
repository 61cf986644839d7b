"""The `gossip` command as a user runs it, on a real data dir: ``gossip.cli.main`` with
its own stdin, stdout, stderr and ``GOSSIP_HOME``, in this process (a fresh interpreter
per command proved nothing more and cost ~0.3 s each). ``SM_GOSSIP_CLI_SUBPROCESS=1``
runs every command as a real process instead; the daemon tests (test_serve.py) and the
bad-input tests (test_cli_bad_input.py) always do.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pycrdt
from pytest import approx

from crdt import Replica, records
from gossip.cli import EXPORT_MAGIC, decode_export, encode_export
from tests.forge import Writer, nested_memory, put_unparsed

HOUR_MS = 3_600_000


SUBPROCESS = os.environ.get("SM_GOSSIP_CLI_SUBPROCESS") == "1"


def gossip(
    home: Path, *args: str, stdin: bytes | None = None, binary: bool = False
) -> subprocess.CompletedProcess:
    if not SUBPROCESS:
        return _in_process(home, list(args), stdin, binary)
    env = {**os.environ, "GOSSIP_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "gossip.cli", *args], env=env, capture_output=True,
        input=stdin, timeout=60,
    )  # fmt: skip
    if binary:
        return out
    return subprocess.CompletedProcess(
        out.args, out.returncode, out.stdout.decode(), out.stderr.decode()
    )


def _in_process(home: Path, args: list[str], stdin: bytes | None,
                binary: bool) -> subprocess.CompletedProcess:  # fmt: skip
    from gossip.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    streams = (io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8"),
               io.TextIOWrapper(out, encoding="utf-8", write_through=True),
               io.TextIOWrapper(err, encoding="utf-8", write_through=True))  # fmt: skip
    saved, home_before = (sys.stdin, sys.stdout, sys.stderr), os.environ.get("GOSSIP_HOME")
    sys.stdin, sys.stdout, sys.stderr = streams
    os.environ["GOSSIP_HOME"] = str(home)
    try:
        try:
            code = main(args)
        except SystemExit as e:  # argparse: usage errors, --help
            code = e.code if isinstance(e.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        if home_before is None:
            os.environ.pop("GOSSIP_HOME", None)
        else:
            os.environ["GOSSIP_HOME"] = home_before
    if binary:
        return subprocess.CompletedProcess(["gossip", *args], code, out.getvalue(),
                                           err.getvalue())  # fmt: skip
    return subprocess.CompletedProcess(["gossip", *args], code, out.getvalue().decode(),
                                       err.getvalue().decode())  # fmt: skip


def ok(home: Path, *args: str) -> str:
    out = gossip(home, *args)
    assert out.returncode == 0, (args, out.stderr)
    assert "Traceback" not in out.stderr
    return out.stdout


def as_json(home: Path, *args: str) -> list[dict]:
    return json.loads(ok(home, *args, "--json"))


def failed(out: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1 with exactly one line on stderr, ``gossip: …``, naming ``words``."""
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith("gossip: ") and out.stderr.count("\n") == 1, out.stderr
    for w in words:
        assert w in out.stderr, (w, out.stderr)
    return out.stderr


def init(home: Path, *args: str) -> str:
    return ok(home, "init", *args).strip()


# -- init, id, config -------------------------------------------------------------------


def test_init_then_id_prints_the_same_public_id(tmp_path):
    home = tmp_path / "h"
    init_id = init(home, "--name", 'lab "7" ü')
    ident = gossip(home, "id")
    assert ident.returncode == 0
    assert ident.stdout.strip() == init_id
    assert len(init_id) == 43 and ident.stdout.count("\n") == 1
    for name in ("host.key", "store.db", "config.toml"):
        assert (home / name).stat().st_mode & 0o777 == 0o600, name
    assert tomllib.loads((home / "config.toml").read_text())["name"] == 'lab "7" ü'

    other = tmp_path / "default-name"
    init(other)
    assert tomllib.loads((other / "config.toml").read_text())["name"] == os.uname().nodename


def test_init_refuses_to_overwrite_an_identity(tmp_path):
    home = tmp_path / "h"
    first = init(home)
    failed(gossip(home, "init"), "refusing to overwrite")
    assert gossip(home, "id").stdout.strip() == first


def test_missing_data_dir_is_a_one_line_error(tmp_path):
    nothing = tmp_path / "nothing"
    failed(gossip(nothing, "id"), "gossip init")
    failed(gossip(nothing, "recall"), "no data dir", "gossip init")
    failed(gossip(nothing, "remember", "x", "--category", "c"), "gossip init")
    assert not nothing.exists()


def test_world_readable_key_is_refused_by_the_cli(tmp_path):
    home = tmp_path / "h"
    init(home)
    os.chmod(home / "host.key", 0o644)
    failed(gossip(home, "id"), "chmod 600")


def test_corrupted_store_and_config_are_one_line_errors(tmp_path):
    home = tmp_path / "h"
    init(home)
    (home / "config.toml").write_text("name = \n")
    failed(gossip(home, "recall"), "config.toml", "TOML")
    (home / "config.toml").write_text('name = "h"\ncolour = "red"\n')
    failed(gossip(home, "recall"), "unknown setting 'colour'")
    (home / "config.toml").write_text('name = "h"\n')
    garbage = os.urandom(8192)
    (home / "store.db").write_bytes(garbage)
    failed(gossip(home, "recall"), "store.db")
    debug = gossip(home, "--debug", "recall")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert (home / "store.db").read_bytes() == garbage  # left untouched


def test_usage_errors_exit_2(tmp_path):
    home = tmp_path / "h"  # never created: usage is checked before the data dir
    for args in [
        (),
        ("frobnicate",),
        ("remember", "text without a category"),
        ("recall", "--limit", "0"),
        ("breaker", "trip", "b", "--reason", "r"),  # no --cooldown
        ("bench", "record", "s", "m", "fast"),
        ("retract", "xyz"),
        ("remember", "t", "--category", "c", "--expires-in", "1e30"),
        ("recall", "--limit", "100000"),  # the API's bound, with or without a daemon
        ("recall", "\udcff"),  # the byte 0xff: not UTF-8
        ("recall", "--author", "a\udcff"),
        ("remember", "\udcff", "--category", "c"),
    ]:
        out = gossip(home, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert "usage: gossip" in out.stderr and "Traceback" not in out.stderr
    assert not home.exists()


# -- memories -----------------------------------------------------------------------


def test_remember_recall_retract(tmp_path):
    home = tmp_path / "a"
    me = init(home)
    mid = ok(home, "remember", "Provider X drops requests at 03:00 UTC",
             "--category", "anti-pattern", "--subject", "provider:x",
             "--tag", "ops", "--tag", "night").strip()  # fmt: skip
    other = ok(home, "remember", "k2p5 answers 429 under load", "--category", "learning").strip()
    assert len(mid) == 64 and int(mid, 16) >= 0

    hits = as_json(home, "recall")
    assert [h["id"] for h in hits] == [other, mid]  # newest first
    x = hits[1]
    assert x["text"] == "Provider X drops requests at 03:00 UTC"
    assert (x["category"], x["subject"], x["tags"]) == ("anti-pattern", "provider:x",
                                                         ["night", "ops"])  # fmt: skip
    assert (x["author"], x["trusted"], x["author_name"]) == (me, True, "self")
    assert abs(x["ts"] - time.time() * 1000) < 60_000 and x["expires_at"] is None
    assert hits[0]["subject"] is None and hits[0]["tags"] == []

    assert [h["id"] for h in as_json(home, "recall", "03:00 provider")] == [mid]
    assert [h["id"] for h in as_json(home, "recall", "--category", "learning")] == [other]
    assert [h["id"] for h in as_json(home, "recall", "--subject", "provider:x")] == [mid]
    assert [h["id"] for h in as_json(home, "recall", "--tag", "night")] == [mid]
    assert [h["id"] for h in as_json(home, "recall", "--author", "self", "--limit", "1")] == [other]

    human = ok(home, "recall", "provider")
    assert human.splitlines()[0].startswith(f"{mid[:12]}  anti-pattern  provider:x  ")
    assert "by self" in human and "    Provider X drops requests" in human
    assert "tags: night, ops" in human
    none = gossip(home, "recall", "nothing-like-this")
    assert none.returncode == 0 and none.stdout == "" and "no memories match" in none.stderr

    assert ok(home, "retract", mid[:8]).strip() == f"retracted {mid}"
    assert [h["id"] for h in as_json(home, "recall")] == [other]
    again = gossip(home, "retract", mid)
    assert again.returncode == 0 and "already retracted" in again.stderr
    failed(gossip(home, "retract", "abcdef" if not mid.startswith("abcdef") else "fedcba"),
           "no memory")  # fmt: skip


def test_expired_memories_disappear(tmp_path):
    home = tmp_path / "a"
    init(home)
    t0 = time.time()
    mid = ok(home, "remember", "short-lived", "--category", "c", "--expires-in", "2").strip()
    hits = as_json(home, "recall")
    if time.time() < t0 + 2:  # ts >= t0, so it cannot have expired yet
        assert [h["id"] for h in hits] == [mid]
        assert hits[0]["expires_at"] - hits[0]["ts"] == 2000
    deadline = time.monotonic() + 30
    while mid in {h["id"] for h in as_json(home, "recall")}:
        assert time.monotonic() < deadline, "the memory never expired"
        time.sleep(0.2)
    assert time.time() >= t0 + 2


def test_recall_says_when_the_share_cap_hid_memories(tmp_path):
    home = tmp_path / "a"
    init(home)
    # A trusted author's 30 memories (ingested in-process: 30 commands would be slow) and
    # 2 of this host's: another author holds at most half of a recall; ours are all shown.
    flood = Writer()
    now = time.time_ns() // 1_000_000
    with Replica.open(home, create=False) as r:
        r.trust(flood.id, "desk")
        r.ingest_batch([flood.put(records.memory(flood.identity, f"flood {i}", category="c",
                                                 ts=now - i)).raw for i in range(30)])  # fmt: skip
        r.put(*(records.memory(r.identity, f"own {i}", category="c", ts=now - i)
                for i in range(2)))  # fmt: skip
    out = gossip(home, "recall", "--limit", "10", "--json")
    assert out.returncode == 0
    hits = json.loads(out.stdout)
    assert sum(h["author"] == flood.id for h in hits) == 5 and len(hits) == 7
    assert "hid 25 memories of desk over its share (at most 50% of a recall)" in out.stderr


# -- trust across hosts -------------------------------------------------------------


def _public_id_starting_with(prefix: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from crdt.identity import b64url

    for _ in range(100_000):  # one key in 64 starts with '-', one in 4096 with '-h'
        raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        if b64url(raw).startswith(prefix):
            return b64url(raw)
    raise AssertionError(f"no key starting with {prefix!r}")


def test_a_public_id_starting_with_a_dash_is_an_argument_not_an_option(tmp_path):
    """CI once failed on a random key: argparse read `trust add -eBQ…` as an option."""
    home = tmp_path / "h"
    init(home)
    key = _public_id_starting_with("-h")  # also a prefix of the -h option
    assert ok(home, "trust", "add", key, "--name", "dash").startswith(f"trusted {key} as dash ")
    assert ok(home, "recall", "--author", key) == ""  # as an option's value too
    assert ok(home, "trust", "remove", key).strip() == f"removed {key}"
    # The prefix of one that commands take, too (a CI run once failed on
    # `peers forget -cWCaBglan`).
    other = _public_id_starting_with("-c")
    ok(home, "trust", "add", other, "--name", "prefix")
    assert ok(home, "trust", "remove", other[:10]).strip() == f"removed {other}"
    usage = gossip(home, "trust", "add", "-x")  # a real unknown option still is one
    assert usage.returncode == 2 and "KEY" in usage.stderr


def test_trust_decides_whose_records_count(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    me, desk = init(a), init(b, "--name", "desk")
    b_mem = ok(b, "remember", "desk lesson", "--category", "learning").strip()
    ok(b, "breaker", "trip", "kimi-coding/k2p5", "--reason", "500s", "--cooldown", "600")
    ok(b, "bench", "record", "provider:x", "latency_p50", "80", "--unit", "ms")
    ok(b, "export", str(tmp_path / "b.exp"))

    imp = gossip(a, "import", str(tmp_path / "b.exp"))
    assert imp.returncode == 0, imp.stderr
    assert "3 applied" in imp.stdout and "0 refused" in imp.stdout
    assert f"gossip trust add {desk}" in imp.stderr  # why recall will not show them yet

    # not trusted: hidden by default, shown and marked when asked for
    assert as_json(a, "recall") == []
    (hit,) = as_json(a, "recall", "--include-untrusted")
    assert (hit["id"], hit["author"], hit["trusted"]) == (b_mem, desk, False)
    assert as_json(a, "breaker", "list") == []
    assert as_json(a, "bench", "show") == []
    assert as_json(a, "breaker", "list", "--include-untrusted")[0]["tripped_by"] == [desk]
    failed(gossip(a, "retract", b_mem[:10]), "not by this host", "own author")

    assert ok(a, "trust", "add", desk, "--name", "desk").startswith(f"trusted {desk} as desk ")
    (hit,) = as_json(a, "recall")
    assert (hit["id"], hit["trusted"], hit["author_name"]) == (b_mem, True, "desk")
    assert "by desk" in ok(a, "recall")
    (brk,) = as_json(a, "breaker", "list")
    assert (brk["name"], brk["state"], brk["tripped_by"], brk["reason"]) == (
        "kimi-coding/k2p5", "open", [desk], "500s"
    )  # fmt: skip
    (bench,) = as_json(a, "bench", "show")
    assert bench["hosts"] == [desk] and bench["values"] == {"value": approx(80)}
    assert as_json(a, "trust", "list") == [
        {"id": me, "name": "self", "self": True, "trusted": True, "how": "self"},
        {"id": desk, "name": "desk", "self": False, "trusted": True, "how": "keyring"},
    ]
    assert ok(a, "trust", "list").splitlines() == [f"{me}  self", f"{desk}  desk"]

    assert ok(a, "trust", "remove", "desk").strip() == f"removed {desk}"  # by name
    assert as_json(a, "recall") == []
    assert as_json(a, "breaker", "list") == []
    failed(gossip(a, "trust", "remove", desk), "not in the keyring")
    failed(gossip(a, "trust", "add", "not-a-key"), "must be a public id")
    failed(gossip(a, "trust", "add", me), "always trusts itself")


# -- breakers and benchmarks ------------------------------------------------------------


def test_breaker_trip_reset_list(tmp_path):
    home = tmp_path / "a"
    me = init(home)
    tripped = ok(home, "breaker", "trip", "kimi-coding/k2p5", "--reason", "429 storm",
                 "--cooldown", "600", "--failures", "7")  # fmt: skip
    assert tripped.startswith("kimi-coding/k2p5: open, resets in 10m")
    (b,) = as_json(home, "breaker", "list")
    assert (b["name"], b["state"], b["tripped_by"], b["reason"]) == (
        "kimi-coding/k2p5", "open", [me], "429 storm"
    )  # fmt: skip
    (obs,) = b["observations"]
    assert obs["failures"] == 7 and obs["tripped_at"] == obs["ts"]
    assert b["resets_at"] - obs["tripped_at"] == 600_000
    table = ok(home, "breaker", "list").splitlines()
    assert table[0].split() == ["NAME", "STATE", "RESETS", "TRIPPED", "BY", "REASON"]
    assert table[1].split()[:2] == ["kimi-coding/k2p5", "open"] and "429 storm" in table[1]

    ok(home, "breaker", "reset", "kimi-coding/k2p5")
    (b,) = as_json(home, "breaker", "list")
    assert (b["state"], b["tripped_by"], b["resets_at"]) == ("closed", [], None)
    failed(gossip(home, "breaker", "reset", "no-such-breaker"), "no breaker named")


def test_bench_record_and_show(tmp_path):
    home = tmp_path / "a"
    me = init(home)
    ok(home, "bench", "record", "provider:x", "latency_p50", "120", "--unit", "ms")
    ok(home, "bench", "record", "provider:x", "latency_p50", "100.5", "--unit", "ms")  # latest
    ok(home, "bench", "record", "provider:y", "error_rate", "0.02")
    shown = as_json(home, "bench", "show")
    assert [(s["subject"], s["metric"]) for s in shown] == [
        ("provider:x", "latency_p50"), ("provider:y", "error_rate")
    ]  # fmt: skip
    x = shown[0]
    assert x["values"] == {"value": approx(100.5)} and x["unit"] == "ms"
    assert (x["count"], x["hosts"], x["stale"]) == (1, [me], 0)
    assert abs(x["newest"] - time.time() * 1000) < 60_000
    (y,) = as_json(home, "bench", "show", "provider:y")
    assert y["values"] == {"value": approx(0.02)} and y["unit"] == ""
    table = ok(home, "bench", "show").splitlines()
    assert table[1].split()[:5] == ["provider:x", "latency_p50", "100.5", "ms", "self"]
    for bad in (["a|b", "m", "1"], ["s", "m", "nan"]):
        assert gossip(home, "bench", "record", *bad).returncode == 2


# -- export and import --------------------------------------------------------------


def test_export_then_import_gives_the_same_view(tmp_path):
    a, c = tmp_path / "a", tmp_path / "c"
    me = init(a)
    ok(a, "remember", "lesson one", "--category", "learning", "--tag", "t")
    gone = ok(a, "remember", "lesson two", "--category", "learning").strip()
    ok(a, "retract", gone)
    ok(a, "breaker", "trip", "b1", "--reason", "r", "--cooldown", "600")
    ok(a, "bench", "record", "s", "m", "3", "--unit", "ms")
    exp = tmp_path / "a.exp"
    assert "exported 5 signed updates" in ok(a, "export", str(exp))
    data = exp.read_bytes()
    assert data.startswith(EXPORT_MAGIC) and len(decode_export(data)) == 5
    assert gossip(a, "export", "-", binary=True).stdout == data  # '-' is stdout

    init(c)
    ok(c, "trust", "add", me)
    imp = gossip(c, "import", str(exp))
    assert imp.returncode == 0 and "5 applied" in imp.stdout, imp
    for cmd in (["recall"], ["breaker", "list"], ["bench", "show"]):
        theirs, ours = as_json(a, *cmd), as_json(c, *cmd)
        for entry in theirs + ours:
            entry.pop("author_name", None)  # "self" on a, the keyring name on c
            if "values" in entry:  # a recency-weighted mean: it moves with the clock
                entry["values"] = {k: approx(v) for k, v in entry["values"].items()}
        assert ours == theirs and ours, cmd
    again = gossip(c, "import", "-", stdin=data)
    assert again.returncode == 0 and "0 applied, 5 already present" in again.stdout
    came = next(line for line in ok(c, "show", gone).splitlines() if line.startswith("came:"))
    assert f"first received from import:{exp} " in came, came  # the whole file, not 12 chars

    # --yjs: the materialised document as one plain Yjs update, readable by pycrdt
    ok(a, "export", "--yjs", str(tmp_path / "a.yjs"))
    doc = pycrdt.Doc()
    doc.apply_update((tmp_path / "a.yjs").read_bytes())
    held = doc.get("records", type=pycrdt.Map).to_py()
    assert gone in held and json.loads(held[gone]["body"])["text"] == "lesson two"
    assert any(k.startswith(f"breaker:{me}:b1") for k in doc.get("state", type=pycrdt.Map))
    failed(gossip(c, "import", str(tmp_path / "a.yjs")), "not an sm-gossip export")


def test_forged_import_is_refused_and_the_valid_updates_are_kept(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    init(a)
    first = ok(a, "remember", "genuine one", "--category", "learning").strip()
    second = ok(a, "remember", "genuine two", "--category", "learning").strip()
    ok(a, "export", str(tmp_path / "a.exp"))
    genuine = decode_export((tmp_path / "a.exp").read_bytes())
    with Replica.open(a, create=False) as r:
        victims = r.records()
    tampered = genuine[1][:-1] + bytes([genuine[1][-1] ^ 1])  # one bit of the Yjs bytes
    mallory = Writer()
    own = records.memory(mallory.identity, "mallory's own", category="c", ts=1)
    honest = mallory.put(own)
    stolen = mallory.put(victims[first])  # a's genuine record, in an update mallory signed
    forged = tmp_path / "forged.exp"
    forged.write_bytes(b"".join(encode_export([genuine[0], tampered, honest.raw, stolen.raw])))

    init(b)
    before = gossip(b, "export", "-", binary=True).stdout
    only_bad = tmp_path / "only-bad.exp"
    only_bad.write_bytes(b"".join(encode_export([tampered, stolen.raw])))
    out = gossip(b, "import", str(only_bad))
    assert out.returncode == 1 and "0 applied" in out.stdout and "2 refused" in out.stdout
    assert gossip(b, "export", "-", binary=True).stdout == before  # nothing changed

    out = gossip(b, "import", str(forged))
    assert out.returncode == 1
    assert "2 applied, 0 already present, 0 waiting, 2 refused" in out.stdout
    refused = [line for line in out.stderr.splitlines() if line.startswith("refused: ")]
    assert [line.split(": ")[1] for line in refused] == ["digest", "record-author"], out.stderr
    assert "Traceback" not in out.stderr
    seen = {h["id"]: h["text"] for h in as_json(b, "recall", "--include-untrusted")}
    assert seen == {first: "genuine one", own.id: "mallory's own"}
    hidden = gossip(b, "recall")  # nothing trusted: it says what --include-untrusted would show
    assert hidden.stdout == "" and "2 memories by authors not trusted here" in hidden.stderr

    fixed = gossip(b, "import", str(tmp_path / "a.exp"))  # the real thing still goes in
    assert fixed.returncode == 0 and "1 applied, 1 already present" in fixed.stdout
    assert second in {h["id"] for h in as_json(b, "recall", "--include-untrusted")}


def test_importing_what_is_not_an_export_is_a_one_line_error(tmp_path):
    home = tmp_path / "a"
    init(home)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(300))
    failed(gossip(home, "import", str(garbage)), "not an sm-gossip export")
    real = b"".join(encode_export([b"x" * 100]))
    (tmp_path / "cut").write_bytes(real[:-10])
    failed(gossip(home, "import", str(tmp_path / "cut")), "not an sm-gossip export", "update 1")
    (tmp_path / "v2").write_bytes(b"sm-gossip export 2\n")
    failed(gossip(home, "import", str(tmp_path / "v2")), "version 2")
    failed(gossip(home, "import", str(tmp_path / "missing")), "No such file")
    junk = gossip(home, "import", "-", stdin=real)  # framed, but not a signed update
    assert junk.returncode == 1 and "1 refused" in junk.stdout
    assert junk.stderr.startswith("refused: malformed: ") and junk.stderr.count("\n") == 1


def test_import_counts_updates_that_wait_for_missing_ones(tmp_path):
    home = tmp_path / "a"
    init(home)
    w, v = Writer(), Writer()
    w1, w2 = (w.put(records.memory(w.identity, f"w{i}", category="c", ts=i)) for i in (1, 2))
    v.put(records.memory(v.identity, "v1", category="c", ts=1))  # never exported
    v2 = v.put(records.memory(v.identity, "v2", category="c", ts=2))
    # w2 arrives before the w1 it builds on (applied once w1 is in); v2 lacks v1 entirely
    file = tmp_path / "out-of-order.exp"
    file.write_bytes(b"".join(encode_export([w2.raw, w1.raw, v2.raw])))
    out = gossip(home, "import", str(file))
    assert out.returncode == 0, out.stderr
    assert "2 applied, 0 already present, 1 waiting, 0 refused" in out.stdout
    assert "1 update builds on updates this file lacks; it was not kept" in out.stderr
    texts = {h["text"] for h in as_json(home, "recall", "--include-untrusted")}
    assert texts == {"w1", "w2"}


def test_an_import_with_a_deeply_nested_body_keeps_the_rest_visible(tmp_path):
    """Issue 17: an import of [nested memory, honest memory] left the honest one durable
    but invisible. The nested one is refused by name; the honest one is recalled at once."""
    home = tmp_path / "a"
    init(home)
    mallory, honest = Writer(), Writer()
    lesson = records.memory(honest.identity, "honest lesson", category="c", ts=1)
    file = tmp_path / "nested.exp"
    file.write_bytes(b"".join(encode_export(
        [put_unparsed(mallory, nested_memory(mallory, 980)).raw, honest.put(lesson).raw]
    )))  # fmt: skip
    out = gossip(home, "import", str(file))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "1 applied, 0 already present, 0 waiting, 1 refused" in out.stdout
    assert out.stderr.startswith("refused: record-depth: record body nests deeper than 32")
    assert [h["id"] for h in as_json(home, "recall", "--include-untrusted")] == [lesson.id]


def test_terminal_control_characters_are_shown_not_obeyed(tmp_path):
    home = tmp_path / "a"
    init(home)
    evil = "ok\x1b[2J\x1b]0;pwned\x07 \u202eesrever\r\nline two \x9b31m"
    ok(home, "remember", evil, "--category", "c\x1b[31m", "--tag", "\x1b[0m")
    human = ok(home, "recall")
    assert not any(c in human for c in "\x1b\x07\r\u202e\x9b")
    assert "ok\\x1b[2J\\x1b]0;pwned\\x07 \\u202eesrever" in human and "line two \\x9b31m" in human
    raw = ok(home, "recall", "--json")
    assert not any(c in raw for c in "\x1b\x07\r\u202e\x9b")
    (hit,) = json.loads(raw)
    assert (hit["text"], hit["category"], hit["tags"]) == (evil, "c\x1b[31m", ["\x1b[0m"])


def test_a_command_on_a_directory_that_is_no_data_dir_leaves_nothing_in_it(tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    for args in (["recall", "x"], ["status"], ["remember", "x", "--category", "c"]):
        failed(gossip(plain, *args), "no data dir", "gossip init")
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]
