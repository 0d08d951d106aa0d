"""Sign-In with Ethereum sessions, decided inside the enclave.

The enclave prepares the EIP-4361 message itself (with a one-time nonce), so signing in
needs no general SIWE parser: a sign-in is accepted when the message is exactly one this
enclave issued, unexpired and unused, and the EIP-191 signature over it recovers the
address the message names.

Session token, version 1 (docs/PROTOCOL.md, "Session token"): base64url without padding of

    version (1 byte = 1) | address (20) | expires_at (8, unix seconds) | session id (16)
    | tag = HMAC-SHA256(token key, all of the above)[:16]

The token key derives from the consortium secret, so only enclaves mint or check tokens;
the host just carries them in the personal RPC URL. Revoked session ids are kept (sealed
in the ledger's meta) until their expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from gateway.errors import InvalidParams, Unauthorized

TOKEN_VERSION = 1
SESSION_SECONDS = 24 * 3600
MESSAGE_SECONDS = 600  # a prepared message must be signed within ten minutes
MAX_OUTSTANDING = 10_000
_TOKEN_LENGTH = 1 + 20 + 8 + 16 + 16


@dataclass(frozen=True)
class Session:
    address: bytes
    expires_at: int
    session_id: bytes


class SessionBook:
    def __init__(
        self,
        token_key: bytes,
        chain_id: int,
        revoked: dict[str, int] | None = None,
    ) -> None:
        self._key = token_key
        self._chain_id = chain_id
        self._issued: dict[str, tuple[str, bytes, int]] = {}  # nonce -> (message, addr, until)
        self._revoked: dict[str, int] = dict(revoked or {})  # session id hex -> expiry
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sign-in
    def prepare(self, address: bytes, origin: str, now: int | None = None) -> str:
        now = int(time.time()) if now is None else now
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidParams(f"invalid origin {origin!r}: expected e.g. https://example.org")
        nonce = secrets.token_hex(12)
        issued = _iso(now)
        expires = _iso(now + SESSION_SECONDS)
        message = (
            f"{parsed.netloc} wants you to sign in with your Ethereum account:\n"
            f"{to_checksum_address(address)}\n"
            "\n"
            "Sign in to Coco Gateway: reads through your personal RPC URL are answered for "
            "this account only.\n"
            "\n"
            f"URI: {parsed.scheme}://{parsed.netloc}\n"
            "Version: 1\n"
            f"Chain ID: {self._chain_id}\n"
            f"Nonce: {nonce}\n"
            f"Issued At: {issued}\n"
            f"Expiration Time: {expires}"
        )
        with self._lock:
            self._forget_old(now)
            if len(self._issued) >= MAX_OUTSTANDING:
                raise Unauthorized("too many sign-ins in progress; try again in a few minutes")
            self._issued[nonce] = (message, address, now + MESSAGE_SECONDS)
        return message

    def sign_in(
        self, message: str, signature: bytes, now: int | None = None
    ) -> tuple[str, Session]:
        now = int(time.time()) if now is None else now
        nonce = _field(message, "Nonce: ")
        with self._lock:
            self._forget_old(now)
            issued = self._issued.pop(nonce or "", None)
        if issued is None or issued[0] != message:
            raise Unauthorized(
                "this sign-in message was not issued by this node, was already used, or "
                "expired; ask for a new one with coco_siweMessage"
            )
        _, address, _until = issued
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signature)
        except Exception:
            raise Unauthorized("the sign-in signature is malformed") from None
        if bytes.fromhex(signer[2:]) != address:
            raise Unauthorized(
                f"the sign-in message was signed by {signer}, not by {to_checksum_address(address)}"
            )
        session = Session(address, now + SESSION_SECONDS, secrets.token_bytes(16))
        return self._mint(session), session

    # ------------------------------------------------------------------ tokens
    def _mint(self, session: Session) -> str:
        body = (
            bytes([TOKEN_VERSION])
            + session.address
            + session.expires_at.to_bytes(8, "big")
            + session.session_id
        )
        tag = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return _encode(body + tag)

    def verify(self, token: str, now: int | None = None) -> Session:
        """The session a token stands for; Unauthorized if it is not a live one.

        A token is accepted only in the one form ``_mint`` writes (base64url, no padding, no
        other characters, zero trailing bits): one session, one token string, so whatever is
        keyed by the token (a filter's owner) cannot be reached through a variant of it.
        """
        now = int(time.time()) if now is None else now
        raw = _decode_canonical(token)
        if len(raw) != _TOKEN_LENGTH or raw[0] != TOKEN_VERSION:
            raise Unauthorized("invalid session token: sign in again to get a personal RPC URL")
        body, tag = raw[:-16], raw[-16:]
        if not hmac.compare_digest(hmac.new(self._key, body, hashlib.sha256).digest()[:16], tag):
            raise Unauthorized("invalid session token: sign in again to get a personal RPC URL")
        session = Session(body[1:21], int.from_bytes(body[21:29], "big"), body[29:45])
        if session.expires_at <= now:
            raise Unauthorized("your session has expired: sign in again")
        with self._lock:
            if session.session_id.hex() in self._revoked:
                raise Unauthorized("this session was signed out: sign in again")
        return session

    def revoke(self, token: str, now: int | None = None) -> str:
        """Revoke a live session; returns the revocation list to persist (JSON)."""
        session = self.verify(token, now)
        now = int(time.time()) if now is None else now
        with self._lock:
            self._revoked[session.session_id.hex()] = session.expires_at
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}
            return json.dumps(self._revoked, sort_keys=True)

    def _forget_old(self, now: int) -> None:
        for nonce in [n for n, (_, _, until) in self._issued.items() if until <= now]:
            del self._issued[nonce]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _decode_canonical(token: str) -> bytes:
    """The bytes of a canonical base64url token; b"" for anything else (including padding,
    characters outside the alphabet, and a last character with non-zero trailing bits)."""
    if not isinstance(token, str) or not _TOKEN_CHARS.fullmatch(token):
        return b""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return b""
    return raw if _encode(raw) == token else b""


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _field(message: str, prefix: str) -> str | None:
    for line in message.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None
