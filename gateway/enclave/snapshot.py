"""Sealed snapshots: a node far behind starts from a peer's finalized state (issue 8, item 9).

Export (``ExportSnapshot``, the source enclave): a *session* pins the ledger as of one instant
with a SQLite read transaction on its own connection (``gateway.ledger.SnapshotView``), so
the state at the session's head H stays exactly readable while the node keeps committing.
Chunks hand out, in order, every ``kv`` row as stored (blinded key, value sealed under the
consortium's storage key: the enclave does not open them, nobody outside it can) and then
every canonical block row up to H (public header, sealed body, round, proposer, seals).

Import (``ImportSnapshot``, the receiving enclave of the same consortium): each chunk is
opened (it is sealed as a whole under a key derived from the consortium secret, so a chunk
not made by one of the consortium's enclaves, or altered on the way, does not open), checked
(its place in the sequence, the shape of every row) and staged in the ledger's
``snapshot_kv`` / ``snapshot_blocks`` tables with a record of how far it got, in one SQLite
transaction per chunk: a restart resumes from that record, or starts over when no peer
still serves that session. ``FinishSnapshot`` checks the whole (every row received; the
block rows form one hash-linked chain from this node's own genesis to H; H carries a
quorum of validators' commit seals; H's header, py-evm's canonical head record and H's
state root resolve among the staged rows, opened with the storage key) and only then moves
it into the ledger in one transaction and reopens the engine at H.

Sealed snapshot chunk, version 1 (docs/PROTOCOL.md, "Sealed snapshot v1")::

    key       = HKDF-SHA256(consortium secret, info=b"coco-gateway/snapshot/v1")
    blob      = 0x01 || nonce (12) || AES-256-GCM(key, nonce, plaintext, ad)
    ad        = b"coco-gateway/snapshot/v1" || chain id (32 bytes, big-endian) || genesis hash
    plaintext = msgpack {"height": H, "hash": H's hash, "sealed": bool, "from": cursor,
                         "next": cursor or nil, "kv": [[key, value], ...],
                         "blocks": [[number, hash, header, body or nil, round, proposer,
                                     [seal, ...]], ...],
                         "totals": [kv rows, block rows] (last chunk) or nil}

A cursor is ``b""`` (the start), ``b"k" || stored key`` (after that kv row) or
``b"b" || number (8 bytes, big-endian)`` (after that block).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.enclave.storage import OVERHEAD, VERSION
from gateway.errors import SnapshotRefused
from gateway.ledger import CommittedBlock, Ledger, LedgerError, SnapshotView

log = logging.getLogger("gateway.enclave.snapshot")

CHUNK_VERSION = 1
CHUNK_VERSION_2 = 2  # 0x02 || ledger generation (4) || nonce || ct: after a rotation
SNAPSHOT_INFO = b"coco-gateway/snapshot/v1"
STATE_VERSION = 1
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024  # rows per chunk, before sealing
MAX_CHUNK_BYTES = 8 * 1024 * 1024  # a sealed chunk travels in one 16 MiB p2p frame
MIN_CHUNK_BYTES = 4096
# a chunk holds at least one row: one block with a large sealed body may pass the limit, up
# to the p2p frame (16 MiB) that carries it
MAX_SEALED_CHUNK = 16 * 1024 * 1024 - 4096
MAX_CHUNK_ROWS = 100_000
MAX_CHUNK_BLOCKS = 4096
MAX_SESSIONS = 2  # read transactions held open for exports at once
SESSION_IDLE_SECONDS = 120.0  # an export session nobody asked for this long is closed
SESSION_SHARE_SECONDS = 30.0  # a new request within this of a session's start shares it
MAX_HEADER = 64 * 1024
MAX_SEALS = 256
CURSOR_START = b""


def _ad(chain_id: int, genesis: bytes, generation: int = 0) -> bytes:
    ad = SNAPSHOT_INFO + chain_id.to_bytes(32, "big") + genesis
    return ad if generation == 0 else ad + generation.to_bytes(4, "big")


def block_bytes(block: CommittedBlock) -> int:
    """A block row's size as progress counts it (the same as ``SnapshotView.block_bytes``)."""
    return len(block.header) + len(block.body or b"") + 67 * len(block.seals) + 80


def seal_chunk(
    key: bytes, chain_id: int, genesis: bytes, chunk: dict[str, Any], generation: int = 0
) -> bytes:
    """A sealed chunk: v1 under ledger generation 0's snapshot key; v2, which names its
    generation (also in the associated data), under a rotated generation's key."""
    plaintext = msgpack.packb(chunk, use_bin_type=True)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, _ad(chain_id, genesis, generation))
    if generation == 0:
        return bytes([CHUNK_VERSION]) + nonce + sealed
    return bytes([CHUNK_VERSION_2]) + generation.to_bytes(4, "big") + nonce + sealed


def _refuse(message: str, reason: str = "bad-snapshot-chunk") -> SnapshotRefused:
    return SnapshotRefused(reason, message)


def _int(value: Any, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _refuse(f"the snapshot chunk's {what} is not an integer in range")
    return value


def _bytes(
    value: Any, what: str, sizes: tuple[int, ...] | None = None, limit: int = 1 << 24
) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit or (sizes and len(value) not in sizes):
        raise _refuse(f"the snapshot chunk's {what} is not bytes of the right size")
    return value


@dataclass(frozen=True)
class Chunk:
    """One opened and checked chunk."""

    height: int
    hash: bytes
    sealed: bool
    start: bytes
    next: bytes | None
    kv: list[tuple[bytes, bytes]]
    blocks: list[CommittedBlock]
    totals: tuple[int, int] | None

    @property
    def size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.kv) + sum(block_bytes(b) for b in self.blocks)


def open_chunk(
    key: bytes | Callable[[int], bytes], chain_id: int, genesis: bytes, blob: Any
) -> Chunk:
    """Open a sealed chunk and check its shape; ``SnapshotRefused`` ("bad-snapshot-chunk"
    when it does not open or is malformed, "bad-snapshot-row" for a row that cannot be a
    row of a sealed ledger) otherwise."""
    if not isinstance(blob, bytes) or len(blob) < 1 + 12 + 16 or len(blob) > MAX_SEALED_CHUNK:
        raise _refuse("the snapshot chunk is missing, too short or too long")
    from gateway.enclave.keys import MissingGeneration

    generation, offset = 0, 1
    if blob[0] == CHUNK_VERSION_2 and len(blob) >= 5 + 12 + 16:
        generation, offset = int.from_bytes(blob[1:5], "big"), 5
    elif blob[0] != CHUNK_VERSION:
        raise _refuse(f"unknown snapshot chunk version {blob[0]}")
    if callable(key):
        try:
            key = key(generation)
        except MissingGeneration as exc:
            raise _refuse(f"the snapshot chunk does not open: {exc}") from None
    try:
        plaintext = AESGCM(key).decrypt(
            blob[offset : offset + 12], blob[offset + 12 :], _ad(chain_id, genesis, generation)
        )
    except InvalidTag:
        raise _refuse(
            "the snapshot chunk does not open: altered on the way, or sealed under another "
            "consortium's secret, chain or genesis"
        ) from None
    try:
        body = msgpack.unpackb(plaintext, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types on malformed input
        raise _refuse("the snapshot chunk is not valid msgpack") from None
    fields = {"height", "hash", "sealed", "from", "next", "kv", "blocks", "totals"}
    if not isinstance(body, dict) or set(body) != fields:
        raise _refuse("the snapshot chunk is not a map of the v1 fields")
    height = _int(body["height"], "height", 1)
    head_hash = _bytes(body["hash"], "hash", (32,))
    sealed = body["sealed"]
    if not isinstance(sealed, bool):
        raise _refuse("the snapshot chunk's sealed flag is not a boolean")
    start = check_cursor(body["from"])
    nxt = None if body["next"] is None else check_cursor(body["next"])
    kv_raw, blocks_raw = body["kv"], body["blocks"]
    if not isinstance(kv_raw, list) or len(kv_raw) > MAX_CHUNK_ROWS:
        raise _refuse("the snapshot chunk's kv rows are not a bounded list")
    if not isinstance(blocks_raw, list) or len(blocks_raw) > MAX_CHUNK_BLOCKS:
        raise _refuse("the snapshot chunk's block rows are not a bounded list")
    kv = check_rows(kv_raw, sealed)
    blocks = [_block_row(row, height) for row in blocks_raw]
    totals = None
    if body["totals"] is not None:
        t = body["totals"]
        if not isinstance(t, list) or len(t) != 2:
            raise _refuse("the snapshot chunk's totals are not [kv rows, block rows]")
        totals = (_int(t[0], "kv total"), _int(t[1], "block total"))
    if (totals is None) != (nxt is not None):
        raise _refuse("only the last snapshot chunk (no next cursor) carries the totals")
    _check_order(start, nxt, kv, blocks)
    return Chunk(height, head_hash, sealed, start, nxt, kv, blocks, totals)


def check_cursor(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise SnapshotRefused("bad-cursor", "a snapshot cursor is bytes")
    if value == CURSOR_START:
        return value
    if value[:1] == b"k" and 2 <= len(value) <= 1 + 1024:
        return value
    if value[:1] == b"b" and len(value) == 9:
        return value
    raise SnapshotRefused("bad-cursor", "a snapshot cursor is b'', b'k' + key or b'b' + number")


def check_rows(rows: list[Any], sealed: bool) -> list[tuple[bytes, bytes]]:
    """kv rows as a sealed ledger stores them: a 32-byte blinded key (HMAC-SHA256) and a
    value in the storage sealer's format (version byte, key id, nonce, ciphertext and tag);
    in key order, no key twice. A plaintext ledger's rows are only bounded."""
    out: list[tuple[bytes, bytes]] = []
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 2
            or not isinstance(row[0], bytes)
            or not isinstance(row[1], bytes)
        ):
            raise _refuse("a kv row is not [key bytes, value bytes]", "bad-snapshot-row")
        key, value = row
        if sealed and (len(key) != 32 or len(value) < OVERHEAD or value[:1] != VERSION):
            raise _refuse(
                f"kv row 0x{key[:32].hex()} is not a row of a sealed ledger (a 32-byte blinded "
                "key and a sealed value)",
                "bad-snapshot-row",
            )
        if not sealed and not (0 < len(key) <= 1024):
            raise _refuse("a plaintext kv row's key is empty or too long", "bad-snapshot-row")
        if out and key <= out[-1][0]:
            raise _refuse("the chunk's kv rows are not in key order", "bad-snapshot-row")
        out.append((key, value))
    return out


def _block_row(row: Any, height: int) -> CommittedBlock:
    if not isinstance(row, list) or len(row) != 7:
        raise _refuse("a block row is not [number, hash, header, body, round, proposer, seals]")
    number, block_hash, header, body, round_, proposer, seals = row
    seals_ok = isinstance(seals, list) and len(seals) <= MAX_SEALS
    if not seals_ok or not all(isinstance(s, bytes) and len(s) == 65 for s in seals):
        raise _refuse("a block row's seals are not a list of 65-byte seals")
    return CommittedBlock(
        number=_int(number, "block number", 0, height),
        hash=_bytes(block_hash, "block hash", (32,)),
        header=_bytes(header, "header", limit=MAX_HEADER),
        seals=tuple(seals),
        proposer=_bytes(proposer, "proposer", (0, 20)),
        round=_int(round_, "round", 0, 2**31 - 1),
        body=None if body is None else _bytes(body, "body"),
    )


def _check_order(
    start: bytes, nxt: bytes | None, kv: list[tuple[bytes, bytes]], blocks: list[CommittedBlock]
) -> None:
    """A chunk covers the rows after ``start`` up to ``nxt``: kv rows first, then blocks."""
    if kv and blocks:
        raise _refuse("a chunk holds kv rows or block rows, not both")
    if kv:
        if start[:1] == b"b":
            raise _refuse("kv rows after the block rows began")
        if start and kv[0][0] <= start[1:]:
            raise _refuse("the chunk's kv rows do not follow its start cursor")
        if nxt != b"k" + kv[-1][0]:
            raise _refuse("the chunk's next cursor is not its last kv row")
    if blocks:
        numbers = [b.number for b in blocks]
        after = int.from_bytes(start[1:], "big") if start[:1] == b"b" else -1
        if numbers != list(range(after + 1, after + 1 + len(numbers))):
            raise _refuse("the chunk's block rows are not the next blocks in order")
        if nxt != b"b" + numbers[-1].to_bytes(8, "big"):
            raise _refuse("the chunk's next cursor is not its last block row")
    if not kv and not blocks and nxt is not None:
        raise _refuse("only the last chunk is empty")


# --------------------------------------------------------------------------- export


class Exporter:
    """The export sessions of one enclave: at most ``MAX_SESSIONS`` pinned views, by head
    hash, closed after ``SESSION_IDLE_SECONDS`` without a request."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.sessions: OrderedDict[bytes, tuple[SnapshotView, float, float]] = OrderedDict()
        self._lock = threading.Lock()  # exports run under the enclave lock, expiry under either

    def expire(self, now: float) -> None:
        """Close the sessions idle too long (their read transactions hold the WAL back);
        called on every export and by the enclave's block operations."""
        if not self.sessions:
            return
        with self._lock:
            self._expire(now)

    def _expire(self, now: float) -> None:
        for head, (view, _, used) in list(self.sessions.items()):
            if now - used > SESSION_IDLE_SECONDS:
                view.close()
                del self.sessions[head]
                log.info("snapshot export of block %d closed (idle)", view.height)

    def session(self, head: bytes | None, now: float) -> SnapshotView:
        with self._lock:
            return self._session(head, now)

    def _session(self, head: bytes | None, now: float) -> SnapshotView:
        self._expire(now)
        if head is not None:
            entry = self.sessions.get(head)
            if entry is None:
                raise SnapshotRefused(
                    "snapshot-expired",
                    f"no snapshot export of block 0x{head.hex()} is open here any more: "
                    "start a new one",
                )
            view, started, _ = entry
            self.sessions[head] = (view, started, now)
            self.sessions.move_to_end(head)
            return view
        for view, started, _ in reversed(self.sessions.values()):
            if now - started < SESSION_SHARE_SECONDS:
                self.sessions[view.hash] = (view, started, now)
                return view
        if len(self.sessions) >= MAX_SESSIONS:
            oldest, (view, _, used) = next(iter(self.sessions.items()))
            if now - used < 5.0:
                raise SnapshotRefused(
                    "snapshot-busy",
                    f"this node serves {MAX_SESSIONS} snapshot exports already; try later",
                )
            view.close()
            del self.sessions[oldest]
        try:
            view = self.ledger.snapshot_view()
        except LedgerError as exc:
            raise SnapshotRefused("no-snapshot", str(exc)) from None
        if view.hash in self.sessions:  # the head did not move since that session began
            view.close()
            old, started, _ = self.sessions[view.hash]
            self.sessions[view.hash] = (old, started, now)
            return old
        self.sessions[view.hash] = (view, now, now)
        log.info(
            "snapshot export of block %d 0x%s opened (%d kv rows, %.1f MB)",
            view.height,
            view.hash.hex()[:16],
            view.kv_rows,
            view.total_bytes / 1e6,
        )
        return view

    def close(self) -> None:
        with self._lock:
            for view, _, _ in self.sessions.values():
                view.close()
            self.sessions.clear()

    def export(
        self,
        *,
        key: bytes,
        generation: int = 0,
        chain_id: int,
        genesis: bytes,
        head: bytes | None,
        cursor: bytes,
        limit: int,
    ) -> dict[str, Any]:
        cursor = check_cursor(cursor)
        if head is None and cursor != CURSOR_START:
            raise SnapshotRefused("bad-cursor", "a new snapshot export starts at cursor b''")
        limit = max(
            MIN_CHUNK_BYTES, min(int(limit) if limit else DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES)
        )
        view = self.session(head, time.monotonic())
        kv: list[tuple[bytes, bytes]] = []
        blocks: list[CommittedBlock] = []
        nxt: bytes | None = None
        totals = None
        if cursor[:1] != b"b":
            kv = view.kv_after(cursor[1:], limit, MAX_CHUNK_ROWS)
            if kv:
                nxt = b"k" + kv[-1][0]
        if not kv:  # the kv rows are done: the block rows, then the totals
            after = int.from_bytes(cursor[1:], "big") if cursor[:1] == b"b" else -1
            blocks = view.blocks_after(after, limit, MAX_CHUNK_BLOCKS)
            if blocks:
                nxt = b"b" + blocks[-1].number.to_bytes(8, "big")
            else:
                totals = [int(view.kv_rows), view.height + 1]
        chunk = {
            "height": view.height,
            "hash": view.hash,
            "sealed": self.ledger.sealed,
            "from": cursor,
            "next": nxt,
            "kv": [[k, v] for k, v in kv],
            "blocks": [
                [b.number, b.hash, b.header, b.body, b.round, b.proposer, list(b.seals)]
                for b in blocks
            ],
            "totals": totals,
        }
        blob = seal_chunk(key, chain_id, genesis, chunk, generation)
        if nxt is None:
            log.info("snapshot export of block %d: last chunk sent", view.height)
        return {
            "height": view.height,
            "hash": view.hash,
            "chunk": blob,
            "next": nxt,
            "total": view.total_bytes,
        }


# --------------------------------------------------------------------------- import state


def encode_state(state: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb({"v": STATE_VERSION, **state}, use_bin_type=True))


def decode_state(blob: bytes | None) -> dict[str, Any] | None:
    """The staged snapshot's record, or None (none staged, or unreadable: start over)."""
    if blob is None:
        return None
    try:
        state = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types
        return None
    if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
        return None
    return state
