"""QBFT wire messages, version 2: payloads, signatures, the block value, RLP encoding (pure).

Names follow the formal specification (Consensys/qbft-formal-spec-and-verification,
``dafny/spec/L1/types.dfy``): an ``Unsigned*`` payload is what a validator signs, a ``Signed*``
payload carries the signature, and the four messages ``Proposal``, ``Prepare``, ``Commit`` and
``RoundChange`` wrap signed payloads with the blocks and justifications they need. ``NewBlock``
(a decided block with its commit seals) is the spec's fifth message.

Every signature is a secp256k1 recoverable signature (65 bytes ``r || s || v``, ``v`` in {0, 1},
low ``s``) over a domain-separated, versioned digest::

    domain          = keccak256(b"coco-gateway/qbft/v2" || uint256(chain id) || genesis hash)
    message digest  = keccak256(domain || rlp([code, height, round, ...]))
    commit seal     = sign(keccak256(b"coco-gateway/qbft/v1/commit-seal" || rlp([digest, round])))
    block digest    = keccak256(b"coco-gateway/qbft/v1/block" || rlp([height, proposer, payload]))

Version 2 binds every signed message to one chain: its domain (``qbft_domain``, carried in
``QbftConfig``) is derived from the chain id and the genesis hash, travels in the message's
envelope, and is what the signature covers, so a validator's message for one consortium
cannot be replayed in another (the node refuses it as ``wrong-chain``). Commit seals and block
digests are as in version 1: the block is the EVM header, whose parent-hash chain reaches the
genesis, so a seal over it is bound to its chain already.

The authoritative description, with a worked example that a test recomputes, is docs/qbft.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

import coincurve
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

__all__ = [
    "BLOCK_DOMAIN",
    "COMMIT_SEAL_DOMAIN",
    "MAX_HEIGHT",
    "MAX_JUSTIFICATION",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_ROUND",
    "MESSAGE_DOMAIN",
    "QBFT_VERSION",
    "SIGNATURE_LENGTH",
    "UNBOUND_DOMAIN",
    "Block",
    "Commit",
    "FinalizedBlock",
    "Message",
    "MessageCode",
    "MessageFormatError",
    "NewBlock",
    "Prepare",
    "Proposal",
    "RoundChange",
    "SignedCommit",
    "SignedPayload",
    "SignedPrepare",
    "SignedProposal",
    "SignedRoundChange",
    "UnsignedCommit",
    "UnsignedPrepare",
    "UnsignedProposal",
    "UnsignedRoundChange",
    "commit_seal_digest",
    "decode_message",
    "encode_message",
    "qbft_domain",
    "recover_signer",
    "rlp_decode",
    "rlp_encode",
    "sign_digest",
]

QBFT_VERSION = 2
MESSAGE_DOMAIN = b"coco-gateway/qbft/v2"  # the tag a chain's message domain is derived under
DOMAIN_LENGTH = 32
COMMIT_SEAL_DOMAIN = b"coco-gateway/qbft/v1/commit-seal"
BLOCK_DOMAIN = b"coco-gateway/qbft/v1/block"

SIGNATURE_LENGTH = 65
# Round numbers are 31-bit, as Besu's (a Java int). A round beyond this is malformed: with the
# capped round timer an honest validator needs centuries to get there.
MAX_ROUND = 2**31 - 1
MAX_HEIGHT = 2**63 - 1
# The opaque block payload at this layer (the sealed block, later) and a whole message.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
# Signed payloads carried in one justification (at most one per validator; 256 validators).
MAX_JUSTIFICATION = 256
MAX_MESSAGE_BYTES = MAX_PAYLOAD_BYTES + 2 * MAX_JUSTIFICATION * 256 + 4096

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2


def qbft_domain(chain_id: int, genesis_hash: bytes) -> bytes:
    """The message domain of one chain: keccak256(tag || uint256 chain id || genesis hash)."""
    if not 0 <= chain_id < 2**256 or len(genesis_hash) != 32:
        raise ValueError("a QBFT domain needs a chain id (uint256) and a 32-byte genesis hash")
    return keccak(MESSAGE_DOMAIN + chain_id.to_bytes(32, "big") + bytes(genesis_hash))


# The domain of no chain (chain id 0, zero genesis): the simulation's and the unit tests'. A
# node's configuration always names its chain (gateway.enclave.consortium.qbft_config).
UNBOUND_DOMAIN = qbft_domain(0, bytes(32))


class MessageCode(IntEnum):
    """The message type byte, as Besu's QBFT v1 codes; ``NEW_BLOCK`` is this project's."""

    PROPOSAL = 0x12
    PREPARE = 0x13
    COMMIT = 0x14
    ROUND_CHANGE = 0x15
    NEW_BLOCK = 0x16


class MessageFormatError(ValueError):
    """Bytes that are not a well-formed version-2 QBFT message; ``reason`` is a stable code."""

    TOO_LARGE = "too-large"
    NOT_RLP = "not-rlp"
    BAD_VERSION = "bad-version"
    BAD_CODE = "bad-code"
    BAD_SHAPE = "bad-shape"
    BAD_INTEGER = "bad-integer"
    OUT_OF_RANGE = "out-of-range"
    BAD_LENGTH = "bad-length"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- RLP
# A small RLP codec for the only shapes QBFT uses (non-negative ints, byte strings, lists), kept
# here because pyrlp's general sedes machinery dominated the cost of a simulated message. Its
# output is byte-for-byte pyrlp's (tests/test_qbft_messages.py checks), and decoding is strict:
# canonical lengths only, no trailing bytes.

RlpItem = bytes | list["RlpItem"]


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(raw)]) + raw


def rlp_encode(item: object) -> bytes:
    """RLP of ``item``: ``bytes``, a non-negative ``int`` (big-endian, minimal), or a list."""
    if isinstance(item, bytes | bytearray):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _length_prefix(len(item), 0x80) + bytes(item)
    if isinstance(item, int) and not isinstance(item, bool):
        if item < 0:
            raise ValueError("RLP integers are non-negative")
        return rlp_encode(item.to_bytes((item.bit_length() + 7) // 8, "big") if item else b"")
    if isinstance(item, list | tuple):
        body = b"".join(rlp_encode(x) for x in item)
        return _length_prefix(len(body), 0xC0) + body
    raise TypeError(f"cannot RLP-encode {type(item).__name__}")


def _rlp_item(data: bytes, pos: int, depth: int) -> tuple[RlpItem, int]:
    if depth > 8:
        raise MessageFormatError(MessageFormatError.NOT_RLP, "nested too deeply")
    if pos >= len(data):
        raise MessageFormatError(MessageFormatError.NOT_RLP, "truncated")
    b0 = data[pos]
    if b0 < 0x80:
        return data[pos : pos + 1], pos + 1
    is_list = b0 >= 0xC0
    base = 0xC0 if is_list else 0x80
    short = b0 - base
    if short < 56:
        length, start = short, pos + 1
        if not is_list and length == 1 and start < len(data) and data[start] < 0x80:
            raise MessageFormatError(MessageFormatError.NOT_RLP, "non-canonical single byte")
    else:
        n = short - 55
        raw = data[pos + 1 : pos + 1 + n]
        if len(raw) != n or raw[:1] == b"\x00":
            raise MessageFormatError(MessageFormatError.NOT_RLP, "bad length prefix")
        length, start = int.from_bytes(raw, "big"), pos + 1 + n
        if length < 56:
            raise MessageFormatError(MessageFormatError.NOT_RLP, "non-canonical length")
    end = start + length
    if end > len(data):
        raise MessageFormatError(MessageFormatError.NOT_RLP, "truncated")
    if not is_list:
        return data[start:end], end
    items: list[RlpItem] = []
    p = start
    while p < end:
        item, p = _rlp_item(data, p, depth + 1)
        items.append(item)
    if p != end:
        raise MessageFormatError(MessageFormatError.NOT_RLP, "list length mismatch")
    return items, end


def rlp_decode(data: bytes) -> RlpItem:
    """Strict RLP decoding of one item filling ``data``; raises ``MessageFormatError``."""
    item, end = _rlp_item(bytes(data), 0, 0)
    if end != len(data):
        raise MessageFormatError(MessageFormatError.NOT_RLP, "trailing bytes")
    return item


# --------------------------------------------------------------------------- crypto primitives


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """A 65-byte low-s recoverable signature of ``digest`` (deterministic, RFC 6979)."""
    signer = _coincurve_key(key.to_bytes())
    sig = signer.sign_recoverable(digest, hasher=None)  # r || s || v, low s (libsecp256k1)
    s_ = int.from_bytes(sig[32:64], "big")
    if s_ > _HALF_N:  # libsecp256k1 never does this; keep the guarantee explicit
        v = sig[64] ^ 1
        return sig[:32] + (_SECP256K1_N - s_).to_bytes(32, "big") + bytes([v])
    return bytes(sig)


@functools.lru_cache(maxsize=256)
def _coincurve_key(secret: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(secret)


# public keys seen in valid signatures, by address (bounded): the enclave encrypts a rotated
# ledger secret to each trusted node's identity key (gateway.enclave.rotation), and a
# validator's key is known from its consensus messages
MAX_SEEN_KEYS = 4096
_SEEN_KEYS: dict[bytes, bytes] = {}


def seen_public_key(address: bytes) -> bytes | None:
    """The uncompressed public key (65 bytes) of ``address`` if a signature of it was seen."""
    return _SEEN_KEYS.get(bytes(address))


@functools.lru_cache(maxsize=65536)
def recover_signer(digest: bytes, signature: bytes) -> bytes | None:
    """The 20-byte address whose key signed ``digest``, or ``None`` if the signature is invalid.

    Pure, so its results are cached (bounded): the same signed payload travels many times, alone
    and inside justifications, and recovery is the costly step.
    """
    if len(signature) != SIGNATURE_LENGTH or len(digest) != 32:
        return None
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (0, 1) or not (0 < r < _SECP256K1_N and 0 < s <= _HALF_N):
        return None
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            bytes(signature), bytes(digest), hasher=None
        )
    except (ValueError, TypeError):
        return None
    public = public_key.format(compressed=False)
    address = keccak(public[1:])[12:]
    if address not in _SEEN_KEYS and len(_SEEN_KEYS) < MAX_SEEN_KEYS:
        _SEEN_KEYS[address] = public
    return address


def commit_seal_digest(digest: bytes, round_: int) -> bytes:
    """What a commit seal signs: the block digest and the round it was committed in."""
    return keccak(COMMIT_SEAL_DOMAIN + rlp_encode([digest, round_]))


# --------------------------------------------------------------------------- the block value


@dataclass(frozen=True, slots=True)
class Block:
    """The value QBFT agrees on: opaque bytes plus the header fields consensus itself needs.

    ``proposer`` is the validator that built it (the spec's ``header.proposer``: the next
    height's round-robin starts after it). A re-proposal in a later round carries the same block,
    so its digest does not depend on the round; the round is in the commit seals instead.
    """

    height: int
    proposer: bytes
    payload: bytes

    @property
    def digest(self) -> bytes:
        return _block_digest(self.height, self.proposer, self.payload)

    def to_rlp(self) -> list[object]:
        return [self.height, self.proposer, self.payload]


@functools.lru_cache(maxsize=4096)
def _block_digest(height: int, proposer: bytes, payload: bytes) -> bytes:
    return keccak(BLOCK_DOMAIN + rlp_encode([height, proposer, payload]))


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class UnsignedProposal:
    height: int
    round: int
    digest: bytes

    code = MessageCode.PROPOSAL

    def fields(self) -> list[object]:
        return [self.height, self.round, self.digest]


@dataclass(frozen=True, slots=True)
class UnsignedPrepare:
    height: int
    round: int
    digest: bytes

    code = MessageCode.PREPARE

    def fields(self) -> list[object]:
        return [self.height, self.round, self.digest]


@dataclass(frozen=True, slots=True)
class UnsignedCommit:
    height: int
    round: int
    digest: bytes
    commit_seal: bytes

    code = MessageCode.COMMIT

    def fields(self) -> list[object]:
        return [self.height, self.round, self.digest, self.commit_seal]


@dataclass(frozen=True, slots=True)
class UnsignedRoundChange:
    """``prepared_round`` and ``prepared_value`` are both present or both ``None``."""

    height: int
    round: int
    prepared_round: int | None
    prepared_value: bytes | None

    code = MessageCode.ROUND_CHANGE

    def fields(self) -> list[object]:
        prepared: list[object] = (
            []
            if self.prepared_round is None or self.prepared_value is None
            else [self.prepared_round, self.prepared_value]
        )
        return [self.height, self.round, prepared]


Unsigned = UnsignedProposal | UnsignedPrepare | UnsignedCommit | UnsignedRoundChange
P = TypeVar("P", bound=Unsigned)


def signing_digest(domain: bytes, payload: Unsigned) -> bytes:
    """What a validator signs: ``keccak256(domain || rlp([code, *fields]))``."""
    return keccak(domain + rlp_encode([int(payload.code), *payload.fields()]))


@dataclass(frozen=True, slots=True)
class SignedPayload(Generic[P]):
    """A payload and its author's signature over the message digest of ``domain`` (the
    chain it was signed for)."""

    unsigned_payload: P
    signature: bytes
    domain: bytes = UNBOUND_DOMAIN
    _signing_digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_signing_digest", signing_digest(self.domain, self.unsigned_payload)
        )

    @property
    def signing_digest(self) -> bytes:
        return self._signing_digest

    @property
    def author(self) -> bytes | None:
        """The signer (the spec's ``recoverSigned*Author``); ``None`` if unrecoverable."""
        return recover_signer(self._signing_digest, self.signature)

    @classmethod
    def sign(cls, payload: P, key: PrivateKey, domain: bytes = UNBOUND_DOMAIN) -> SignedPayload[P]:
        return cls(payload, sign_digest(key, signing_digest(domain, payload)), domain)

    def to_rlp(self) -> list[object]:
        return [self.unsigned_payload.fields(), self.signature]


SignedProposal = SignedPayload[UnsignedProposal]
SignedPrepare = SignedPayload[UnsignedPrepare]
SignedCommit = SignedPayload[UnsignedCommit]
SignedRoundChange = SignedPayload[UnsignedRoundChange]


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Proposal:
    """``proposalJustification``: round changes for this round (empty in round 0);
    ``roundChangeJustification``: the prepares behind the highest prepared value, if any."""

    proposal_payload: SignedProposal
    proposed_block: Block
    proposal_justification: tuple[SignedRoundChange, ...] = ()
    round_change_justification: tuple[SignedPrepare, ...] = ()

    code = MessageCode.PROPOSAL

    @property
    def height(self) -> int:
        return self.proposal_payload.unsigned_payload.height

    @property
    def round(self) -> int:
        return self.proposal_payload.unsigned_payload.round

    @property
    def author(self) -> bytes | None:
        return self.proposal_payload.author

    @property
    def domain(self) -> bytes:
        return self.proposal_payload.domain


@dataclass(frozen=True, slots=True)
class Prepare:
    prepare_payload: SignedPrepare

    code = MessageCode.PREPARE

    @property
    def height(self) -> int:
        return self.prepare_payload.unsigned_payload.height

    @property
    def round(self) -> int:
        return self.prepare_payload.unsigned_payload.round

    @property
    def author(self) -> bytes | None:
        return self.prepare_payload.author

    @property
    def domain(self) -> bytes:
        return self.prepare_payload.domain


@dataclass(frozen=True, slots=True)
class Commit:
    commit_payload: SignedCommit

    code = MessageCode.COMMIT

    @property
    def height(self) -> int:
        return self.commit_payload.unsigned_payload.height

    @property
    def round(self) -> int:
        return self.commit_payload.unsigned_payload.round

    @property
    def author(self) -> bytes | None:
        return self.commit_payload.author

    @property
    def domain(self) -> bytes:
        return self.commit_payload.domain


@dataclass(frozen=True, slots=True)
class RoundChange:
    """``proposedBlockForNextRound`` and its ``roundChangeJustification`` (the prepares that
    certify it) are present exactly when the signed payload names a prepared round and value."""

    round_change_payload: SignedRoundChange
    proposed_block_for_next_round: Block | None = None
    round_change_justification: tuple[SignedPrepare, ...] = ()

    code = MessageCode.ROUND_CHANGE

    @property
    def height(self) -> int:
        return self.round_change_payload.unsigned_payload.height

    @property
    def round(self) -> int:
        return self.round_change_payload.unsigned_payload.round

    @property
    def author(self) -> bytes | None:
        return self.round_change_payload.author

    @property
    def domain(self) -> bytes:
        return self.round_change_payload.domain


@dataclass(frozen=True, slots=True)
class FinalizedBlock:
    """A decided block: final once ``commit_seals`` hold a quorum of validators' seals over
    ``commit_seal_digest(block.digest, round)``. Seals stay outside the block, in signer order."""

    block: Block
    round: int
    commit_seals: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NewBlock:
    """The spec's ``NewBlock``: a decided block, multicast after the decision. Not signed by its
    sender: the commit seals are the proof. ``domain`` names the chain it is announced on."""

    finalized: FinalizedBlock
    domain: bytes = UNBOUND_DOMAIN

    code = MessageCode.NEW_BLOCK

    @property
    def height(self) -> int:
        return self.finalized.block.height


Message = Proposal | Prepare | Commit | RoundChange | NewBlock


# --------------------------------------------------------------------------- encoding


def _signed_rlp(s: SignedPayload[Any]) -> list[object]:
    return s.to_rlp()


def encode_message(message: Message) -> bytes:
    """``rlp([version, domain, code, body])``; the body per message type is described in
    docs/qbft.md. The signed payloads inside are all the message's domain's."""
    body: object
    if isinstance(message, Proposal):
        body = [
            _signed_rlp(message.proposal_payload),
            message.proposed_block.to_rlp(),
            [_signed_rlp(rc) for rc in message.proposal_justification],
            [_signed_rlp(p) for p in message.round_change_justification],
        ]
    elif isinstance(message, Prepare):
        body = _signed_rlp(message.prepare_payload)
    elif isinstance(message, Commit):
        body = _signed_rlp(message.commit_payload)
    elif isinstance(message, RoundChange):
        block = message.proposed_block_for_next_round
        body = [
            _signed_rlp(message.round_change_payload),
            [] if block is None else block.to_rlp(),
            [_signed_rlp(p) for p in message.round_change_justification],
        ]
    else:
        f = message.finalized
        body = [f.block.to_rlp(), f.round, list(f.commit_seals)]
    return rlp_encode([QBFT_VERSION, message.domain, int(message.code), body])


def _list(item: object, length: int | None = None, what: str = "item") -> list[object]:
    if not isinstance(item, list):
        raise MessageFormatError(MessageFormatError.BAD_SHAPE, f"{what} must be a list")
    if length is not None and len(item) != length:
        raise MessageFormatError(
            MessageFormatError.BAD_SHAPE, f"{what} must have {length} fields, has {len(item)}"
        )
    return item


def _bytes(item: object, length: int | None = None, what: str = "field", limit: int = 0) -> bytes:
    if not isinstance(item, bytes):
        raise MessageFormatError(MessageFormatError.BAD_SHAPE, f"{what} must be a byte string")
    if length is not None and len(item) != length:
        raise MessageFormatError(
            MessageFormatError.BAD_LENGTH, f"{what} must be {length} bytes, is {len(item)}"
        )
    if limit and len(item) > limit:
        raise MessageFormatError(MessageFormatError.TOO_LARGE, f"{what} exceeds {limit} bytes")
    return item


def _int(item: object, maximum: int, what: str) -> int:
    raw = _bytes(item, what=what)
    if raw[:1] == b"\x00":
        raise MessageFormatError(MessageFormatError.BAD_INTEGER, f"{what} has a leading zero")
    if len(raw) > 8:
        raise MessageFormatError(MessageFormatError.OUT_OF_RANGE, f"{what} is wider than 64 bits")
    value = int.from_bytes(raw, "big")
    if value > maximum:
        raise MessageFormatError(MessageFormatError.OUT_OF_RANGE, f"{what} {value} > {maximum}")
    return value


def _decode_block(item: object) -> Block:
    f = _list(item, 3, "block")
    return Block(
        _int(f[0], MAX_HEIGHT, "block height"),
        _bytes(f[1], 20, "block proposer"),
        _bytes(f[2], what="block payload", limit=MAX_PAYLOAD_BYTES),
    )


def _decode_signed(item: object, code: MessageCode, domain: bytes) -> SignedPayload[Any]:
    outer = _list(item, 2, "signed payload")
    sig = _bytes(outer[1], SIGNATURE_LENGTH, "signature")
    if code is MessageCode.COMMIT:
        f = _list(outer[0], 4, "commit payload")
    elif code is MessageCode.ROUND_CHANGE:
        f = _list(outer[0], 3, "round-change payload")
    else:
        f = _list(outer[0], 3, "payload")
    height = _int(f[0], MAX_HEIGHT, "height")
    round_ = _int(f[1], MAX_ROUND, "round")
    payload: Unsigned
    if code is MessageCode.PROPOSAL:
        payload = UnsignedProposal(height, round_, _bytes(f[2], 32, "digest"))
    elif code is MessageCode.PREPARE:
        payload = UnsignedPrepare(height, round_, _bytes(f[2], 32, "digest"))
    elif code is MessageCode.COMMIT:
        payload = UnsignedCommit(
            height, round_, _bytes(f[2], 32, "digest"), _bytes(f[3], SIGNATURE_LENGTH, "seal")
        )
    else:
        prepared = _list(f[2], what="prepared metadata")
        if len(prepared) == 0:
            payload = UnsignedRoundChange(height, round_, None, None)
        elif len(prepared) == 2:
            payload = UnsignedRoundChange(
                height,
                round_,
                _int(prepared[0], MAX_ROUND, "prepared round"),
                _bytes(prepared[1], 32, "prepared value"),
            )
        else:
            raise MessageFormatError(
                MessageFormatError.BAD_SHAPE, "prepared metadata must be [] or [round, value]"
            )
    return SignedPayload(payload, sig, domain)


def _decode_many(
    item: object, code: MessageCode, what: str, domain: bytes
) -> tuple[SignedPayload[Any], ...]:
    items = _list(item, what=what)
    if len(items) > MAX_JUSTIFICATION:
        raise MessageFormatError(
            MessageFormatError.TOO_LARGE, f"{what} has {len(items)} entries (> {MAX_JUSTIFICATION})"
        )
    return tuple(_decode_signed(i, code, domain) for i in items)


def decode_message(data: bytes) -> Message:
    """Parse one wire message, checking sizes and ranges before building anything.

    Raises ``MessageFormatError``; it never checks signatures or consensus rules (that is the
    validation step, ``gateway.consensus.qbft.validation``).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageFormatError(MessageFormatError.TOO_LARGE, f"{len(data)} bytes")
    top = rlp_decode(data)
    if not isinstance(top, list) or not top:
        raise MessageFormatError(MessageFormatError.BAD_SHAPE, "message must be a list")
    version = _int(top[0], 255, "version")
    if version != QBFT_VERSION:
        raise MessageFormatError(MessageFormatError.BAD_VERSION, f"version {version}")
    f = _list(top, 4, "message")
    domain = _bytes(f[1], DOMAIN_LENGTH, "domain")
    try:
        code = MessageCode(_int(f[2], 255, "code"))
    except ValueError as exc:
        raise MessageFormatError(MessageFormatError.BAD_CODE, "unknown message code") from exc
    body = f[3]
    if code is MessageCode.PROPOSAL:
        b = _list(body, 4, "proposal")
        return Proposal(
            _decode_signed(b[0], code, domain),
            _decode_block(b[1]),
            _decode_many(b[2], MessageCode.ROUND_CHANGE, "proposal justification", domain),
            _decode_many(b[3], MessageCode.PREPARE, "round-change justification", domain),
        )
    if code is MessageCode.PREPARE:
        return Prepare(_decode_signed(body, code, domain))
    if code is MessageCode.COMMIT:
        return Commit(_decode_signed(body, code, domain))
    if code is MessageCode.ROUND_CHANGE:
        b = _list(body, 3, "round change")
        blk = _list(b[1], what="round-change block")
        return RoundChange(
            _decode_signed(b[0], code, domain),
            None if len(blk) == 0 else _decode_block(blk),
            _decode_many(b[2], MessageCode.PREPARE, "round-change justification", domain),
        )
    b = _list(body, 3, "new block")
    seals = _list(b[2], what="commit seals")
    if len(seals) > MAX_JUSTIFICATION:
        raise MessageFormatError(MessageFormatError.TOO_LARGE, "too many commit seals")
    return NewBlock(
        FinalizedBlock(
            _decode_block(b[0]),
            _int(b[1], MAX_ROUND, "round"),
            tuple(_bytes(s, SIGNATURE_LENGTH, "commit seal") for s in seals),
        ),
        domain,
    )
