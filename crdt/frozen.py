"""Frozen dataclasses built without their ``__init__``, on the gate's hot path.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: about
a microsecond for ten fields, which the gate paid several times for every update it
took in (its header, the update, the row it stores: docs/benchmarks.md, "Ingest").
``built`` fills the instance's ``__dict__`` at once instead. Only for classes without
``__slots__`` and for values already checked: it runs no ``__post_init__`` and no
defaults, so every field must be given.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def built(cls: type[T], **values: Any) -> T:
    """``cls(**values)``, without its per-field ``object.__setattr__`` (``values`` may
    also seed a ``cached_property``)."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj

