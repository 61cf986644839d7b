"""Random and mutated input to every parser the wire, the CLI and the data dir feed:
each raises only its typed error (a ``GossipError``), never anything else.

Covered elsewhere, not repeated here: protocol messages (``test_protocol.py``), Yjs
updates, signed updates and record values (``test_wire.py``), whole peer requests
(``test_fuzz_peer.py``). Here: the signature headers, state vectors, export files,
public ids, key files and config files, and the nesting bound of record bodies and
update headers (``records.nests_deeper_than``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdt import GossipError, Identity, IdentityError, RecordError, UpdateError, records, wire
from crdt.identity import KEY_FILE, public_key_bytes
from gossip import config
from gossip.cli import EXPORT_MAGIC, ExportError, decode_export, encode_export
from gossip.transport import auth
from tests.test_cli import failed, gossip, init

SETTINGS = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
ME = Identity.generate()
GOOD_HEADERS = auth.sign(ME, role="request", method="POST", path="/v1/sync", body=b"x",
                         now_ms=1_790_000_000_000, recipient=ME.public_id)  # fmt: skip
GOOD_EXPORT = b"".join(encode_export([os.urandom(40), b"", os.urandom(300)]))

flips = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=4)


def mutate(data: bytes, changes: list[tuple[int, int]], cut: int | None = None) -> bytes:
    out = bytearray(data)
    for pos, bit in changes:
        if out:
            out[pos % len(out)] ^= 1 << bit
    if cut is not None:
        del out[cut:]
    return bytes(out)


header_text = st.text(max_size=200) | st.sampled_from(list(GOOD_HEADERS.values())).flatmap(
    lambda v: st.builds(lambda c: mutate(v.encode(), c).decode("latin-1"), flips)
)


@settings(SETTINGS, max_examples=300)
@given(headers=st.dictionaries(st.sampled_from([auth.KEY_HEADER, auth.SIGNATURE_HEADER, "X"]),
                               header_text, max_size=3))  # fmt: skip
def test_signature_headers_raise_only_auth_errors(headers: dict[str, str]) -> None:
    v = auth.Verifier(lambda: {ME.public_id}, lambda: 1_790_000_000_000)
    try:
        signed = v.check_headers(headers)
        v.check_body(signed, role="request", method="POST", path="/v1/sync", body=b"x",
                     recipient=ME.public_id)  # fmt: skip
    except auth.AuthError:
        return


@settings(SETTINGS, max_examples=300)
@given(data=st.binary(max_size=200))
def test_state_vectors_raise_only_update_errors(data: bytes) -> None:
    with contextlib.suppress(UpdateError):
        sv = wire.decode_state_vector(data)
        assert wire.decode_state_vector(wire.encode_state_vector(sv)) == sv


EXPORTS = (
    st.binary(max_size=300)
    | st.builds(lambda b: EXPORT_MAGIC + b, st.binary(max_size=300))
    | st.builds(mutate, st.just(GOOD_EXPORT), flips, st.none() | st.integers(0, 400))
)


@settings(SETTINGS, max_examples=400)
@given(data=EXPORTS)
def test_export_files_raise_only_export_errors(data: bytes) -> None:
    with contextlib.suppress(ExportError):
        decode_export(data, "fuzz")


@settings(SETTINGS, max_examples=300)
@given(text=st.text(max_size=60) | st.builds(
    lambda c: mutate(ME.public_id.encode(), c).decode("latin-1"), flips))  # fmt: skip
def test_public_ids_raise_only_identity_errors(text: str) -> None:
    with contextlib.suppress(IdentityError):
        assert len(public_key_bytes(text)) == 32


def _key_pem(tmp: Path) -> bytes:
    Identity.create(tmp / "k")
    return (tmp / "k" / KEY_FILE).read_bytes()


def test_key_files_raise_only_identity_errors(tmp_path: Path) -> None:
    pem = _key_pem(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    mutated = st.builds(mutate, st.just(pem), flips, st.none() | st.integers(0, len(pem)))

    @settings(SETTINGS, max_examples=100)
    @given(data=st.binary(max_size=300) | mutated)
    def fuzz(data: bytes) -> None:
        path = home / KEY_FILE
        path.write_bytes(data)
        os.chmod(path, 0o600)
        with contextlib.suppress(IdentityError):
            Identity.load(home)

    fuzz()


# -- config files ---------------------------------------------------------------------------


def toml_value(v: Any) -> str:
    """A TOML rendering of a JSON-like value (inline tables and arrays)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                           "-inf" if v == -math.inf else repr(v))  # fmt: skip
    if isinstance(v, int | str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=30)
           | st.sampled_from(["lan", "local", "tailnet", "127.0.0.1:7471", "[::1]:1", "x:0",
                              "host:99999", "tailscale", ""]))  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(sorted(config.MDNS_SETTINGS | config.TAILNET_SETTINGS)) | st.text(max_size=5),
    inner, max_size=3), max_leaves=6)  # fmt: skip
documents = st.dictionaries(
    st.sampled_from(sorted(config.KNOWN_SETTINGS)) | st.text(max_size=5), values, max_size=5
)


def test_config_files_raise_only_config_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    loaded = []

    @settings(SETTINGS, max_examples=300)
    @given(doc=documents, junk=st.none() | st.binary(max_size=100))
    def fuzz(doc: dict[str, Any], junk: bytes | None) -> None:
        text = "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items())
        data = text.encode() if junk is None else junk
        (home / config.CONFIG_FILE).write_bytes(data)
        with contextlib.suppress(config.ConfigError):
            loaded.append(config.load(home))

    fuzz()
    assert issubclass(config.ConfigError, GossipError) and issubclass(ExportError, GossipError)


def _pem_with_oid_byte(tmp: Path, last_oid_byte: int) -> bytes:
    """A real Ed25519 PKCS#8 key file whose algorithm OID (1.3.101.112) ends in another
    byte: 111 is X448, 110 X25519 — with Ed25519's 32 key bytes."""
    key = serialization.load_pem_private_key(_key_pem(tmp), password=None)
    der = bytearray(key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    assert der[9:12] == b"\x2b\x65\x70"
    der[11] = last_oid_byte
    body = base64.b64encode(der)
    label = b"PRIVATE KEY"  # a PEM made here at run time; no key is kept in the repository
    return b"-----BEGIN " + label + b"-----\n" + body + b"\n-----END " + label + b"-----\n"


def test_a_key_file_naming_another_curve_is_an_identity_error(tmp_path: Path) -> None:
    """Found by the key file fuzz: a PKCS#8 file naming X448 with 32 key bytes makes
    OpenSSL raise ``cryptography.exceptions.InternalError``, which escaped ``Identity.load``
    (`gossip id` said "unexpected error: InternalError")."""
    home = tmp_path / "h"
    init(home)
    for oid_byte in (0x6F, 0x6E):  # X448, X25519
        (home / KEY_FILE).write_bytes(_pem_with_oid_byte(tmp_path / f"k{oid_byte}", oid_byte))
        try:
            Identity.load(home)
        except IdentityError as e:
            assert "not a readable Ed25519 private key" in str(e) or "not an Ed25519" in str(e)
        else:
            raise AssertionError("loaded a key of another curve")
    failed(gossip(home, "id"), "host.key")


# -- the nesting bound (issue 17): bodies near and past records.MAX_BODY_DEPTH ----------

LIMIT = records.MAX_BODY_DEPTH
tricky_text = st.text(alphabet='[]{}"\\ax\u00e9,:', max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    """The reference: how deep a parsed JSON value nests (a scalar is 0)."""
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


def wrapped(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


@settings(SETTINGS, max_examples=400)
@given(value=json_values, extra=st.sampled_from([0, 1, LIMIT - 8, LIMIT - 2, LIMIT - 1, LIMIT,
                                                 LIMIT + 1, 200]))  # fmt: skip
def test_the_nesting_bound_agrees_with_a_parser(value: Any, extra: int) -> None:
    value = wrapped(value, extra)
    depth = depth_of(value)
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        for limit in {max(depth - 1, 0), depth, LIMIT}:
            assert records.nests_deeper_than(text.encode(), limit) == (depth > limit), text


BODY_PREFIX = b'{"author":"' + ME.public_id.encode() + b'","kind":"memory","ts":1,"v":1,"x":'
near_limit = st.sampled_from([LIMIT - 2, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2, 980, 5000])


@settings(SETTINGS, max_examples=400)
@given(levels=near_limit, brackets=st.sampled_from(["[]", "{}"]), junk=flips,
       spoil=st.booleans())  # fmt: skip
def test_bodies_near_and_past_the_nesting_bound_raise_only_record_errors(
    levels: int, brackets: str, junk: list[tuple[int, int]], spoil: bool
) -> None:
    """The body object is level 1; ``levels - 1`` more nest in field ``x``. Mutated
    ones (bits flipped anywhere) give a RecordError or a record, whatever the stack."""
    open_, close = brackets.encode()[:1], brackets.encode()[1:]
    inner = (b'{"k":' if open_ == b"{" else b"[") * (levels - 1) + b"0" * (open_ == b"{")
    inner += close * (levels - 1)
    body = BODY_PREFIX + inner + b"}"
    if spoil:
        body = mutate(body, junk)
    try:
        fields = records.SignedRecord(body, b"").fields
    except RecordError as e:
        assert spoil or levels > LIMIT, e
        return
    assert depth_of(fields) <= LIMIT
    assert spoil or levels <= LIMIT


@settings(SETTINGS, max_examples=200)
@given(levels=near_limit, junk=flips)
def test_update_headers_nested_past_the_bound_raise_only_update_errors(
    levels: int, junk: list[tuple[int, int]]
) -> None:
    from crdt.updates import UpdateHeader

    raw = b'{"v":1,"x":' + b"[" * levels + b"]" * levels + b"}"
    for data in (raw, mutate(raw, junk)):
        with contextlib.suppress(UpdateError):
            UpdateHeader.decode(data)
