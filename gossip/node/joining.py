"""Invitations: issuing a single-use token (``trust invite``), answering a newcomer that
redeems one (``/v1/join``), and redeeming another host's token (``trust join``).

Owns the one-redemption-at-a-time lock over ``invites.json``. Trusts keys only through
the node's ``trust`` (the operations' rule), writes only the vouch record, through the
node's write path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from crdt import GossipError, records

from .. import invites
from ..protocol import RemoteProtocolError
from ..transport import JOIN_PATH, PeerError, PeerMisbehaved, PeerRefused
from .worker import READ

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("gossip.node")


class Joining:
    """Invitations of one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._lock = asyncio.Lock()  # one redemption at a time (invites.json)

    async def invite(self, ttl: float, name: str) -> invites.Token:
        """A single-use token naming our key and the addresses we announce."""
        node = self.node
        return await asyncio.to_thread(
            invites.Invitations(node.home).issue, node.id, node.membership.addresses(),
            now=node.now_ms(), ttl_s=ttl, name=name,
        )  # fmt: skip

    async def redeem(self, body: bytes, joiner: str) -> bytes:
        """A newcomer proves an invitation's secret: trust it, vouch for it, and tell it
        whom we trust (it trusts them too, unless it asked not to)."""
        from ..ops.keys import free_name

        node = self.node
        async with self._lock:
            try:
                if joiner in node.replica.removed() or joiner in node.trust_set().revoked:
                    # a removed or revoked key never re-admits itself with an old token
                    raise invites.InviteError("this key was removed here; ask for a new key")
                entry = await asyncio.to_thread(
                    invites.Invitations(node.home).redeem, node.id, joiner, body,
                    now=node.now_ms(),
                )  # fmt: skip
            except invites.InviteError as e:
                log.info("refused an invitation redemption by %s…: %s", joiner[:12], e)
                raise RemoteProtocolError(str(e)) from None
        name = str(entry["name"])
        if not entry["replay"]:  # a replay (the answer was lost) trusts nothing again
            name = free_name(name, joiner, node.keyring())
            node.trust(joiner, name)
            accept = str(entry["accept"])
            await node.write_record(
                lambda i, now: records.vouch(i, joiner, ts=now, name=name, accept=accept)
            )
            node.keyring_changed(await node.call(node.membership.host_records, priority=READ))
        # Only the hosts in our own keyring (or the keys they rotated to), never a key we
        # trust only through someone's vouch: the joiner's keyring is its own choice.
        trust, keyring = node.trust_set(), node.keyring()
        chosen = {trust.current(k) for k in keyring} | set(keyring)
        members = {k: trust.names.get(k, "") for k in sorted(chosen)
                   if k in trust.keys and k != joiner}  # fmt: skip
        members[node.id] = node.name
        log.info("%s %s… (%s) by invitation", "answered again" if entry["replay"] else
                 "admitted", joiner[:12], name or "no name")  # fmt: skip
        return records.canonical({"inviter": node.id, "members": members})

    async def join(self, token: str, *, name: str = "", members: bool = True) -> dict[str, Any]:
        """Redeem another host's invitation: see ``Node.join``."""
        from ..ops.keys import free_name

        node = self.node
        tok = invites.decode(token)
        if tok.inviter == node.id:
            raise invites.InviteError("this is this host's own invitation")
        if tok.expires_at <= node.now_ms():
            raise invites.InviteError("this invitation has expired; ask for a new one")
        keyring = node.keyring()
        had = tok.inviter in keyring
        node.trust(tok.inviter, keyring.get(tok.inviter)
                   or free_name(name or "inviter", tok.inviter, keyring))
        body = invites.join_body(tok, node.identity, node.name)
        answer: bytes | None = None
        error = "no address in the token"
        for address in tok.addresses:
            try:
                answer, _ = await node.transport.request(
                    address, JOIN_PATH, body, expected_key=tok.inviter
                )
                break
            except PeerRefused as e:
                if e.status in (400, 403):
                    error = str(e).removeprefix("peer answered 400: ")
                    break
                error = str(e)
            except PeerMisbehaved as e:  # e.g. another TLS key at that address
                error = (f"{e} (if the inviter rotated its key after issuing this token, "
                         "ask it for a new invitation)")  # fmt: skip
            except PeerError as e:
                error = str(e)
        if answer is None:
            if not had:  # as if we never tried (not a removal: a later join may work)
                node.keyring_changed(
                    node.change_now(lambda: node.replica.distrust(tok.inviter, block=False))
                )
            raise invites.InviteError(f"the invitation was not accepted: {error}")
        added = []
        try:
            offered = json.loads(answer).get("members", {})
        except (ValueError, AttributeError, RecursionError):
            offered = {}
        offered = offered if isinstance(offered, dict) else {}
        inviter_name = offered.get(tok.inviter)
        if not had and not name and _plain_name(inviter_name):
            # the name it announces, for humans
            node.trust(tok.inviter, free_name(inviter_name, tok.inviter, node.keyring()))
        if members:
            keyring = node.keyring()
            for key, who in sorted(offered.items()):
                if key == node.id or key in keyring or key in node.replica.removed():
                    continue
                label = free_name(who, key, node.keyring()) if _plain_name(who) else ""
                try:
                    node.trust(key, label)
                except GossipError:
                    continue  # not a public id: the inviter's answer is not our problem
                added.append(key)
        node.table.add(list(tok.addresses), "exchange", key=tok.inviter, now=node.now_ms())
        node.keyring_changed(await node.call(node.membership.host_records, priority=READ))
        return {"inviter": tok.inviter, "trusted": [tok.inviter, *added]}


def _plain_name(value: object) -> bool:
    """A name another host sent that we may show: a short printable string."""
    return isinstance(value, str) and bool(value) and value.isprintable() and len(value) <= 64
