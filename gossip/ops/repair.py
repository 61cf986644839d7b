"""The way back from a damaged store: `gossip repair` (``crdt.repair`` does the work).

Rules kept here for every surface: repair runs only on a data dir no daemon holds (it
replaces the store under the data dir's lock); a running daemon refuses it, naming how to
stop it. It keeps ``host.key`` and the keyring, keeps every stored update that verifies,
drops the rest and says how many of each; peers send what was dropped again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from .operation import Params, operation

if TYPE_CHECKING:
    from .host import Host


def stop_first(pid: int | None) -> str:
    """How to stop the daemon that holds the data dir, as every refusal says it."""
    who = f"the daemon (pid {pid})" if pid else "a daemon"
    kill = f"`kill {pid}`" if pid else "`kill PID` (SIGTERM)"
    return (f"{who} holds the data dir; stop it first — `systemctl --user stop sm-gossip`, "
            f"`launchctl bootout gui/$(id -u)/dev.sm-gossip`, or {kill} — then run "
            "`gossip repair` again")  # fmt: skip


@operation(
    "repair", "POST", "/v1/repair",
    "offline only: rebuild a damaged store from the stored updates that still verify "
    "(host.key and the keyring kept; peers send the rest again; docs/operations.md)",
    result="Repaired", writes=True, slow=True,
    errors={409: "a daemon holds the data dir: stop it first"},
)  # fmt: skip
async def repair(host: Host, p: Params) -> dict[str, Any]:
    if host.online:
        raise Conflict(f"`gossip repair` needs the data dir to itself: "
                       f"{stop_first(host.facts().get('pid'))}")  # fmt: skip
    return await host.repair()
