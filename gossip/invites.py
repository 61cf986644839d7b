"""Invitation tokens: admit a new host in two commands (`gossip trust invite` on a
member, `gossip trust join` on the newcomer, the token on stdin) instead of N² `trust add`s.

A token is one line, ``smg1.<base64url of canonical JSON>``, carrying the inviter's key
(``k``), the addresses of its peer server (``a``), an invitation id (``i``), a random
one-time secret (``s``, 32 bytes) and an expiry (``e``, ms since the epoch). The joiner
trusts the key in the token (whoever gave it the token vouches for it, as for a
`trust add`), and proves the secret to the inviter on the inviter's peer port
(``JOIN_PATH``): a request signed by the joiner's own key, whose body holds
``HMAC-SHA256(secret, "sm-gossip-join-v1\\n<inviter>\\n<joiner>\\n<id>")``, so the proof
is bound to both keys and useless to anyone who sees it. The inviter checks it against
``invites.json`` in its data dir (mode 0600, like the host key), marks the invitation
used *before* it trusts anyone (single use, also across a crash), and publishes a
``vouch`` for the joiner.

This module owns the token format, the proof and the invitation file; it never logs a
secret, and an error message never contains one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdt import GossipError
from crdt.files import create_whole, fsync_dir
from crdt.identity import Identity, b64url, public_key_bytes, unb64url
from crdt.records import KIND_VOUCH, acceptance, accepts, canonical

from .errors import InviteError

PREFIX = "smg1."
INVITES_FILE = "invites.json"
DEFAULT_TTL_S = 24 * 3600.0
MAX_TOKEN_CHARS = 4096
_PROOF_TAG = "sm-gossip-join-v1"
_LOCKS: dict[str, threading.Lock] = {}  # invites.json path -> its lock
_LOCKS_LOCK = threading.Lock()
# The joiner that used an invitation may present it again for this long (its answer was
# lost): it gets the answer again, and nothing is trusted or vouched for again.
REPLAY_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Token:
    inviter: str
    addresses: tuple[str, ...]
    id: str
    secret: str
    expires_at: int

    def encode(self) -> str:
        body = canonical({"k": self.inviter, "a": list(self.addresses), "i": self.id,
                          "s": self.secret, "e": self.expires_at})  # fmt: skip
        return PREFIX + b64url(body)

    def __repr__(self) -> str:  # never show the secret
        return f"Token(inviter={self.inviter[:12]}…, id={self.id}, expires_at={self.expires_at})"


# The shortest token there can be (no address, a 1-byte id, expiry 0): the local API's
# schema says so (``minLength``), and anything shorter is refused before decoding.
MIN_TOKEN_CHARS = len(Token("A" * 43, (), b64url(b"\0"), b64url(bytes(32)), 0).encode())


def decode(text: str) -> Token:
    """Parse a token; InviteError (without echoing it) if it is not one."""
    text = text.strip() if isinstance(text, str) else ""
    if not text.startswith(PREFIX) or len(text) > MAX_TOKEN_CHARS:
        raise InviteError("not an invitation token (they start with smg1.)")
    try:
        fields = json.loads(unb64url(text[len(PREFIX) :]))
    except (ValueError, UnicodeError):
        raise InviteError("the invitation token is damaged (copy it whole, on one line)") from None
    if not isinstance(fields, dict):
        raise InviteError("the invitation token is damaged")
    k, a, i, s, e = (fields.get(x) for x in ("k", "a", "i", "s", "e"))
    try:
        public_key_bytes(k)  # type: ignore[arg-type]
        if len(unb64url(s)) != 32 or not 0 < len(unb64url(i)) <= 16:  # type: ignore[arg-type]
            raise ValueError
    except (GossipError, ValueError, TypeError):
        raise InviteError("the invitation token is damaged (bad key, id or secret)") from None
    if not isinstance(a, list) or not all(isinstance(x, str) and x for x in a) or len(a) > 16:
        raise InviteError("the invitation token is damaged (bad addresses)")
    if not isinstance(e, int) or isinstance(e, bool):
        raise InviteError("the invitation token is damaged (bad expiry)")
    return Token(k, tuple(a), i, s, e)  # type: ignore[arg-type]


def proof(token: Token, joiner: str) -> str:
    """What the joiner sends: the secret's MAC over both keys and the invitation id."""
    msg = f"{_PROOF_TAG}\n{token.inviter}\n{joiner}\n{token.id}".encode()
    return b64url(hmac.new(unb64url(token.secret), msg, hashlib.sha256).digest())


def join_body(token: Token, joiner: Identity, name: str) -> bytes:
    """The join request: the proof, and the joiner's acceptance of the inviter (which
    the inviter's vouch carries: it makes the inviter the one key, besides the joiner
    and its successors, whose revoke of it peers honour; docs/protocol.md)."""
    return canonical({"id": token.id, "proof": proof(token, joiner.public_id), "name": name,
                      "accept": acceptance(joiner, KIND_VOUCH, token.inviter)})  # fmt: skip


class Invitations:
    """The invitations this host issued: ``home/invites.json`` (0600), rewritten whole
    (temporary file, fsync, rename) at each change. Used ones stay (with who used them)
    until they expire, so a reuse gets a clear "already used"."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / INVITES_FILE
        # Every read-modify-write of one file, by any Invitations object of this process,
        # holds its lock (another process cannot write it: the data dir's lock).
        with _LOCKS_LOCK:
            self._lock = _LOCKS.setdefault(str(self.path.resolve()), threading.Lock())

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InviteError(f"{self.path} is not readable: {type(e).__name__}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        """Under ``self._lock``: replace the file whole (a staged copy of a unique name)."""
        for stale in self.path.parent.glob(f"{INVITES_FILE}.next*"):  # left by a crash
            stale.unlink(missing_ok=True)
        staged = self.path.with_name(f"{INVITES_FILE}.next-{secrets.token_hex(6)}")
        text = json.dumps(data, sort_keys=True)
        create_whole(staged, lambda tmp: tmp.write_text(text, "utf-8"))
        os.replace(staged, self.path)
        fsync_dir(self.path.parent)

    def issue(self, inviter: str, addresses: list[str], *, now: int, ttl_s: float,
              name: str = "") -> Token:  # fmt: skip
        """A new single-use invitation, valid ``ttl_s`` seconds."""
        token = Token(inviter, tuple(addresses), b64url(secrets.token_bytes(9)),
                      b64url(secrets.token_bytes(32)), now + round(ttl_s * 1000))  # fmt: skip
        with self._lock:
            data = {k: v for k, v in self._load().items()
                    if isinstance(v, dict) and v.get("expires_at", 0) > now}  # fmt: skip
            data[token.id] = {"secret": token.secret, "expires_at": token.expires_at,
                              "name": name, "used_by": None}  # fmt: skip
            self._save(data)
        return token

    def redeem(self, inviter: str, joiner: str, body: bytes, *, now: int) -> dict[str, Any]:
        """Check a joiner's proof and use the invitation up; returns its entry's name
        and whether this is the joiner's replay. InviteError says why not (never with
        the secret)."""
        with self._lock:
            return self._redeem(inviter, joiner, body, now=now)

    def _redeem(self, inviter: str, joiner: str, body: bytes, *, now: int) -> dict[str, Any]:
        try:
            req = json.loads(body)
            iid, given = req["id"], req["proof"]
            if not isinstance(iid, str) or not isinstance(given, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):  # nested past the stack
            raise InviteError("a join request is {id, proof, name, accept}") from None
        data = self._load()
        entry = data.get(iid)
        if not isinstance(entry, dict):
            raise InviteError("no such invitation here (or it expired long ago)")
        expires_at = entry.get("expires_at")
        if not isinstance(expires_at, int) or not isinstance(entry.get("secret"), str):
            raise InviteError("this invitation is damaged here; ask for a new one")
        token = Token(inviter, (), iid, entry["secret"], expires_at)
        if not hmac.compare_digest(proof(token, joiner).encode(), given.encode()):
            raise InviteError("the invitation proof does not match (wrong token?)")
        accept = req.get("accept")
        if not isinstance(accept, str) or not accepts(KIND_VOUCH, inviter, joiner, accept):
            raise InviteError("the join request does not accept this host as its inviter")
        used_by = entry.get("used_by")
        if token.expires_at <= now:
            raise InviteError("this invitation has expired; ask for a new one")
        replay = False
        if used_by is not None:
            used_at = entry.get("used_at")
            fresh = isinstance(used_at, int) and 0 <= now - used_at <= REPLAY_MS
            if used_by != joiner or not fresh:
                raise InviteError("this invitation was already used; ask for a new one")
            replay = True  # the same joiner again, soon (its answer was lost)
        else:
            entry["used_by"], entry["used_at"] = joiner, now
            self._save(data)  # used up before anyone is trusted: single use, crash or not
        name = req.get("name")
        if not isinstance(name, str) or not name.isprintable() or len(name) > 64:
            name = ""
        return {"name": entry.get("name") or name, "replay": replay, "accept": accept}
