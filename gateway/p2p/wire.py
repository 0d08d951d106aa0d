"""The node-to-node wire, version 4: frame types, msgpack encoding, strict schema checks.

Every frame is one binary WebSocket message holding a msgpack map with a type ``"t"``. A frame
is checked field by field against its type's schema before anything acts on it; a frame that
fails gets a ``WireError`` with a stable reason code (``frame-too-large``, ``not-msgpack``,
``not-a-map``, ``unknown-type``, ``bad-field``, ``missing-field``, ``extra-field``). The
protocol is described, with a worked example, in docs/PROTOCOL.md ("Node-to-node wire").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack
from eth_utils import keccak

# 3: version 2 and the ``revoked`` frame (sealed session revocations); 4: a block carries its
# governance section in the clear (``gov``). The link (TLS, the handshake, this path) is
# version 2's, so a peer of another version is refused as wrong-version
WIRE_VERSION = 4
PATH = "/p2p/v2"  # over TLS (wss://); version 1 (plain ws://) is gone
MAX_FRAME = 16 * 1024 * 1024  # bytes of one encoded frame
MAX_BATCH = 64  # blocks per getBlocks/blocks frame
MAX_TXS = 1024  # sealed transactions per txs frame
MAX_TX_BLOB = 256 * 1024  # one sealed transaction
MAX_REVOCATION_BLOBS = 64  # sealed revocation blobs per revoked frame
MAX_REVOCATION_BLOB = 128 * 1024  # one (gateway.enclave.sessions: 4096 entries, 98 333 bytes)
MAX_QBFT = 5 * 1024 * 1024  # one QBFT message (gateway.consensus.qbft MAX_MESSAGE_BYTES < this)
MAX_SEALS = 256
MAX_GOV_SECTION = 1024 * 1024  # gateway.governance.section.MAX_SECTION_BYTES
MAX_SNAPSHOT_CHUNK = MAX_FRAME - 4096  # one sealed snapshot chunk, with the frame's fields
MAX_SNAPSHOT_LIMIT = 8 * 1024 * 1024  # bytes of rows a getSnapshot may ask for
MAX_CURSOR = 1 + 1024
MAX_TEXT = 1024
MAX_HEIGHT = 2**63 - 1
ROLES = ("validator", "member", "observer")
LINK_DOMAIN = b"coco-gateway/p2p/link/v2"

# Frames an observer may send or receive: no QBFT traffic, no transactions, no secret.
PUBLIC_FRAMES = frozenset({"hello", "status", "getBlocks", "blocks", "refused"})


class WireError(ValueError):
    """A frame that is not a valid frame of this version; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- field checkers

Check = Callable[[Any, str], Any]


def _bad(name: str, expected: str) -> WireError:
    return WireError("bad-field", f"field {name!r}: expected {expected}")


def uint(maximum: int = MAX_HEIGHT) -> Check:
    def check(value: Any, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
            raise _bad(name, f"an integer from 0 to {maximum}")
        return value

    return check


def data(size: int | None = None, limit: int = MAX_FRAME) -> Check:
    def check(value: Any, name: str) -> bytes:
        if not isinstance(value, bytes):
            raise _bad(name, "bytes")
        if size is not None and len(value) != size:
            raise _bad(name, f"{size} bytes, not {len(value)}")
        if len(value) > limit:
            raise _bad(name, f"at most {limit} bytes")
        return value

    return check


def address_or_empty(value: Any, name: str) -> bytes:
    """A node address, or empty bytes (the genesis block has no proposer)."""
    if not isinstance(value, bytes) or len(value) not in (0, 20):
        raise _bad(name, "20 bytes (or none, for the genesis block)")
    return value


def optional(inner: Check) -> Check:
    def check(value: Any, name: str) -> Any:
        return None if value is None else inner(value, name)

    return check


def text(limit: int = MAX_TEXT, choices: tuple[str, ...] | None = None) -> Check:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise _bad(name, f"a string of at most {limit} characters")
        if choices is not None and value not in choices:
            raise _bad(name, "one of " + ", ".join(choices))
        return value

    return check


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "true or false")
    return value


def seq(inner: Check, limit: int) -> Check:
    def check(value: Any, name: str) -> list[Any]:
        if not isinstance(value, list) or len(value) > limit:
            raise _bad(name, f"a list of at most {limit} items")
        return [inner(item, f"{name}[{i}]") for i, item in enumerate(value)]

    return check


def record(schema: dict[str, Check]) -> Check:
    def check(value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _bad(name, "a map")
        return _fields(value, schema, name + ".")

    return check


def anymap(value: Any, name: str) -> dict[str, Any]:
    """A map the enclave checks itself (the join request): string keys, bounded by the frame."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _bad(name, "a map with string keys")
    return value


def _fields(value: dict[Any, Any], schema: dict[str, Check], prefix: str) -> dict[str, Any]:
    extra = [k for k in value if k not in schema]
    if extra:
        raise WireError("extra-field", f"unexpected field {prefix}{extra[0]!s:.40}")
    out: dict[str, Any] = {}
    for key, check in schema.items():
        if key not in value:
            raise WireError("missing-field", f"field {prefix}{key} is missing")
        out[key] = check(value[key], prefix + key)
    return out


# An exported block (gateway/enclave/messages.py, "ExportedBlock"): public header, sealed body
# (None in the public form), and the QBFT round, proposer and commit seals.
BLOCK = record(
    {
        "number": uint(),
        "hash": data(32),
        "header": data(limit=64 * 1024),
        "body": optional(data()),
        "round": uint(2**31 - 1),
        "proposer": address_or_empty,
        "seals": seq(data(65), MAX_SEALS),
        # v4: the block's governance section in the clear (public records; None on a chain
        # without governance): observers follow the governance state from it
        "gov": optional(data(limit=MAX_GOV_SECTION)),
    }
)

SCHEMAS: dict[str, dict[str, Check]] = {
    "hello": {
        "v": uint(2**16),
        "chainId": uint(),
        "genesis": data(32),
        "role": text(choices=ROLES),
        "address": optional(data(20)),
        "nonce": data(32),
    },
    "auth": {"sig": data(65), "binding": data(32)},
    "qbft": {"m": data(limit=MAX_QBFT), "s": optional(data())},
    "txs": {"blobs": seq(data(limit=MAX_TX_BLOB), MAX_TXS)},
    # sealed session revocations (docs/PROTOCOL.md, "Session revocation"): members, validators
    "revoked": {"blobs": seq(data(limit=MAX_REVOCATION_BLOB), MAX_REVOCATION_BLOBS)},
    "status": {"height": uint(), "finalized": uint(), "state": text(64)},
    "getBlocks": {"start": uint(), "count": uint(MAX_BATCH), "public": boolean},
    "blocks": {"items": seq(BLOCK, MAX_BATCH)},
    "join": {"request": anymap},
    "joined": {"wrapped": data(limit=4096)},
    "refused": {"reason": text(64), "message": text()},
    # sealed snapshots (docs/PROTOCOL.md, "Sealed snapshot v1"): members and validators only
    "getSnapshot": {
        "head": optional(data(32)),
        "cursor": data(limit=MAX_CURSOR),
        "limit": uint(MAX_SNAPSHOT_LIMIT),
    },
    "snapshot": {
        "height": uint(),
        "hash": data(32),
        "next": optional(data(limit=MAX_CURSOR)),
        "total": uint(),
        "chunk": data(limit=MAX_SNAPSHOT_CHUNK),
    },
}


def decode(frame: bytes) -> dict[str, Any]:
    """One received frame, checked against its type's schema."""
    if len(frame) > MAX_FRAME:
        raise WireError("frame-too-large", f"{len(frame)} bytes exceeds {MAX_FRAME}")
    try:
        value = msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise WireError(
            "not-msgpack", f"the frame does not decode ({type(exc).__name__})"
        ) from None
    if not isinstance(value, dict):
        raise WireError("not-a-map", "a frame is a msgpack map with a type 't'")
    kind = value.get("t")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise WireError("unknown-type", f"frame type {kind!r:.40} is not a v{WIRE_VERSION} frame")
    body = {k: v for k, v in value.items() if k != "t"}
    return {"t": kind, **_fields(body, schema, "")}


def encode(frame: dict[str, Any]) -> bytes:
    """A frame to send; checked as the receiver will check it (a bug here is ours)."""
    out = msgpack.packb(frame, use_bin_type=True)
    decode(out)
    return bytes(out)


def frame(kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": kind, **fields}


def refused(reason: str, message: str) -> dict[str, Any]:
    return frame("refused", reason=reason, message=message[:MAX_TEXT])


def public_block(block: dict[str, Any]) -> dict[str, Any]:
    """An exported block in the form observers get: no sealed body."""
    return {**block, "body": None}


def frame_hash(kind: str, payload: bytes) -> bytes:
    """What duplicates are recognised by (a forwarded transaction, a QBFT message)."""
    return keccak(kind.encode() + b"\x00" + payload)


def qbft_height(message: bytes) -> int | None:
    """The height a QBFT message (a ``qbft`` frame's ``m``) is about, read without checking
    its signature; None when it does not decode (the enclave refuses it with its reason)."""
    from gateway.consensus.qbft.messages import MessageFormatError, decode_message

    try:
        return int(decode_message(message).height)
    except (MessageFormatError, ValueError, TypeError):
        return None


def link_digest(transcript: bytes) -> bytes:
    """What a link's auth signature signs (SignLink in the enclave signs the same)."""
    return keccak(LINK_DOMAIN + transcript)


def transcript(
    genesis: bytes,
    client_nonce: bytes,
    server_nonce: bytes,
    server_cert: bytes,
    address: bytes,
    side: str,
) -> bytes:
    """The handshake transcript one side signs. ``server_cert`` is the SHA-256 of the TLS
    server's certificate as this side saw it (the channel binding: a relay that terminates
    TLS shows the client another certificate, so the two sides' transcripts differ); the
    side's own address and its side name make a signature useless on any other link, or
    reflected back to its maker."""
    return genesis + client_nonce + server_nonce + server_cert + address + side.encode()


class Seen:
    """A bounded set of recently seen hashes (oldest forgotten first)."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes) -> bool:
        """Record ``key``; False if it was already there (a duplicate)."""
        if key in self._items:
            self._items.move_to_end(key)
            return False
        self._items[key] = None
        if len(self._items) > self.limit:
            self._items.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._items)
