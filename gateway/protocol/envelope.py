"""Transaction envelope, version 1: call data and init code encrypted to the enclave.

A client seals the ``data`` of a transaction (or of an ``eth_call``) to the consortium's
transaction key of an epoch; only an enclave holding that epoch's private key can open it.
The same key agreement yields a response key, under which the enclave encrypts what it sends
back to that caller (return data, revert data, log data). The byte layout, key schedule and a
worked example are in docs/PROTOCOL.md, "Transaction envelope".

This module is imported by both the enclave and the client SDK. It is pure: no clock (epochs
and times come in as arguments), no files, no network. Its only side effect is drawing
randomness for an ephemeral key or a nonce when the caller does not pass one.

Two kinds of failure are kept apart: an ``EnvelopeError`` says that *data* is bad (a user
can act on its message); ``ValueError``/``TypeError`` say that the *caller* passed an argument
of the wrong shape (a programming error).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "DEFAULT_EPOCH_PERIOD",
    "DEFAULT_GRACE",
    "REQUEST_MAGIC",
    "RESPONSE_MAGIC",
    "VERSION",
    "ChainMismatchError",
    "EnvelopeAuthenticationError",
    "EnvelopeError",
    "EnvelopeHeader",
    "EpochError",
    "FutureEpochError",
    "KeysByEpoch",
    "Kind",
    "NotAnEnvelopeError",
    "OpenedRequest",
    "Purpose",
    "ResponseHeader",
    "ResponseMismatchError",
    "SealedRequest",
    "SenderMismatchError",
    "StaleEpochError",
    "TruncatedEnvelopeError",
    "UnknownEpochError",
    "UnknownKindError",
    "UnknownPurposeError",
    "UnsupportedVersionError",
    "WrongKindError",
    "derive_epoch_key",
    "epoch_at",
    "epoch_public_key",
    "is_envelope",
    "is_response",
    "open_request",
    "open_response",
    "parse_header",
    "parse_response_header",
    "reopen_request",
    "request_digest",
    "seal_request",
    "seal_response",
]

# ----------------------------------------------------------------------------- constants

REQUEST_MAGIC: Final = b"\xc0\xc0E"
RESPONSE_MAGIC: Final = b"\xc0\xc0R"
VERSION: Final = 1

ENVELOPE_INFO: Final = b"coco-gateway/envelope/v1"
TX_KEY_INFO: Final = b"coco-gateway/tx-key/v1"

KEY_SIZE: Final = 32  # X25519 keys, AES-256 keys
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
ADDRESS_SIZE: Final = 20
DIGEST_SIZE: Final = 32

# request header: magic 3 | version 1 | kind 1 | chain id 8 | epoch 4 | ephemeral key 32
REQUEST_HEADER_SIZE: Final = 3 + 1 + 1 + 8 + 4 + KEY_SIZE  # 49
REQUEST_MIN_SIZE: Final = REQUEST_HEADER_SIZE + NONCE_SIZE + TAG_SIZE  # 77
# response header: magic 3 | version 1 | purpose 1 | index 4
RESPONSE_HEADER_SIZE: Final = 3 + 1 + 1 + 4  # 9
RESPONSE_MIN_SIZE: Final = RESPONSE_HEADER_SIZE + NONCE_SIZE + TAG_SIZE  # 37

MAX_CHAIN_ID: Final = 2**64 - 1
MAX_U32: Final = 2**32 - 1

DEFAULT_EPOCH_PERIOD: Final = 86_400
"""Seconds per epoch of the transaction key (one day, counted from the Unix epoch, UTC)."""
DEFAULT_GRACE: Final = 1
"""Previous epochs whose keys are still accepted at admission (besides the current one)."""

_ZERO_ADDRESS: Final = bytes(ADDRESS_SIZE)


class Kind(IntEnum):
    """What a request envelope carries."""

    CALL = 1  # call data for a transaction or eth_call with a recipient
    CREATE = 2  # init code of a contract creation (no recipient)


class Purpose(IntEnum):
    """What a response envelope answers."""

    RESULT = 1  # the return data of a call (eth_call, or the output of a transaction)
    REVERT = 2  # the revert data of a failed call or transaction
    LOG = 3  # the data of one log; index = the log's position among the transaction's logs


_KIND_NAMES: Final = {Kind.CALL: "call data (kind 1)", Kind.CREATE: "init code (kind 2)"}


def _purpose_text(purpose: int, index: int) -> str:
    if purpose == Purpose.LOG:
        return f"log {index}"
    if purpose == Purpose.REVERT:
        return "revert data"
    if purpose == Purpose.RESULT:
        return "return data"
    return f"purpose {purpose} index {index}"


# ----------------------------------------------------------------------------- errors


class EnvelopeError(Exception):
    """The bytes are not a valid envelope for this use. ``reason`` is a stable short code."""

    reason: str = "envelope-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAnEnvelopeError(EnvelopeError):
    """No envelope magic: the caller should treat the data as plaintext."""

    reason = "not-an-envelope"


class TruncatedEnvelopeError(EnvelopeError):
    reason = "truncated"

    def __init__(self, message: str, *, length: int, minimum: int) -> None:
        super().__init__(message)
        self.length = length
        self.minimum = minimum


class UnsupportedVersionError(EnvelopeError):
    reason = "unsupported-version"

    def __init__(self, version: int, *, what: str = "envelope") -> None:
        super().__init__(
            f"{what} version {version} is not supported (this software reads version "
            f"{VERSION}); update the client SDK or the node so both speak the same version"
        )
        self.version = version


class UnknownKindError(EnvelopeError):
    reason = "unknown-kind"

    def __init__(self, kind: int) -> None:
        super().__init__(
            f"envelope kind {kind} is unknown (1 = call data, 2 = contract creation init code)"
        )
        self.kind = kind


class WrongKindError(EnvelopeError):
    reason = "wrong-kind"

    def __init__(self, kind: Kind, expected: Kind) -> None:
        if kind == Kind.CREATE:
            hint = (
                "contract creation init code (kind 2) but the transaction has a recipient; "
                "send init code with no 'to', or seal call data with kind 1"
            )
        else:
            hint = (
                "call data (kind 1) but the transaction has no recipient (a contract "
                "creation); seal init code with kind 2, or set 'to'"
            )
        super().__init__(f"envelope carries {hint}")
        self.kind = kind
        self.expected = expected


class ChainMismatchError(EnvelopeError):
    reason = "wrong-chain"

    def __init__(self, envelope_chain_id: int, node_chain_id: int) -> None:
        super().__init__(
            f"envelope is for chain {envelope_chain_id}, this node serves chain "
            f"{node_chain_id}; seal it again with chain id {node_chain_id}"
        )
        self.envelope_chain_id = envelope_chain_id
        self.node_chain_id = node_chain_id


class EpochError(EnvelopeError):
    """The envelope's epoch is outside the admission window or has no key."""

    reason = "epoch"

    def __init__(self, message: str, *, epoch: int, current_epoch: int | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.current_epoch = current_epoch


class StaleEpochError(EpochError):
    reason = "stale-epoch"

    def __init__(self, epoch: int, current_epoch: int, grace: int) -> None:
        super().__init__(
            f"envelope is sealed to the transaction key of epoch {epoch}, which has expired: "
            f"the current epoch is {current_epoch} and keys are accepted for {grace} "
            f"previous epoch(s); fetch the current transaction key and seal again",
            epoch=epoch,
            current_epoch=current_epoch,
        )
        self.grace = grace


class FutureEpochError(EpochError):
    reason = "future-epoch"

    def __init__(self, epoch: int, current_epoch: int) -> None:
        super().__init__(
            f"envelope is sealed to the transaction key of epoch {epoch}, ahead of this "
            f"node's current epoch {current_epoch}; fetch the transaction key from this node "
            f"(or check the clocks) and seal again",
            epoch=epoch,
            current_epoch=current_epoch,
        )


class UnknownEpochError(EpochError):
    reason = "unknown-epoch"

    def __init__(self, epoch: int, current_epoch: int | None) -> None:
        super().__init__(
            f"this node has no transaction key for epoch {epoch}; fetch the current "
            f"transaction key and seal again",
            epoch=epoch,
            current_epoch=current_epoch,
        )


class EnvelopeAuthenticationError(EnvelopeError):
    """The AEAD check failed (or the key agreement was impossible)."""

    reason = "authentication-failed"


class SenderMismatchError(EnvelopeAuthenticationError):
    """The envelope opens, but for another sender than the one the node runs the request
    as (found by the node after the AEAD failed: it tries the identities the caller could
    have meant, such as the call's ``from`` and the zero address)."""

    reason = "wrong-sender"


class UnknownPurposeError(EnvelopeError):
    reason = "unknown-purpose"

    def __init__(self, purpose: int) -> None:
        super().__init__(
            f"response purpose {purpose} is unknown (1 = return data, 2 = revert data, 3 = log)"
        )
        self.purpose = purpose


class ResponseMismatchError(EnvelopeError):
    reason = "response-mismatch"

    def __init__(self, purpose: int, index: int, expected: Purpose, expected_index: int) -> None:
        super().__init__(
            f"response holds the {_purpose_text(purpose, index)} of its request, not the "
            f"{_purpose_text(expected, expected_index)}; it was taken from another field"
        )
        self.purpose = purpose
        self.index = index
        self.expected = expected
        self.expected_index = expected_index


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EnvelopeHeader:
    """The public header of a request envelope (everything before the nonce)."""

    version: int
    kind: Kind
    chain_id: int
    epoch: int
    ephemeral_public: bytes


@dataclass(frozen=True)
class SealedRequest:
    """What the client keeps: the envelope to send, and the key that opens the answers."""

    envelope: bytes
    response_key: bytes = field(repr=False)
    request_digest: bytes


@dataclass(frozen=True)
class OpenedRequest:
    """What the enclave learns from a request envelope. Never log ``plaintext``."""

    plaintext: bytes = field(repr=False)
    kind: Kind
    chain_id: int
    epoch: int
    ephemeral_public: bytes
    response_key: bytes = field(repr=False)
    request_digest: bytes


@dataclass(frozen=True)
class ResponseHeader:
    version: int
    purpose: Purpose
    index: int


KeysByEpoch: TypeAlias = Mapping[int, X25519PrivateKey] | Callable[[int], X25519PrivateKey | None]
"""The enclave's transaction keys: a mapping epoch -> key, or a function returning the key
(or None, or raising KeyError) for an epoch. Called only for epochs that passed the window."""


# ----------------------------------------------------------------------------- helpers


def _check_bytes(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value


def _check_int(name: str, value: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum}, got {value}")
    return value


def _as_bytes(name: str, value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _kind_for_recipient(to: bytes | None) -> Kind:
    return Kind.CREATE if to is None else Kind.CALL


def _binding(sender: bytes, to: bytes | None) -> bytes:
    """The transaction context bound into the request AAD (not transmitted)."""
    sender = _check_bytes("sender", sender, ADDRESS_SIZE)
    target = _ZERO_ADDRESS if to is None else _check_bytes("to", to, ADDRESS_SIZE)
    return sender + target


def _key_schedule(shared: bytes, ephemeral_public: bytes, enclave_public: bytes) -> bytes:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=2 * KEY_SIZE,
        salt=ephemeral_public + enclave_public,
        info=ENVELOPE_INFO,
    ).derive(shared)
    return okm


def _exchange(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # all-zero shared secret: a low-order point
        raise EnvelopeAuthenticationError(
            "envelope's ephemeral public key is invalid (a low-order X25519 point); "
            "the client must seal with a freshly generated ephemeral key"
        ) from exc


def request_digest(envelope: bytes) -> bytes:
    """SHA-256 of a request envelope: what binds responses to their request."""
    return hashlib.sha256(_as_bytes("envelope", envelope)).digest()


# ----------------------------------------------------------------------------- epochs


def epoch_at(timestamp: int, period: int = DEFAULT_EPOCH_PERIOD) -> int:
    """The epoch containing ``timestamp`` (Unix seconds): floor(timestamp / period)."""
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise TypeError("timestamp must be an int (Unix seconds)")
    if not isinstance(period, int) or isinstance(period, bool) or period <= 0:
        raise ValueError("period must be a positive int (seconds)")
    if timestamp < 0:
        raise ValueError("timestamp must not be negative")
    epoch = timestamp // period
    if epoch > MAX_U32:
        raise ValueError(f"epoch {epoch} does not fit in 32 bits; use a longer period")
    return epoch


def derive_epoch_key(secret: bytes, epoch: int) -> X25519PrivateKey:
    """The transaction key of ``epoch``: HKDF-SHA256 of the consortium secret.

    okm = HKDF(ikm=secret, salt=none, info="coco-gateway/tx-key/v1" || epoch u32 BE, 32 B),
    used as the X25519 private key (X25519 clamps it).
    """
    secret = _as_bytes("secret", secret)
    if len(secret) < 32:
        raise ValueError(f"secret must be at least 32 bytes, got {len(secret)}")
    _check_int("epoch", epoch, MAX_U32)
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=None,
        info=TX_KEY_INFO + epoch.to_bytes(4, "big"),
    ).derive(secret)
    return X25519PrivateKey.from_private_bytes(okm)


def epoch_public_key(secret: bytes, epoch: int) -> bytes:
    """The raw 32-byte public transaction key of ``epoch`` (what clients encrypt to)."""
    return _public_bytes(derive_epoch_key(secret, epoch))


# ----------------------------------------------------------------------------- requests


def is_envelope(data: bytes) -> bool:
    """True when ``data`` starts with the request magic (so it must not run as plaintext).

    Any version counts: an envelope of an unknown version must be refused, never executed
    as plain call data.
    """
    return bytes(data[: len(REQUEST_MAGIC)]) == REQUEST_MAGIC


def parse_header(envelope: bytes) -> EnvelopeHeader:
    """Read and check the public header of a request envelope (no key needed).

    Raises NotAnEnvelopeError, TruncatedEnvelopeError, UnsupportedVersionError or
    UnknownKindError.
    """
    envelope = _as_bytes("envelope", envelope)
    if not is_envelope(envelope):
        raise NotAnEnvelopeError(
            "data is not an envelope (it does not start with c0c045); it is plain data"
        )
    if len(envelope) < len(REQUEST_MAGIC) + 1:
        raise TruncatedEnvelopeError(
            f"envelope is truncated: {len(envelope)} bytes, too short to hold its version",
            length=len(envelope),
            minimum=REQUEST_MIN_SIZE,
        )
    version = envelope[3]
    if version != VERSION:
        raise UnsupportedVersionError(version)
    if len(envelope) < REQUEST_MIN_SIZE:
        if len(envelope) < REQUEST_HEADER_SIZE:
            missing = "its header"
        elif len(envelope) < REQUEST_HEADER_SIZE + NONCE_SIZE:
            missing = "its nonce"
        else:
            missing = "its authentication tag"
        raise TruncatedEnvelopeError(
            f"envelope is truncated: {len(envelope)} bytes end inside {missing}; a version 1 "
            f"request envelope has at least {REQUEST_MIN_SIZE} bytes (header "
            f"{REQUEST_HEADER_SIZE}, nonce {NONCE_SIZE}, tag {TAG_SIZE}); the data was cut "
            f"off on the way",
            length=len(envelope),
            minimum=REQUEST_MIN_SIZE,
        )
    kind = envelope[4]
    if kind not in (Kind.CALL, Kind.CREATE):
        raise UnknownKindError(kind)
    return EnvelopeHeader(
        version=version,
        kind=Kind(kind),
        chain_id=int.from_bytes(envelope[5:13], "big"),
        epoch=int.from_bytes(envelope[13:17], "big"),
        ephemeral_public=envelope[17:REQUEST_HEADER_SIZE],
    )


def seal_request(
    plaintext: bytes,
    *,
    kind: Kind,
    chain_id: int,
    epoch: int,
    enclave_public: bytes,
    sender: bytes,
    to: bytes | None,
    ephemeral_private: X25519PrivateKey | None = None,
    nonce: bytes | None = None,
) -> SealedRequest:
    """Encrypt call data (``Kind.CALL``, ``to`` = the recipient) or init code
    (``Kind.CREATE``, ``to`` = None) to the enclave's transaction key of ``epoch``.

    ``sender`` is the 20-byte address the transaction is signed by (for eth_call: the
    ``from`` the enclave will run it as; the zero address for an anonymous call). Sender and
    recipient are bound into the AAD, so the envelope opens only in that transaction.
    Pass ``ephemeral_private``/``nonce`` only for reproducible examples and tests.
    """
    plaintext = _as_bytes("plaintext", plaintext)
    kind = Kind(kind)
    if kind != _kind_for_recipient(to):
        raise ValueError(
            "kind CREATE needs to=None and kind CALL needs a 20-byte 'to' "
            f"(got kind {kind.name} with to={'None' if to is None else 'an address'})"
        )
    _check_int("chain_id", chain_id, MAX_CHAIN_ID)
    _check_int("epoch", epoch, MAX_U32)
    enclave_public = _check_bytes("enclave_public", enclave_public, KEY_SIZE)
    binding = _binding(sender, to)
    if ephemeral_private is None:
        ephemeral_private = X25519PrivateKey.generate()
    nonce = os.urandom(NONCE_SIZE) if nonce is None else _check_bytes("nonce", nonce, NONCE_SIZE)

    ephemeral_public = _public_bytes(ephemeral_private)
    try:
        shared = ephemeral_private.exchange(X25519PublicKey.from_public_bytes(enclave_public))
    except ValueError as exc:
        raise ValueError("enclave_public is not a valid X25519 public key") from exc
    okm = _key_schedule(shared, ephemeral_public, enclave_public)
    header = (
        REQUEST_MAGIC
        + bytes([VERSION, kind])
        + chain_id.to_bytes(8, "big")
        + epoch.to_bytes(4, "big")
        + ephemeral_public
    )
    sealed = AESGCM(okm[:KEY_SIZE]).encrypt(nonce, plaintext, header + binding)
    envelope = header + nonce + sealed
    return SealedRequest(
        envelope=envelope,
        response_key=okm[KEY_SIZE:],
        request_digest=request_digest(envelope),
    )


def _lookup(keys_by_epoch: KeysByEpoch, epoch: int, current_epoch: int | None) -> X25519PrivateKey:
    key: X25519PrivateKey | None
    if isinstance(keys_by_epoch, Mapping):
        key = keys_by_epoch.get(epoch)
    else:
        try:
            key = keys_by_epoch(epoch)
        except KeyError:
            key = None
    if key is None:
        raise UnknownEpochError(epoch, current_epoch)
    return key


def _open(
    envelope: bytes,
    header: EnvelopeHeader,
    private: X25519PrivateKey,
    sender: bytes,
    to: bytes | None,
) -> OpenedRequest:
    binding = _binding(sender, to)
    enclave_public = _public_bytes(private)
    shared = _exchange(private, header.ephemeral_public)
    okm = _key_schedule(shared, header.ephemeral_public, enclave_public)
    aad = envelope[:REQUEST_HEADER_SIZE] + binding
    nonce = envelope[REQUEST_HEADER_SIZE : REQUEST_HEADER_SIZE + NONCE_SIZE]
    try:
        plaintext = AESGCM(okm[:KEY_SIZE]).decrypt(
            nonce, envelope[REQUEST_HEADER_SIZE + NONCE_SIZE :], aad
        )
    except InvalidTag:
        raise EnvelopeAuthenticationError(
            "envelope failed authentication: it was altered, sealed to another transaction "
            f"key than this node's key of epoch {header.epoch}, or sealed for another sender "
            "or recipient than this transaction's; seal it again for this transaction"
        ) from None
    return OpenedRequest(
        plaintext=plaintext,
        kind=header.kind,
        chain_id=header.chain_id,
        epoch=header.epoch,
        ephemeral_public=header.ephemeral_public,
        response_key=okm[KEY_SIZE:],
        request_digest=request_digest(envelope),
    )


def _check_header(
    envelope: bytes, *, chain_id: int, to: bytes | None
) -> tuple[bytes, EnvelopeHeader]:
    envelope = _as_bytes("envelope", envelope)
    _check_int("chain_id", chain_id, MAX_CHAIN_ID)
    header = parse_header(envelope)
    if header.chain_id != chain_id:
        raise ChainMismatchError(header.chain_id, chain_id)
    expected = _kind_for_recipient(to)
    if header.kind != expected:
        raise WrongKindError(header.kind, expected)
    return envelope, header


def open_request(
    envelope: bytes,
    *,
    chain_id: int,
    keys_by_epoch: KeysByEpoch,
    current_epoch: int,
    sender: bytes,
    to: bytes | None,
    grace: int = DEFAULT_GRACE,
    lookahead: int = 0,
) -> OpenedRequest:
    """Admit and decrypt a request envelope (eth_sendRawTransaction, eth_call, estimates).

    Checks, in order: magic, version, length, kind, chain id, kind against the recipient
    (``to`` None means a contract creation, which needs kind 2), the epoch window
    ``current_epoch - grace <= epoch <= current_epoch + lookahead``, that a key exists,
    and finally the AEAD over header, sender and recipient.
    """
    _check_int("current_epoch", current_epoch, MAX_U32)
    _check_int("grace", grace, MAX_U32)
    _check_int("lookahead", lookahead, MAX_U32)
    envelope, header = _check_header(envelope, chain_id=chain_id, to=to)
    if header.epoch < current_epoch - grace:
        raise StaleEpochError(header.epoch, current_epoch, grace)
    if header.epoch > current_epoch + lookahead:
        raise FutureEpochError(header.epoch, current_epoch)
    private = _lookup(keys_by_epoch, header.epoch, current_epoch)
    return _open(envelope, header, private, sender, to)


def reopen_request(
    envelope: bytes,
    *,
    chain_id: int,
    keys_by_epoch: KeysByEpoch,
    sender: bytes,
    to: bytes | None,
) -> OpenedRequest:
    """Decrypt a request envelope that was already admitted: no epoch window.

    For executing a pooled transaction in a block, re-executing a block, and re-deriving the
    response key when a receipt or logs are fetched later, however old the epoch is. Never use
    it to admit a new transaction or call.
    """
    envelope, header = _check_header(envelope, chain_id=chain_id, to=to)
    private = _lookup(keys_by_epoch, header.epoch, None)
    return _open(envelope, header, private, sender, to)


# ----------------------------------------------------------------------------- responses


def is_response(data: bytes) -> bool:
    """True when ``data`` starts with the response magic."""
    return bytes(data[: len(RESPONSE_MAGIC)]) == RESPONSE_MAGIC


def parse_response_header(envelope: bytes) -> ResponseHeader:
    envelope = _as_bytes("envelope", envelope)
    if not is_response(envelope):
        raise NotAnEnvelopeError(
            "data is not a response envelope (it does not start with c0c052); the node "
            "returned it unencrypted"
        )
    if len(envelope) < len(RESPONSE_MAGIC) + 1:
        raise TruncatedEnvelopeError(
            f"response envelope is truncated: {len(envelope)} bytes, too short to hold its version",
            length=len(envelope),
            minimum=RESPONSE_MIN_SIZE,
        )
    version = envelope[3]
    if version != VERSION:
        raise UnsupportedVersionError(version, what="response envelope")
    if len(envelope) < RESPONSE_MIN_SIZE:
        raise TruncatedEnvelopeError(
            f"response envelope is truncated: {len(envelope)} bytes; a version 1 response "
            f"has at least {RESPONSE_MIN_SIZE} bytes (header {RESPONSE_HEADER_SIZE}, nonce "
            f"{NONCE_SIZE}, tag {TAG_SIZE})",
            length=len(envelope),
            minimum=RESPONSE_MIN_SIZE,
        )
    purpose = envelope[4]
    if purpose not in (Purpose.RESULT, Purpose.REVERT, Purpose.LOG):
        raise UnknownPurposeError(purpose)
    return ResponseHeader(
        version=version,
        purpose=Purpose(purpose),
        index=int.from_bytes(envelope[5:RESPONSE_HEADER_SIZE], "big"),
    )


def _check_purpose(purpose: Purpose, index: int) -> Purpose:
    purpose = Purpose(purpose)
    _check_int("index", index, MAX_U32)
    if purpose != Purpose.LOG and index != 0:
        raise ValueError(f"index must be 0 for {purpose.name} (only logs are numbered)")
    return purpose


def seal_response(
    plaintext: bytes,
    *,
    response_key: bytes,
    request_digest: bytes,
    purpose: Purpose = Purpose.RESULT,
    index: int = 0,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt data for the caller who sent the request with digest ``request_digest``.

    ``purpose``/``index`` say which field of the answer this is (index: the log's position
    among the transaction's logs, 0 otherwise); they are authenticated, so the host cannot
    move one encrypted field into another.
    """
    plaintext = _as_bytes("plaintext", plaintext)
    response_key = _check_bytes("response_key", response_key, KEY_SIZE)
    digest = _check_bytes("request_digest", request_digest, DIGEST_SIZE)
    purpose = _check_purpose(purpose, index)
    nonce = os.urandom(NONCE_SIZE) if nonce is None else _check_bytes("nonce", nonce, NONCE_SIZE)
    header = RESPONSE_MAGIC + bytes([VERSION, purpose]) + index.to_bytes(4, "big")
    return header + nonce + AESGCM(response_key).encrypt(nonce, plaintext, header + digest)


def open_response(
    envelope: bytes,
    *,
    response_key: bytes,
    request_digest: bytes,
    purpose: Purpose = Purpose.RESULT,
    index: int = 0,
) -> bytes:
    """Decrypt a response to the request with digest ``request_digest`` (client side).

    ``purpose``/``index`` are what the caller expects to read (return data, revert data, or
    log ``index``); a response for another field raises ResponseMismatchError, a response
    to another request (or altered) raises EnvelopeAuthenticationError.
    """
    envelope = _as_bytes("envelope", envelope)
    response_key = _check_bytes("response_key", response_key, KEY_SIZE)
    digest = _check_bytes("request_digest", request_digest, DIGEST_SIZE)
    expected = _check_purpose(purpose, index)
    header = parse_response_header(envelope)
    nonce = envelope[RESPONSE_HEADER_SIZE : RESPONSE_HEADER_SIZE + NONCE_SIZE]
    try:
        plaintext = AESGCM(response_key).decrypt(
            nonce,
            envelope[RESPONSE_HEADER_SIZE + NONCE_SIZE :],
            envelope[:RESPONSE_HEADER_SIZE] + digest,
        )
    except InvalidTag:
        raise EnvelopeAuthenticationError(
            "response failed authentication: it was altered, or it answers another request "
            "than the one whose response key and digest were given"
        ) from None
    if header.purpose != expected or header.index != index:
        raise ResponseMismatchError(header.purpose, header.index, expected, index)
    return plaintext
