"""The parameters an operation takes: each field's kind checks a value (from JSON, from
Python or from the text of a query string or a command line), says its JSON Schema, and
raises ``Invalid`` naming the field. A limit lives here once; the local API, its OpenAPI
document, the CLI's argument types and the Python client all read it from here.

Nothing here does I/O or knows about any surface.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import Invalid, TooLarge

Schema = dict[str, Any]

MAX_SECONDS = 100 * 365 * 86400  # timestamps stay well inside 64-bit integers (SQLite, JS)
# Blank means only whitespace, and whitespace means what Python's ``str.isspace`` says
# (what ``str.strip`` removes). JSON Schema's ``\s`` is ECMA-262's set, which differs
# (it has U+FEFF; it lacks U+001C-U+001F and U+0085), so the schema spells the set out
# and the server checks with the same class: one rule, said once, on both sides.
WHITESPACE = ("\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a"
              "\\u2028\\u2029\\u202f\\u205f\\u3000")
NOT_BLANK = f"[^{WHITESPACE}]"  # a regex: one character that is not whitespace
_NOT_BLANK = re.compile(NOT_BLANK)
MAX_SHORT = 256
_DIGITS = re.compile(r"[0-9]{1,12}")


class Kind:
    """What values a field takes. ``check`` takes a value as JSON or Python gives it;
    ``parse`` the text of a query parameter or a command-line argument."""

    def check(self, value: Any, name: str) -> Any:
        raise NotImplementedError

    def parse(self, text: str, name: str) -> Any:
        return self.check(text, name)

    def schema(self) -> Schema:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Kind):
    """A string of at most ``limit`` characters; not blank unless ``blank``; valid Unicode.
    ``pattern`` (a regex the whole value must match) and ``refuse`` (characters it may
    not contain) narrow it further."""

    limit: int = MAX_SHORT
    blank: bool = False
    pattern: str | None = None
    refuse: str = ""
    min_length: int = 0
    what: str = ""  # what ``pattern`` stands for, in words (the refusal says it)

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise Invalid(f"'{name}' must be a string", name)
        if not self.blank and not _NOT_BLANK.search(value):
            raise Invalid(f"'{name}' must not be empty", name)
        if len(value) > self.limit:
            raise Invalid(f"'{name}' is longer than {self.limit} characters", name)
        if len(value) < self.min_length:
            raise Invalid(f"'{name}' is shorter than {self.min_length} characters", name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Invalid(f"'{name}' is not valid Unicode (lone surrogate)", name) from None
        for c in self.refuse:
            if c in value:
                raise Invalid(f"'{name}' cannot contain {c!r}", name)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            if self.what:
                raise Invalid(f"'{name}' must be {self.what}: {value!r:.80}", name)
            raise Invalid(f"'{name}' is malformed (expected {self.pattern})", name)
        return value

    def schema(self) -> Schema:
        out: Schema = {"type": "string", "maxLength": self.limit}
        if not self.blank:
            out["minLength"] = max(1, self.min_length)
        elif self.min_length:
            out["minLength"] = self.min_length
        if self.pattern is not None:
            out["pattern"] = f"^{self.pattern}$"
        elif self.refuse:
            bad = re.escape(self.refuse)
            some = f"[^{WHITESPACE}{bad}]" if not self.blank else ""
            out["pattern"] = f"^[^{bad}]*{some}[^{bad}]*$"
        elif not self.blank:
            out["pattern"] = NOT_BLANK
        return out


@dataclass(frozen=True)
class MemoryText(Text):
    """A memory's text: at most ``limit`` characters, and at most ``max_bytes`` bytes as
    the signed body spells it (UTF-8, JSON escapes), so that no text within the limit is
    then refused by the record's size (``crdt.records.MAX_BODY_BYTES``). One message for
    both limits, on every surface."""

    max_bytes: int = 12 * 1024

    @property
    def rule(self) -> str:
        """The limit in words, as ``--help`` and every refusal state it."""
        return f"at most {self.limit} characters ({self.max_bytes} bytes as stored)"

    def check(self, value: Any, name: str) -> str:
        if isinstance(value, str):
            size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")) - 2
            if len(value) > self.limit or size > self.max_bytes:
                raise Invalid(f"the text is too long ({len(value)} characters, {size} bytes "
                              f"as stored): a memory's text is {self.rule}", name)  # fmt: skip
        return super().check(value, name)


@dataclass(frozen=True)
class CutMemoryText(MemoryText):
    """A memory's text that may be given longer, up to ``most`` characters: what does not
    fit ``MemoryText``'s limits is cut off and the text ends with ``CUT``. An agent's
    retain of a whole conversation turn keeps its start rather than losing all of it
    (Singularity Memory stores any length; Hermes sends each turn as it is)."""

    most: int = 48 * 1024
    CUT = " […]"

    def fits(self, value: str) -> bool:
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")) - 2
        return len(value) <= self.limit and size <= self.max_bytes

    def check(self, value: Any, name: str) -> str:
        if isinstance(value, str) and not self.fits(value):
            if len(value) > self.most:
                raise Invalid(f"'{name}' is longer than {self.most} characters", name)
            low, high = 0, min(len(value), self.limit)  # the longest start that fits
            while low < high:
                mid = (low + high + 1) // 2
                low, high = (mid, high) if self.fits(value[:mid] + self.CUT) else (low, mid - 1)
            value = value[:low].rstrip() + self.CUT
        return super().check(value, name)

    def schema(self) -> Schema:
        return {**super().schema(), "maxLength": self.most}


@dataclass(frozen=True)
class Number(Kind):
    """A finite number (an integer if ``integer``) in [low, high]; ``positive`` excludes 0."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    positive: bool = False

    def check(self, value: Any, name: str) -> int | float:
        if self.integer and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON does not tell 3 from 3.0; JSON Schema calls both integers
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            what = "an integer" if self.integer else "a number"
            raise Invalid(f"'{name}' must be {what}", name)
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            raise Invalid(f"'{name}' must be finite (and fit a double)", name)
        if self.positive and value <= 0:
            raise Invalid(f"'{name}' must be more than 0", name)
        if self.low is not None and value < self.low:
            raise Invalid(f"'{name}' must be at least {_n(self.low)}", name)
        if self.high is not None and value > self.high:
            raise Invalid(f"'{name}' must be at most {_n(self.high)}", name)
        return value

    def parse(self, text: str, name: str) -> int | float:
        if self.integer:
            if not _DIGITS.fullmatch(text.strip()):
                raise Invalid(f"'{name}' must be an integer", name)
            return self.check(int(text), name)
        try:
            value: int | float = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise Invalid(f"'{name}' must be a number", name) from None
        return self.check(value, name)

    def schema(self) -> Schema:
        out: Schema = {"type": "integer" if self.integer else "number"}
        if self.positive:
            out["exclusiveMinimum"] = 0
        if self.low is not None:
            out["minimum"] = self.low
        if self.high is not None:
            out["maximum"] = self.high
        return out


def Seconds(high: float = MAX_SECONDS) -> Number:
    """A positive number of seconds, at most ``high``."""
    return Number(high=high, positive=True)


@dataclass(frozen=True)
class Ignored(Kind):
    """Any JSON value, accepted and dropped: a field another server's contract has and
    this one does not act on (a client generated from that contract may send it)."""

    def check(self, value: Any, name: str) -> None:
        return None

    def schema(self) -> Schema:
        return {"description": "accepted, ignored"}


@dataclass(frozen=True)
class Flag(Kind):
    """true or false (in a query string or on a command line also 1/0, yes/no)."""

    def check(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"'{name}' must be true or false", name)
        return value

    def parse(self, text: str, name: str) -> bool:
        value = text.lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise Invalid(f"'{name}' must be true or false", name)

    def schema(self) -> Schema:
        return {"type": "boolean"}


@dataclass(frozen=True)
class TextList(Kind):
    """An array of at most ``most`` strings of kind ``item``."""

    item: Text = Text()
    most: int = 32

    def check(self, value: Any, name: str) -> list[str]:
        if not isinstance(value, list | tuple):
            raise Invalid(f"'{name}' must be an array of strings", name)
        if len(value) > self.most:
            raise Invalid(f"'{name}' has more than {self.most} entries", name)
        return [self.item.check(v, name) for v in value]

    def schema(self) -> Schema:
        return {"type": "array", "items": self.item.schema(), "maxItems": self.most}


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few words."""

    options: tuple[str, ...]

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise Invalid(f"'{name}' must be one of {', '.join(self.options)}", name)
        return value

    def schema(self) -> Schema:
        return {"type": "string", "enum": list(self.options)}


@dataclass(frozen=True)
class TextMap(Kind):
    """An object of at most ``most`` entries, string keys to strings (``metadata``)."""

    key: Text = Text(limit=128)
    value: Text = Text(limit=2048, blank=True)
    most: int = 32

    def check(self, value: Any, name: str) -> dict[str, str]:
        if not isinstance(value, dict):
            raise Invalid(f"'{name}' must be an object of strings", name)
        if len(value) > self.most:
            raise Invalid(f"'{name}' has more than {self.most} entries", name)
        for k, v in value.items():  # "'metadata' must be a string" would misname the fault
            if not isinstance(v, str):
                raise Invalid(f"'{name}' must be an object of strings: the value of {k!r:.60} "
                              f"is {_json_type(v)}", name)  # fmt: skip
        return {self.key.check(k, name): self.value.check(v, name) for k, v in value.items()}

    def schema(self) -> Schema:
        return {"type": "object", "maxProperties": self.most,
                "propertyNames": self.key.schema(),
                "additionalProperties": self.value.schema()}  # fmt: skip


@dataclass(frozen=True)
class Instant(Kind):
    """A time as RFC 3339 / ISO 8601 text (``2026-05-01T12:00:00Z``), kept as given."""

    def check(self, value: Any, name: str) -> str:
        text = Text(limit=64).check(value, name)
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(f"'{name}' must be an ISO 8601 time, e.g. 2026-05-01T12:00:00Z",
                          name) from None  # fmt: skip
        return text

    def schema(self) -> Schema:
        return {"type": "string", "format": "date-time", "maxLength": 64}


@dataclass(frozen=True)
class Objects(Kind):
    """An array of 1 to ``most`` objects, each checked by ``fields`` (unknown keys and
    missing required ones are refused, named ``items[i].key``)."""

    fields: tuple[Field, ...]
    most: int = 100

    def check(self, value: Any, name: str) -> list[dict[str, Any]]:
        if not isinstance(value, list | tuple) or not value:
            raise Invalid(f"'{name}' must be a non-empty array of objects", name)
        if len(value) > self.most:
            raise Invalid(f"'{name}' has more than {self.most} entries", name)
        out = []
        known = {f.name for f in self.fields}
        for i, item in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(item, dict):
                raise Invalid(f"'{where}' must be an object", where)
            for key in sorted(item):
                if key not in known:
                    raise Invalid(f"unknown field '{where}.{str(key)[:40]}' (known: "
                                  f"{', '.join(sorted(known))})", f"{where}.{str(key)[:40]}")
            checked: dict[str, Any] = {}
            for f in self.fields:
                v = item.get(f.name)
                if v is None:
                    if f.required:
                        raise Invalid(f"'{where}.{f.name}' is required", f"{where}.{f.name}")
                    checked[f.name] = f.default
                else:
                    checked[f.name] = f.kind.check(v, f"{where}.{f.name}")
            out.append(checked)
        return out

    def schema(self) -> Schema:
        item: Schema = {"type": "object", "additionalProperties": False,
                        "properties": {f.name: f.schema() if f.required else _nullable(f.schema())
                                       for f in self.fields}}  # fmt: skip
        required = [f.name for f in self.fields if f.required]
        if required:
            item["required"] = required
        return {"type": "array", "items": item, "minItems": 1, "maxItems": self.most}


def _nullable(schema: Schema) -> Schema:
    """An optional field's schema: JSON null means not given."""
    return {**schema, "type": [schema["type"], "null"]}


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _json_type(value: Any) -> str:
    """What a JSON value is, in words, for a refusal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an object" if isinstance(value, dict) else "an array"


# The kinds the operations share.
ANY_TEXT = Text(blank=True)
TEXT = Text()
RECORD_ID = Text(limit=64, pattern="[0-9a-f]{64}")
RECORD_PREFIX = Text(limit=64, pattern="[0-9a-fA-F]{6,64}", min_length=6)
PUBLIC_ID = Text(limit=43, pattern="[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]",
                 what="a public id, 43 characters of base64url (`gossip id` prints it)")
# A peer's address, as the local API takes it: a name or IPv4 address, or an IPv6 one in
# brackets, and a port from 1 to 65535; what matches is always a ``config.check_address``
# address, so that the schema and the server agree on it.
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ADDRESS = Text(limit=300, pattern=f"(?:[A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\]):{_PORT}",
               what="a peer's HOST:PORT (a name, an IPv4 address or [an IPv6 one], port 1 "
                    "to 65535)")


@dataclass(frozen=True)
class Field:
    """One parameter: its name, kind, where it travels over HTTP (``path``, ``query``,
    ``body``), whether it must be given, its default, and a line of help."""

    name: str
    kind: Kind
    where: str = "body"
    required: bool = False
    default: Any = None
    help: str = ""

    def check(self, value: Any) -> Any:
        return self.kind.check(value, self.name)

    def parse(self, text: str) -> Any:
        return self.kind.parse(text, self.name)

    def schema(self) -> Schema:
        out = self.kind.schema()
        if self.help:
            out = {**out, "description": self.help}
        return out


@dataclass(frozen=True)
class Raw(Kind):
    """Bytes (a file), at most ``limit`` of them; over HTTP the whole request body."""

    limit: int

    def check(self, value: Any, name: str) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise Invalid(f"'{name}' must be bytes", name)
        if len(value) > self.limit:
            raise TooLarge(f"'{name}' is over {self.limit} bytes", name)
        return bytes(value)

    def schema(self) -> Schema:
        return {"type": "string", "format": "binary"}
