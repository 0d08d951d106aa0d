"""Sign-In with Ethereum sessions, decided inside the enclave.

The enclave prepares the EIP-4361 message itself (with a one-time nonce), so signing in
needs no general SIWE parser: a sign-in is accepted when the message is exactly one this
enclave issued, unexpired and unused, and the EIP-191 signature over it recovers the
address the message names.

Session token, version 1 (docs/PROTOCOL.md, "Session token"): base64url without padding of

    version (1 byte = 1) | address (20) | expires_at (8, unix seconds) | session id (16)
    | tag = HMAC-SHA256(token key, all of the above)[:16]

The token key derives from the consortium secret, so only enclaves mint or check tokens;
the host just carries them in the personal RPC URL.

Sign-out, consortium-wide (docs/PROTOCOL.md, "Session revocation"): a revoked session is
kept, until the token's expiry, as a blinded id HMAC-SHA256(revocation-id key, session
id)[:16] (in the ledger's ``revoked_sessions`` table). To reach the other nodes it travels
sealed (AES-256-GCM under a key derived from the token key, so from the consortium secret):
``seal_revocations`` / ``open_revocations``. Only enclaves make or open such a blob.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address

from gateway.errors import InvalidParams, Unauthorized

TOKEN_VERSION = 1
SESSION_SECONDS = 24 * 3600
MESSAGE_SECONDS = 600  # a prepared message must be signed within ten minutes
MAX_OUTSTANDING = 10_000
MAX_REVOCATIONS = 1_000_000  # live (unexpired) revoked sessions an enclave keeps
REVOCATIONS_PER_BLOB = 4096  # entries of one sealed revocation blob
REVOCATION_BLOB_VERSION = 1
REVOCATION_ENTRY = 16 + 8  # blinded id | expiry (unix seconds, big-endian)
MAX_REVOCATION_BLOB = 1 + 12 + REVOCATIONS_PER_BLOB * REVOCATION_ENTRY + 16
_TOKEN_LENGTH = 1 + 20 + 8 + 16 + 16
_REVOCATION_ID_INFO = b"coco-gateway/session-revocation-id/v1"
_REVOCATION_SEAL_INFO = b"coco-gateway/session-revocation-seal/v1"
_REVOCATION_AD = b"coco-gateway/session-revocation/v1"


@dataclass(frozen=True)
class Session:
    address: bytes
    expires_at: int
    session_id: bytes


class Revocations(Protocol):
    """Where revoked sessions are kept until their expiry (the ledger, durably; or memory)."""

    def is_revoked(self, revocation_id: bytes, now: int) -> bool: ...

    def add_revocations(
        self, rows: list[tuple[bytes, int]], now: int, limit: int
    ) -> tuple[list[tuple[bytes, int]], bool]:
        """Keep the rows not kept yet (expired ones are pruned first); the rows added, and
        whether some were left out because ``limit`` live rows are kept."""
        ...

    def live_revocations(self, now: int) -> list[tuple[bytes, int]]: ...


class MemoryRevocations:
    """Revocations in memory only (tests, and tools that need no durability)."""

    def __init__(self) -> None:
        self._rows: dict[bytes, int] = {}

    def is_revoked(self, revocation_id: bytes, now: int) -> bool:
        return self._rows.get(revocation_id, 0) > now

    def add_revocations(
        self, rows: list[tuple[bytes, int]], now: int, limit: int
    ) -> tuple[list[tuple[bytes, int]], bool]:
        self._rows = {k: v for k, v in self._rows.items() if v > now}
        added: list[tuple[bytes, int]] = []
        for rid, expiry in rows:
            if rid in self._rows:
                continue
            if len(self._rows) >= limit:
                return added, True
            self._rows[rid] = expiry
            added.append((rid, expiry))
        return added, False

    def live_revocations(self, now: int) -> list[tuple[bytes, int]]:
        return sorted((k, v) for k, v in self._rows.items() if v > now)


class SessionBook:
    def __init__(
        self,
        token_key: bytes,
        chain_id: int,
        revocations: Revocations | None = None,
        chain_tag: bytes = b"",
    ) -> None:
        self._key = token_key
        self._chain_id = chain_id
        self._issued: dict[str, tuple[str, bytes, int]] = {}  # nonce -> (message, addr, until)
        self._revocations: Revocations = revocations or MemoryRevocations()
        self._id_key = hmac.new(token_key, _REVOCATION_ID_INFO, hashlib.sha256).digest()
        self._seal = AESGCM(hmac.new(token_key, _REVOCATION_SEAL_INFO, hashlib.sha256).digest())
        # what a sealed revocation is bound to: this chain (its id and genesis hash)
        self._ad = _REVOCATION_AD + chain_id.to_bytes(32, "big") + chain_tag
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sign-in
    def prepare(self, address: bytes, origin: str, now: int | None = None) -> str:
        now = int(time.time()) if now is None else now
        try:
            parsed = urlparse(origin)
        except ValueError:  # "http://[": an unterminated IPv6 literal
            parsed = urlparse("")
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
            if self._revocations.is_revoked(self.revocation_id(session.session_id), now):
                raise Unauthorized("this session was signed out: sign in again")
        return session

    def revocation_id(self, session_id: bytes) -> bytes:
        """How a revoked session is kept and sent: blinded, so no copy names the session."""
        return hmac.new(self._id_key, session_id, hashlib.sha256).digest()[:16]

    def revoke(self, token: str, now: int | None = None) -> bytes:
        """Revoke a live session (kept until the token's expiry); returns the revocation
        sealed for the other nodes of the consortium (``open_revocations``)."""
        now = int(time.time()) if now is None else now
        session = self.verify(token, now)
        row = (self.revocation_id(session.session_id), session.expires_at)
        with self._lock:
            _added, full = self._revocations.add_revocations([row], now, MAX_REVOCATIONS)
        if full:
            raise Unauthorized(
                f"this node keeps {MAX_REVOCATIONS} signed-out sessions until they expire and "
                "holds that many now: try again later (the session ends by itself at its "
                "expiry)",
                reason="too-many-sign-outs",
            )
        return self.seal_revocations([row])[0]

    # ------------------------------------------------------------------ across nodes
    def export_revocations(self, now: int | None = None) -> list[bytes]:
        """Every live revocation, sealed in blobs of at most REVOCATIONS_PER_BLOB."""
        now = int(time.time()) if now is None else now
        with self._lock:
            rows = self._revocations.live_revocations(now)
        return self.seal_revocations(rows)

    def import_revocations(
        self, blobs: Iterable[bytes], now: int | None = None
    ) -> tuple[list[tuple[bytes, int]], int, bool]:
        """Keep the revocations another node sealed: the rows new here, how many blobs did
        not open (not sealed by this consortium's enclaves, or altered), and whether the
        store was full."""
        now = int(time.time()) if now is None else now
        rows: list[tuple[bytes, int]] = []
        refused = 0
        for blob in blobs:
            opened = self.open_revocation(blob)
            if opened is None:
                refused += 1
                continue
            rows.extend(r for r in opened if r[1] > now)
        if not rows:
            return [], refused, False
        with self._lock:
            added, full = self._revocations.add_revocations(rows, now, MAX_REVOCATIONS)
        return added, refused, full

    def seal_revocations(self, rows: list[tuple[bytes, int]]) -> list[bytes]:
        out = []
        for start in range(0, len(rows), REVOCATIONS_PER_BLOB):
            plain = b"".join(
                rid + expiry.to_bytes(8, "big")
                for rid, expiry in rows[start : start + REVOCATIONS_PER_BLOB]
            )
            nonce = secrets.token_bytes(12)
            sealed = self._seal.encrypt(nonce, plain, self._ad)
            out.append(bytes([REVOCATION_BLOB_VERSION]) + nonce + sealed)
        return out

    def open_revocation(self, blob: bytes) -> list[tuple[bytes, int]] | None:
        """The rows of one sealed blob; None if it does not open."""
        if (
            not isinstance(blob, bytes)
            or not 1 + 12 + 16 <= len(blob) <= MAX_REVOCATION_BLOB
            or blob[0] != REVOCATION_BLOB_VERSION
        ):
            return None
        try:
            plain = self._seal.decrypt(blob[1:13], blob[13:], self._ad)
        except InvalidTag:
            return None
        if len(plain) % REVOCATION_ENTRY:
            return None
        return [
            (plain[i : i + 16], int.from_bytes(plain[i + 16 : i + REVOCATION_ENTRY], "big"))
            for i in range(0, len(plain), REVOCATION_ENTRY)
        ]

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
