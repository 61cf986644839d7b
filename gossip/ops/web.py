"""The dashboard's login: a one-time link for `gossip web` (docs/ui.md).

The running daemon's agents' listener serves the dashboard; the link carries a code
valid once, for a minute (``gossip.api.logins``), never the API token. A data dir with no
daemon, or a daemon with its agents' listener off, has no dashboard to log in to.
"""

from __future__ import annotations

from typing import Any

from .host import Host
from .operation import Params, operation

NO_DASHBOARD = ("no dashboard here: `gossip serve` serves it on its agents' listener, and no "
                "daemon runs on this data dir, or its listener is off or could not start "
                "(`gossip status` says which; [agents] listen, --agents-listen)")


@operation(
    "web_login", "POST", "/v1/web/login",
    "a one-time login link to the dashboard (valid once, for a minute)",
    result="WebLogin", created=True,
    errors={409: "no daemon runs here, or its agents' listener is off"},
)  # fmt: skip
async def web_login(host: Host, p: Params) -> dict[str, Any]:
    return host.web_login()
