"""A reader for the Yjs v1 update format: which structs an update carries, and where.

pycrdt applies updates but does not say what is inside one. The ingest gate needs to
know, before anything touches the document: which client and clock range each struct
has, whether an item hangs off a named root (and which key) or inherits its parent from
an origin, its content type, and the delete set. This module reads exactly that and
nothing more; it never builds a document. Any malformed input raises ``UpdateError``.

Format (lib0 encoding, as written by Yjs ``writeStructs``/``writeDeleteSet`` and yrs):
  update  := varuint(groups) group* deleteset
  group   := varuint(nstructs) varuint(client) varuint(clock) struct*
  struct  := info:u8 ; info&31 == 0: GC varuint(len) ; == 10: Skip varuint(len) ; else Item
  item    := [origin ID if info&0x80] [right origin ID if info&0x40]
             [if neither: varuint(1)+string(root name) | varuint(0)+ID(parent)]
             [if neither and info&0x20: string(parent key)] content(info&31)
  deleteset := varuint(nclients) (varuint(client) varuint(n) (varuint(clock) varuint(len))*)*
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import UpdateError

# Content refs (Yjs: ContentDeleted=1, JSON=2, Binary=3, String=4, Embed=5, Format=6,
# Type=7, Any=8, Doc=9); 0 is a GC struct and 10 a Skip.
GC, DELETED, JSON, BINARY, STRING, EMBED, FORMAT, TYPE, ANY, DOC, SKIP = range(11)
CONTENT_NAMES = {
    GC: "gc", DELETED: "deleted", JSON: "json", BINARY: "binary", STRING: "string",
    EMBED: "embed", FORMAT: "format", TYPE: "shared-type", ANY: "any", DOC: "subdoc",
    SKIP: "skip",
}  # fmt: skip
MAX_ANY_DEPTH = 32

ID = tuple[int, int]  # (client, clock)
_F32, _F64, _I64 = struct.Struct(">f"), struct.Struct(">d"), struct.Struct(">q")


class Struct(NamedTuple):
    """One struct: ``[clock, clock+length)`` of ``client``; parent fields only for items.
    (A named tuple: immutable like a frozen dataclass, and built in a fifth of the time,
    which the gate pays once a struct.)"""

    client: int
    clock: int
    length: int
    ref: int
    origin: ID | None = None
    right_origin: ID | None = None
    parent_root: str | None = None  # named root, when the parent is encoded
    parent_id: ID | None = None  # nested type parent, when the parent is encoded
    parent_sub: str | None = None  # map key, when the parent is encoded
    values: tuple[Any, ...] | None = None  # the plain values of Any content


@dataclass(frozen=True, slots=True)
class ScannedUpdate:
    structs: tuple[Struct, ...]
    delete_set: dict[int, tuple[tuple[int, int], ...]]  # client -> ((clock, len), ...)
    # (key, start, end): the bytes of the value of each item under the records root
    # (``nulled``; the store finds a record's value in its stored update by them).
    record_spans: tuple[tuple[str, int, int], ...] = ()


class _Reader:
    __slots__ = ("data", "pos", "values")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.values: tuple[Any, ...] | None = None

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise UpdateError("update ends early")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varuint(self) -> int:
        data, pos = self.data, self.pos
        try:
            b = data[pos]
            if b < 0x80:  # the common case: one byte
                self.pos = pos + 1
                return b
            num = b & 0x7F
            shift = 7
            while True:
                pos += 1
                b = data[pos]
                num |= (b & 0x7F) << shift
                if b < 0x80:
                    self.pos = pos + 1
                    return num
                shift += 7
                if shift > 63:
                    raise UpdateError("varuint longer than 64 bits")
        except IndexError:
            raise UpdateError("update ends early") from None

    def varint(self) -> int:
        """lib0 signed varint: 6 value bits and a sign bit first, then 7 bits a byte."""
        b = self.u8()
        num = b & 0x3F
        negative = b & 0x40
        shift = 6
        while b & 0x80:
            b = self.u8()
            num |= (b & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise UpdateError("varint too long")
        return -num if negative else num

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise UpdateError("update ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # a length of one byte: most strings
            n = data[pos]
            pos += 1
        else:
            n = self.varuint()
            pos = self.pos
        if pos + n > len(data):
            raise UpdateError("update ends early")
        self.pos = pos + n
        try:
            return self.data[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError:
            raise UpdateError("invalid UTF-8 in a string") from None

    def id(self) -> ID:
        return (self.varuint(), self.varuint())

    def any(self, depth: int = 0) -> Any:
        """One lib0 ``Any`` value, as the Python value pycrdt would give for it."""
        if depth > MAX_ANY_DEPTH:
            raise UpdateError("value nested too deeply")
        tag = self.u8()
        if tag == 119:
            return self.string()
        if tag == 118:
            obj = {}
            data, string = self.data, self.string
            for _ in range(self.count()):
                key = string()
                if self.pos < len(data) and data[self.pos] == 119:  # a string: the common case
                    self.pos += 1
                    obj[key] = string()
                else:
                    obj[key] = self.any(depth + 1)
            return obj
        if tag == 117:
            return [self.any(depth + 1) for _ in range(self.count())]
        if tag in (127, 126):  # undefined, null
            return None
        if tag in (121, 120):
            return tag == 120
        if tag == 125:
            return self.varint()
        if tag == 124:
            return _F32.unpack(self.take(4))[0]
        if tag == 123:
            return _F64.unpack(self.take(8))[0]
        if tag == 122:
            return _I64.unpack(self.take(8))[0]
        if tag == 116:
            return self.take(self.varuint())
        raise UpdateError(f"unknown value tag {tag}")

    def count(self) -> int:
        """A length that must be backed by at least as many remaining bytes."""
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # one byte: most counts
            n = data[pos]
            self.pos = pos + 1
        else:
            n = self.varuint()
        if n > len(data) - self.pos:
            raise UpdateError("count larger than the rest of the update")
        return n

    def content_length(self, ref: int) -> int:
        if ref == DELETED:
            n = self.varuint()
        elif ref == JSON:
            n = self.count()
            for _ in range(n):
                self.string()
        elif ref == BINARY:
            self.take(self.varuint())
            n = 1
        elif ref == STRING:
            n = len(self.string().encode("utf-16-le")) // 2
        elif ref == EMBED:
            self.string()
            n = 1
        elif ref == FORMAT:
            self.string()
            self.string()
            n = 1
        elif ref == TYPE:
            type_ref = self.varuint()
            if type_ref in (3, 5):  # XmlElement, XmlHook carry a name
                self.string()
            n = 1
        elif ref == ANY:
            n = self.count()
            self.values = (self.any(),) if n == 1 else tuple(self.any() for _ in range(n))
        elif ref == DOC:
            self.string()
            self.any()
            n = 1
        else:
            raise UpdateError(f"unknown content ref {ref}")
        if n < 1:
            raise UpdateError("empty item")
        return n


def scan(update: bytes) -> ScannedUpdate:
    """Read every struct header and the delete set of a Yjs v1 update."""
    r = _Reader(update)
    varuint, string, u8 = r.varuint, r.string, r.u8  # (bound once: this runs per update)
    structs: list[Struct] = []
    spans: list[tuple[str, int, int]] = []
    for _ in range(r.count()):
        n_structs = r.count()
        client = varuint()
        clock = varuint()
        for _ in range(n_structs):
            info = u8()
            ref = info & 0x1F
            if ref in (GC, SKIP):
                length = varuint()
                if length < 1:
                    raise UpdateError("empty struct")
                structs.append(Struct(client, clock, length, ref))
                clock += length
                continue
            origin = (varuint(), varuint()) if info & 0x80 else None
            right = (varuint(), varuint()) if info & 0x40 else None
            root = pid = sub = None
            if not info & 0xC0:
                if varuint() == 1:
                    root = string()
                else:
                    pid = (varuint(), varuint())
                if info & 0x20:
                    sub = string()
            if ref == ANY:  # every value the gate admits: read here, not in content_length
                length = r.count()
                if length == 1:
                    at = r.pos
                    values: tuple[Any, ...] | None = (r.any(),)
                    if root == "records" and sub is not None:
                        spans.append((sub, at, r.pos))
                elif length < 1:
                    raise UpdateError("empty item")
                else:
                    values = tuple(r.any() for _ in range(length))
            else:
                r.values = None
                length = r.content_length(ref)
                values = r.values
            structs.append(
                Struct(client, clock, length, ref, origin, right, root, pid, sub, values)
            )
            clock += length
    delete_set = _delete_set(r)
    if r.pos != len(update):
        raise UpdateError(f"{len(update) - r.pos} trailing bytes after the delete set")
    return ScannedUpdate(tuple(structs), delete_set, tuple(spans))


def nulled(update: bytes, spans: tuple[tuple[str, int, int], ...]) -> bytes:
    """``update`` with the values at ``spans`` (``ScannedUpdate.record_spans``) replaced
    by null: ``without_values(update, "records")`` from what ``scan`` already read."""
    if not spans:
        return update
    out: list[bytes] = []
    copied = 0
    for _, start, end in spans:
        out.append(update[copied:start])
        out.append(_NULL)
        copied = end
    out.append(update[copied:])
    return b"".join(out)


def with_record_values(update: bytes, values: Callable[[list[str]], dict[str, bytes]]) -> bytes:
    """The inverse of ``nulled`` for a whole document: each null value of an item under
    the records root replaced by the value ``values(keys)`` gives for its key (its lib0
    bytes, as the update that carried it has them); a key it does not give stays null."""
    holes = [(key, start, end) for key, start, end in scan(update).record_spans
             if update[start:end] == _NULL]  # fmt: skip
    found = values([key for key, _, _ in holes]) if holes else {}
    out: list[bytes] = []
    copied = 0
    for key, start, end in holes:
        if key in found:
            out.append(update[copied:start])
            out.append(found[key])
            copied = end
    out.append(update[copied:])
    return b"".join(out)


def decode_value(data: bytes) -> Any:
    """One lib0 ``Any`` value that is the whole of ``data`` (UpdateError if not)."""
    r = _Reader(data)
    value = r.any()
    if r.pos != len(data):
        raise UpdateError(f"{len(data) - r.pos} trailing bytes after a value")
    return value


def without_values(update: bytes, root: str | None = None) -> bytes:
    """The same update with every Any value replaced by null (with ``root``: only those of
    the items that name that root as their parent): the same structs (clients, clocks,
    lengths, origins, parents, keys, content types) and the same delete set, one byte a
    value. yrs integrates it exactly as the update itself, and a document built from it
    has the same state vector and accepts (or refuses) the same updates next. With
    ``root`` "records", what the replica's document holds (the records' values are in the
    store); without, what tests compare documents by (``tests/forge.py``)."""
    r = _Reader(update)
    varuint, string, u8 = r.varuint, r.string, r.u8
    out: list[bytes] = []
    copied = 0  # update[copied:r.pos] is still to be copied as is
    for _ in range(r.count()):
        n_structs = r.count()
        varuint()
        varuint()
        for _ in range(n_structs):
            info = u8()
            ref = info & 0x1F
            if ref in (GC, SKIP):
                varuint()
                continue
            if info & 0x80:
                varuint(), varuint()
            if info & 0x40:
                varuint(), varuint()
            parent = None
            if not info & 0xC0:
                if varuint() == 1:
                    parent = string()
                else:
                    varuint(), varuint()
                if info & 0x20:
                    string()
            if ref == ANY and (root is None or parent == root):
                length = r.count()
                if length < 1:
                    raise UpdateError("empty item")
                out.append(update[copied : r.pos])
                for _ in range(length):
                    r.any()
                out.append(_NULL * length)
                copied = r.pos
            else:
                r.content_length(ref)
    _delete_set(r)
    if r.pos != len(update):
        raise UpdateError(f"{len(update) - r.pos} trailing bytes after the delete set")
    out.append(update[copied:])
    return b"".join(out)


_NULL = bytes([126])  # lib0 Any: null


def scan_delete_set(update: bytes) -> dict[int, tuple[tuple[int, int], ...]]:
    """The delete set of an update that must carry no structs (else UpdateError)."""
    r = _Reader(update)
    if r.varuint() != 0:
        raise UpdateError("expected an update without structs")
    ds = _delete_set(r)
    if r.pos != len(update):
        raise UpdateError("trailing bytes after the delete set")
    return ds


def _delete_set(r: _Reader) -> dict[int, tuple[tuple[int, int], ...]]:
    delete_set: dict[int, tuple[tuple[int, int], ...]] = {}
    for _ in range(r.count()):
        client = r.varuint()
        ranges = []
        for _ in range(r.count()):
            ranges.append((r.varuint(), r.varuint()))
        if client in delete_set:
            raise UpdateError("delete set names a client twice")
        delete_set[client] = tuple(ranges)
    return delete_set


def normalize_delete_set(
    ds: dict[int, tuple[tuple[int, int], ...]],
) -> dict[int, list[tuple[int, int]]]:
    """A delete set as sorted, merged ranges: encoders may split or order them differently."""
    out: dict[int, list[tuple[int, int]]] = {}
    for client, ranges in ds.items():
        merged: list[tuple[int, int]] = []
        for start, length in sorted(ranges):
            if merged and start <= merged[-1][0] + merged[-1][1]:
                s0, l0 = merged[-1]
                merged[-1] = (s0, max(l0, start + length - s0))
            else:
                merged.append((start, length))
        if merged:
            out[client] = merged
    return out


def read_varuint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """The varuint at ``pos`` and the position after it (UpdateError if there is none)."""
    r = _Reader(data)
    r.pos = pos
    n = r.varuint()
    return n, r.pos


def encode_varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_state_vector(sv: dict[int, int]) -> bytes:
    """Yjs v1 state vector bytes (what ``pycrdt.get_update`` takes)."""
    out = bytearray(encode_varuint(len(sv)))
    for client, clock in sv.items():
        out += encode_varuint(client) + encode_varuint(clock)
    return bytes(out)


def decode_state_vector(data: bytes) -> dict[int, int]:
    r = _Reader(data)
    sv = {}
    for _ in range(r.count()):
        client = r.varuint()
        sv[client] = r.varuint()
    if r.pos != len(data):
        raise UpdateError("trailing bytes after a state vector")
    return sv


def encode_delete_set(ds: dict[int, tuple[tuple[int, int], ...]]) -> bytes:
    out = bytearray(encode_varuint(len(ds)))
    for client, ranges in ds.items():
        out += encode_varuint(client) + encode_varuint(len(ranges))
        for clock, length in ranges:
            out += encode_varuint(clock) + encode_varuint(length)
    return bytes(out)
