"""The operations layer: every user operation of sm-gossip, defined once.

``OPERATIONS`` maps a name (``remember``, ``recall``, ``trust_add``, …) to an
``Operation``: typed parameters with their limits (``fields``), where it lives over HTTP,
its answer's schema, and one handler written against the small ``Host`` interface. A
running node (``online.NodeHost``) and a data dir opened by the command itself
(``offline.ReplicaHost``) both implement it. Every surface is derived from the table:
the local API's routes (``gossip.api.local``), its OpenAPI document (``gossip.api.openapi``), the
CLI in both modes and the Python client (through ``session``).

Modules: ``fields`` (parameter kinds), ``operation`` (the table and ``run``), ``host``
(the interface), ``memories``, ``banks`` (the agents'
banks: retain, bank_recall, forget, …), ``signals`` (breakers, benchmarks), ``keys`` (trust,
invitations, rotation), ``replication`` (status, peers, sync, export, import, inspect),
``repair`` (the way back from a damaged store, offline only), ``web`` (the
dashboard's one-time login link),
``online`` / ``offline`` (the two hosts), ``session`` (calling an operation from a
synchronous program: the daemon's API if one runs, else the data dir).
"""

from __future__ import annotations

from . import banks, keys, memories, repair, replication, signals, web  # noqa: F401 - they fill OPERATIONS
from .operation import OPERATIONS, Operation, Params, run

__all__ = ["OPERATIONS", "Operation", "Params", "run"]
