"""The parameters an operation takes: each field's kind checks a value (from JSON, from
Python or from the text of a query string or a command line), says its JSON Schema, and
raises ``Invalid`` naming the field. A limit lives here once; the local API, its OpenAPI
document, the CLI's argument types and the Python client all read it from here.

Nothing here does I/O or knows about any surface.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import Invalid, TooLarge

Schema = dict[str, Any]

MAX_SECONDS = 100 * 365 * 86400  # timestamps stay well inside 64-bit integers (SQLite, JS)
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

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise Invalid(f"'{name}' must be a string", name)
        if not self.blank and not value.strip():
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
            some = f"[^\\s{bad}]" if not self.blank else ""
            out["pattern"] = f"^[^{bad}]*{some}[^{bad}]*$"
        elif not self.blank:
            out["pattern"] = r"\S"
        return out


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


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# The kinds the operations share.
ANY_TEXT = Text(blank=True)
TEXT = Text()
RECORD_ID = Text(limit=64, pattern="[0-9a-f]{64}")
RECORD_PREFIX = Text(limit=64, pattern="[0-9a-fA-F]{6,64}", min_length=6)
PUBLIC_ID = Text(limit=43, pattern="[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")


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
