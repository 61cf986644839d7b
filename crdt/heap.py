"""The C heap: giving its free pages back to the system after a burst of large,
short-lived allocations (glibc's ``malloc_trim``; nothing on other C libraries).

glibc keeps freed memory in its arenas for reuse; after a burst (a snapshot's bytes, the
document built from them, a model's files) the process's RSS keeps the peak until the
same sizes are asked for again, which a daemon at rest never does. Owns no state but the
function's handle; never called on a hot path (a trim walks the whole heap).
"""

from __future__ import annotations

from typing import Any


def trim_heap() -> None:
    """Give the C heap's free pages back to the system, where the C library can."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None
