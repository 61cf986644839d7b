"""What an operation is: a name, its parameters (``fields.Field``), where it lives over
HTTP, the schema of its answer, the refusals it may give, and one handler written against
``host.Host``. ``OPERATIONS`` is the table every surface is derived from: the local API's
routes, its OpenAPI document, the CLI in both modes, the Python client.

Rules live in the handlers (and the kinds of their fields), never in a surface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Invalid

if TYPE_CHECKING:
    from .fields import Field
    from .host import Host

Handler = Callable[["Host", "Params"], Awaitable[Any]]


class Params(Mapping[str, Any]):
    """An operation's checked parameters: every field present (its default when not
    given); read as ``p.name`` or ``p["name"]``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"


@dataclass(frozen=True)
class Operation:
    """One operation of the table. ``result`` names a schema of ``openapi.SCHEMAS`` (or is
    a schema); ``created`` answers 201; ``errors`` maps the statuses it may refuse with
    (beyond 400) to why; ``raw`` takes the body as bytes (an export file) and ``binary``
    answers bytes."""

    name: str
    method: str
    path: str
    summary: str
    fields: tuple[Field, ...]
    handler: Handler
    result: str | dict[str, Any] | None = None
    created: bool = False
    errors: Mapping[int, str] = field(default_factory=dict)
    raw: str | None = None  # the parameter that takes the raw body
    binary: bool = False
    writes: bool = False  # changes what this host holds (a remote call is not retried)
    slow: bool = False  # may take minutes (a catch-up, a large file): a longer time limit

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def check(self, values: Mapping[str, Any]) -> Params:
        """The checked parameters from Python or JSON values; ``None`` means not given.
        Unknown or missing parameters are ``Invalid`` naming them."""
        known = {f.name for f in self.fields}
        for name in sorted(values):
            if name not in known:
                listed = f"known: {', '.join(sorted(known))}" if known else "it takes none"
                raise Invalid(f"unknown field {str(name)[:40]!r} ({listed})", str(name)[:40])
        out: dict[str, Any] = {}
        for f in self.fields:
            value = values.get(f.name)
            if value is None:
                if f.required:
                    raise Invalid(f"'{f.name}' is required", f.name)
                out[f.name] = f.default
            else:
                out[f.name] = f.check(value)
        return Params(out)

    @property
    def path_fields(self) -> list[Field]:
        return [f for f in self.fields if f.where == "path"]

    @property
    def query_fields(self) -> list[Field]:
        return [f for f in self.fields if f.where == "query"]

    @property
    def body_fields(self) -> list[Field]:
        return [f for f in self.fields if f.where == "body"]


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, method: str, path: str, summary: str, *fields: Field,
              **options: Any) -> Callable[[Handler], Handler]:  # fmt: skip
    """Register the decorated handler as operation ``name`` in ``OPERATIONS``."""

    def register(handler: Handler) -> Handler:
        if name in OPERATIONS:
            raise ValueError(f"operation {name!r} is defined twice")
        OPERATIONS[name] = Operation(name, method, path, summary, tuple(fields), handler,
                                     **options)  # fmt: skip
        return handler

    return register


async def run(host: Host, name: str, values: Mapping[str, Any]) -> Any:
    """Check ``values`` for operation ``name`` and run its handler on ``host``."""
    op = OPERATIONS[name]
    return await op.handler(host, op.check(values))
