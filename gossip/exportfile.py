"""The export file format (`gossip export` / `gossip import`, and the local API's
/v1/export and /v1/import), and the summary of an import.

An export is ``EXPORT_MAGIC`` then each signed update, verbatim, as varuint(length) ||
bytes (docs/cli.md "The export file format"). Only the framing is checked here; each
update is judged by the gate when it is imported.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from crdt import RejectedUpdate, UpdateError, wire

from .errors import ExportError

if TYPE_CHECKING:
    from crdt import Outcome

EXPORT_MAGIC = b"sm-gossip export 1\n"
_EXPORT_PREFIX = b"sm-gossip export "
_MAX_EXPORT_ITEM = 1 << 30  # no single signed update comes near this (the gate caps at 64 MiB)


def encode_export(updates: Iterable[bytes]) -> Iterator[bytes]:
    """``EXPORT_MAGIC``, then each signed update as varuint(length) || bytes."""
    yield EXPORT_MAGIC
    for raw in updates:
        yield wire.encode_varuint(len(raw))
        yield raw


def decode_export(data: bytes, name: str = "input") -> list[bytes]:
    """The signed updates of an export file, verbatim; ExportError if it is not one.

    Only the framing is checked here: each update is judged by the gate on import."""
    if not data.startswith(EXPORT_MAGIC):
        if data.startswith(_EXPORT_PREFIX):
            version = data[len(_EXPORT_PREFIX) :].split(b"\n", 1)[0][:20]
            raise ExportError(
                f"{name} is an sm-gossip export of version {version.decode('ascii', 'replace')}; "
                "this gossip reads version 1"
            )
        raise ExportError(f"{name} is not an sm-gossip export (no 'sm-gossip export 1' header)")
    out: list[bytes] = []
    pos = len(EXPORT_MAGIC)
    view = memoryview(data)
    while pos < len(data):
        try:
            length, pos = wire.read_varuint(data, pos)
        except UpdateError:
            length = None
        if length is None or length > _MAX_EXPORT_ITEM or pos + length > len(data):
            raise ExportError(
                f"{name} is not an sm-gossip export: it ends inside update {len(out) + 1} "
                "(truncated?)"
            )
        out.append(bytes(view[pos : pos + length]))
        pos += length
    return out


def import_summary(
    outcomes: Sequence[Outcome], sv: dict[int, int], trusted: Collection[str]
) -> dict[str, Any]:
    """What an import did, JSON-ready: counts, each refused update with its rule, and
    the updates applied from authors not trusted here (the effective trusted set)."""
    counts = {"applied": 0, "duplicate": 0, "waiting": 0}
    refused: list[dict[str, Any]] = []
    untrusted: dict[str, int] = {}
    for k, o in enumerate(outcomes):
        su = o.update
        status = o.status
        if status == "buffered" and su is not None and sv.get(su.client, 0) >= su.header.end:
            status = "applied"  # it waited for a later update of the same file, then applied
        if status == "applied" and su is not None and su.author not in trusted:
            untrusted[su.author] = untrusted.get(su.author, 0) + 1
        if status == "rejected":
            err = o.error
            key = ""
            if isinstance(err, RejectedUpdate):
                rule, detail, key = err.rule, err.detail, err.key
            else:
                rule = "malformed" if isinstance(err, UpdateError) else type(err).__name__
                detail = str(err)
            refused.append({"index": k, "rule": rule, "detail": detail, "key": key,
                            "author": su.author if su is not None else None})  # fmt: skip
        elif status == "buffered":
            counts["waiting"] += 1
        else:
            counts[status] += 1
    return {"updates": len(outcomes), **counts, "refused": refused, "untrusted": untrusted}
