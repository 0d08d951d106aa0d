"""Sealed storage: the cipher the enclave hands the ledger (``Ledger.set_sealer``).

AES-256-GCM. The ledger chooses the associated data (the table and the value's key, so a
sealed value opens only where it was written); this module chooses the keys and nonces.

Nonces are random (96 bits, fresh for every write). A random GCM nonce must not be used
for more than about 2**32 messages under one key (NIST SP 800-38D, 8.3), and a busy chain
writes that many trie nodes in weeks, so the storage key is not used directly: each sealer
draws a random 64-bit key id and seals under

    session key = HMAC-SHA256(storage key, "coco-gateway/storage/aes-256-gcm/v1" || key id)

moving to a new key id after ``ROTATE_AFTER`` writes. Reading derives (and caches) the
session key of whatever key id a value was written under.

Sealed value layout (37 bytes over the plaintext):

    version 0x01 (1) || key id (8) || nonce (12) || ciphertext || GCM tag (16)

with the version byte and key id also bound into the associated data.

Key blinding. The ledger stores each kv row under ``blind(key)`` instead of py-evm's key
(a keccak hash of a trie node, code or header, or a lookup key such as
``transaction-hash-to-block:<hash>``), so that a copy of the ledger cannot confirm a guess
by hashing the trie node the guess implies and looking for that key:

    blinding key = HMAC-SHA256(storage key, "coco-gateway/storage/kv-key-blinding/v1")
    blind(key)   = HMAC-SHA256(blinding key, "coco-ledger/kv-key" || 0x00 || key)

Deterministic (the same key maps to the same row across restarts, which is what a lookup
needs), keyed (without the storage key no one can compute it), and under a key of its own:
its derivation label differs from the encryption keys' label within their common length, so
the blinding key is independent of every session key.
"""

from __future__ import annotations

import hmac
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.ledger import SealedValueError

VERSION = b"\x01"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = 1 + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES
ROTATE_AFTER = 1 << 30  # writes per session key: far below the 2**32 random-nonce bound
_KDF_LABEL = b"coco-gateway/storage/aes-256-gcm/v1"
_BLINDING_LABEL = b"coco-gateway/storage/kv-key-blinding/v1"
_BLIND_PREFIX = b"coco-ledger/kv-key\x00"
_HEADER = 1 + KEY_ID_BYTES
_MAX_CACHED_KEYS = 4096


class StorageSealer:
    """AES-256-GCM under session keys derived from the enclave's storage key."""

    def __init__(self, storage_key: bytes, *, rotate_after: int = ROTATE_AFTER) -> None:
        if len(storage_key) != 32:
            raise ValueError("the storage key must be 32 bytes")
        self._key = bytes(storage_key)
        self._rotate_after = rotate_after
        self._lock = threading.Lock()
        self._readers: dict[bytes, AESGCM] = {}
        self._blinding_key = hmac.digest(self._key, _BLINDING_LABEL, "sha256")
        self._new_session()

    def _session(self, key_id: bytes) -> AESGCM:
        aead = self._readers.get(key_id)
        if aead is None:
            if len(self._readers) >= _MAX_CACHED_KEYS:
                self._readers.clear()
            aead = AESGCM(hmac.digest(self._key, _KDF_LABEL + key_id, "sha256"))
            self._readers[key_id] = aead
        return aead

    def _new_session(self) -> None:
        key_id = os.urandom(KEY_ID_BYTES)
        self._header = VERSION + key_id
        self._writer = self._session(key_id)
        self._writes = 0

    def blind(self, key: bytes) -> bytes:
        """The 32-byte key the ledger stores a kv row under, for py-evm's ``key``."""
        return hmac.digest(self._blinding_key, _BLIND_PREFIX + key, "sha256")

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        with self._lock:
            if self._writes >= self._rotate_after:
                self._new_session()
            self._writes += 1
            header, writer = self._header, self._writer
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + writer.encrypt(nonce, plaintext, header + associated_data)

    def open(self, blob: bytes, associated_data: bytes) -> bytes:
        if len(blob) < OVERHEAD:
            raise SealedValueError(
                f"a sealed ledger value is truncated ({len(blob)} bytes, at least "
                f"{OVERHEAD} expected): the ledger file was altered or is not sealed"
            )
        if blob[:1] != VERSION:
            raise SealedValueError(
                f"a sealed ledger value has an unknown format (0x{blob[:1].hex()}): the "
                "ledger file was altered or is not sealed"
            )
        header = blob[:_HEADER]
        with self._lock:
            aead = self._session(header[1:])
        try:
            return aead.decrypt(
                blob[_HEADER : _HEADER + NONCE_BYTES],
                blob[_HEADER + NONCE_BYTES :],
                header + associated_data,
            )
        except InvalidTag:
            raise SealedValueError(
                "a sealed ledger value failed authentication: the storage key is not the "
                "one it was sealed with, or the value was altered or moved to another key"
            ) from None
