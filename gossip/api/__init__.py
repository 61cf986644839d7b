"""The daemon's HTTP surfaces, each derived from the operations table (``gossip.ops``):

- ``local``: the local API on ``api.sock`` (and loopback TCP with a token): one route
  per operation, the change feed as server-sent events, ``/metrics``; ``openapi``
  describes it (docs/openapi.json).
- ``agents``: the agents' front door on 127.0.0.1:8888: Singularity Memory's routes,
  each a row mapping its names onto an operation; ``agents_openapi`` describes it
  (docs/agents-openapi.json); ``mcp`` serves the same operations as MCP tools, over
  streamable HTTP at ``/mcp/`` and over stdio (`gossip mcp`).

No rule or limit lives here: a route only reads its request, runs the operation's one
handler and shapes its answer. Nothing here reads a private key.
"""

from __future__ import annotations

from .agents import AgentsApi, ListenerBusy, env_lines
from .guard import API_SOCKET, MAX_BODY, TOKEN_FILE, read_token
from .local import LocalApi

__all__ = ["API_SOCKET", "MAX_BODY", "TOKEN_FILE", "AgentsApi", "ListenerBusy", "LocalApi",
           "env_lines", "read_token"]  # fmt: skip
