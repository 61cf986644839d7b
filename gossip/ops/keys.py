"""Whose records count: the keyring (trust list/add/remove), invitations (invite, join)
and this host's own key (rotate).

Rules kept here for every surface: this host's own key never leaves (nor enters) the
keyring; one keyring name names one key, and ``self`` is this host's; a key never seen
here is trusted with a note to compare its fingerprint, and a fingerprint given with it
must match (a mistyped id is refused); a revoked key is not trusted again (a signed
revocation is final); removing a key publishes a signed revoke when this host may
(``Views.can_revoke``: it invited the key, or rotated away from it) and is local
otherwise; removing a rotated host's old key by its whole id keeps the key it rotated to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crdt import GossipError, IdentityError, records
from crdt.identity import fingerprint, normal_fingerprint, public_key_bytes

from .. import invites
from ..errors import Conflict, Invalid, NotFound
from . import queries
from .fields import ANY_TEXT, PUBLIC_ID, WHITESPACE, Field, Flag, Seconds, Text
from .operation import Params, operation

if TYPE_CHECKING:
    from crdt import Replica
    from crdt.trust import TrustSet
    from crdt.views import Views

    from .host import Host

MAX_TTL_S = 30 * 86400  # an invitation lives at most a month
TRUST_LIST = {"type": "array", "items": {"$ref": "#/components/schemas/TrustEntry"}}
KEY = PUBLIC_ID
# What ``crdt.identity.normal_fingerprint`` reads: 10 base32 characters (0, 1 and 8 read
# as O, I and B), any case, with dashes and whitespace anywhere.
FINGERPRINT = Text(limit=16, pattern=f"[{WHITESPACE}-]*(?:[A-Za-z2-7018][{WHITESPACE}-]*){{10}}",
                   what="a fingerprint, 10 letters and digits 2-7, e.g. K7QXM-2DRPA")


SELF_NAME = "self"  # this host's own row in the keyring; no other key may have it


def check_name(name: str, key: str, keyring: dict[str, str]) -> None:
    """Why ``key`` cannot have ``name`` in the keyring, if it cannot: ``self`` is this
    host's, and one name names one key (names pick authors in `recall --author`, `trust
    remove`), compared without case. ``""`` (no name) is always allowed."""
    wanted = name.strip().casefold()
    if not wanted:
        return
    if wanted == SELF_NAME:
        raise Invalid(f"{SELF_NAME!r} names this host in the keyring; choose another name",
                      "name")  # fmt: skip
    for other, taken in keyring.items():
        if other != key and taken.strip().casefold() == wanted:
            raise Conflict(f"the name {taken!r} is already given to {other[:12]}… (fingerprint "
                           f"{fingerprint(other)}); choose another, or `gossip trust remove "
                           f"{other[:12]}` first", "name")  # fmt: skip


def free_name(name: str, key: str, keyring: dict[str, str]) -> str:
    """``name``, or a variant no other key has (a name that came from the network: an
    invitation, an inviter's member list), or ``""``."""
    for candidate in (name, f"{name}-{key[:6]}"):
        try:
            check_name(candidate, key, keyring)
            return candidate
        except (Invalid, Conflict):
            continue
    return ""


def check_trustable(key: str, me: str, trust: TrustSet) -> None:
    """Why ``key`` cannot be added to the keyring, if it cannot (``trust add`` on every
    surface, and ``Node.trust`` for embedders)."""
    try:
        public_key_bytes(key)
    except GossipError as e:
        raise Invalid(f"cannot trust {key!r:.60}: {e}", "key") from None
    if key == me:
        raise Invalid("that is this host's own key; a host always trusts itself", "key")
    if (why := queries.revoked_note(key, trust)) is not None:
        raise Conflict(why, "key")


@operation("trust_list", "GET", "/v1/trust", "the keyring", result=TRUST_LIST)
async def trust_list(host: Host, p: Params) -> list[dict[str, Any]]:
    return await host.read(lambda r, v: queries.trust_entries(r.keyring(), v.trust(), r.author))


@operation(
    "trust_add", "POST", "/v1/trust", "trust a key (count its records, exchange with it)",
    Field("key", KEY, required=True, help="the author's public id (`gossip id` there)"),
    Field("name", ANY_TEXT, default="",
          help=f"a name to show instead of the id (unique here; not {SELF_NAME!r})"),
    Field("fingerprint", FINGERPRINT, help="the fingerprint `gossip id` printed there: "
          "a mistyped id is refused"),
    result="Trusted", writes=True, errors={409: "the key is revoked, or the name is taken"},
)  # fmt: skip
async def trust_add(host: Host, p: Params) -> dict[str, Any]:
    def check(r: Replica, v: Views) -> tuple[str | None, bool]:
        check_trustable(p.key, r.author, v.trust())
        keyring = r.keyring()
        check_name(p.name, p.key, keyring)
        return keyring.get(p.key), p.key in r.authors()

    mine = fingerprint(p.key) if _is_key(p.key) else ""
    if p.fingerprint is not None:
        try:
            given = normal_fingerprint(p.fingerprint)
        except ValueError as e:
            raise Invalid(f"'fingerprint': {e}", "fingerprint") from None
        if mine and given != mine:
            raise Invalid(f"this id's fingerprint is {mine}, not {given}: the id (or the "
                          "fingerprint) was mistyped; compare with `gossip id` on that host",
                          "fingerprint")  # fmt: skip
    was, stored = await host.read(check)
    seen = stored or any(row.get("key") == p.key for row in host.peers())
    await host.trust(p.key, p.name)
    note = None
    if not seen and p.fingerprint is None:
        note = (f"this key was never seen here (no record of it, no peer answered with it): "
                f"check that `gossip id` on that host shows the fingerprint {mine}")
    return {"id": p.key, "name": p.name, "updated": was is not None, "fingerprint": mine,
            "seen": seen, "note": note}  # fmt: skip


def _is_key(key: str) -> bool:
    try:
        public_key_bytes(key)
    except GossipError:
        return False
    return True


@operation(
    "trust_remove", "DELETE", "/v1/trust/{key}",
    "stop trusting a key (an id, a keyring name or a prefix)",
    Field("key", Text(), "path", required=True, help="a public id, a keyring name or a prefix"),
    Field("retroactive", Flag(), "query", default=False,
          help="the published revocation hides all its records"),
    Field("local", Flag(), "query", default=False,
          help="only remove it here, even if this host may revoke it"),
    result="Distrusted", writes=True, errors={404: "not in the keyring"},
)  # fmt: skip
async def trust_remove(host: Host, p: Params) -> dict[str, Any]:
    def plan(r: Replica, v: Views) -> tuple[list[str], str, bool, tuple[str, str] | None, bool]:
        trust = v.trust()
        named, key = queries.resolve_host(r, p.key, trust)
        if key == r.author:
            raise Invalid("that is this host's own key; a host always trusts itself", "key")
        revoke = not p.local and v.can_revoke(r.author, key)
        kept = None if revoke else queries.successor_to_keep(r.keyring(), key, trust)
        drop = [k for k in dict.fromkeys((named, key)) if k != r.author]
        return drop, key, revoke, kept, key in trust

    drop, key, revoke, kept, trusted = await host.read(plan)
    if revoke:
        rec = await host.write(
            lambda i, now: records.revoke(i, key, ts=now, retroactive=p.retroactive)
        )
        return {"id": key, "removed": True, "revoked": rec.id, "kept": None}
    if kept is not None:
        await host.trust(*kept)
    was = [await host.distrust(k) for k in drop]
    if not any(was) and not trusted:
        raise NotFound(f"{p.key:.60} is not in the keyring (see `gossip trust list`)", "key")
    return {"id": key, "removed": True, "revoked": None, "kept": kept[0] if kept else None}


@operation(
    "invite", "POST", "/v1/invitations",
    "a single-use invitation token for a new host (docs/cli.md, trust invite)",
    Field("ttl", Seconds(high=MAX_TTL_S), default=invites.DEFAULT_TTL_S,
          help="seconds it stays valid (default a day, at most 30 days)"),
    Field("name", ANY_TEXT, default="", help="the keyring name the new host will get"),
    result="Invitation", created=True, writes=True,
)  # fmt: skip
async def invite(host: Host, p: Params) -> dict[str, Any]:
    token = await host.invite(float(p.ttl), p.name)
    return {"token": token.encode(), "inviter": token.inviter,
            "addresses": list(token.addresses), "expires_at": token.expires_at}  # fmt: skip


@operation(
    "join", "POST", "/v1/invitations/redeem",
    "redeem an invitation: trust the inviter (and whom it trusts), prove the token",
    Field("token", Text(limit=invites.MAX_TOKEN_CHARS, min_length=invites.MIN_TOKEN_CHARS),
          required=True,
          help="the smg1.… line `trust invite` printed"),
    Field("members", Flag(), default=True, help="also trust the hosts the inviter trusts"),
    result="Joined", writes=True, slow=True,
)  # fmt: skip
async def join(host: Host, p: Params) -> dict[str, Any]:
    try:
        invites.decode(p.token)  # a damaged token is refused before anything happens
        return await host.join(p.token, p.members)
    except invites.InviteError as e:
        raise Invalid(str(e), "token") from None


@operation(
    "key_rotate", "POST", "/v1/key/rotate",
    "switch this host to a fresh key; the old one signs a successor record",
    result="Rotated", writes=True, errors={409: "the previous rotation's grace is not over"},
)  # fmt: skip
async def key_rotate(host: Host, p: Params) -> dict[str, Any]:
    previous = await host.read(lambda r, v: r.author)
    try:
        new = await host.rotate_key()
    except IdentityError as e:
        raise Conflict(str(e)) from None
    return {"id": new, "previous": previous}
