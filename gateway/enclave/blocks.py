"""A block's life cycle inside the enclave: build or verify a candidate, then commit it.

Nothing reaches the ledger until consensus has decided a block. The three steps:

* ``prepare_candidate`` (the proposer): pick pool transactions, execute them on the head,
  let py-evm persist the block into the ledger's kv buffer, capture that write set and
  **discard the buffer**. The result is a ``Candidate`` held in memory (keyed by block hash):
  the header, the write set, the sealed body, the included and dropped transactions.
* ``verify_candidate`` (every other validator, and a follower importing a finalized block):
  open a sealed body made by another enclave and check it under the chain's validation rule
  ("attested-diff": the write set is content-addressed, holds this header, and resolves its
  state root; "re-execute": run the transactions on the parent with the header's fields and
  compare the hash). Also a ``Candidate``; nothing committed.
* ``commit_candidate`` (on a decision, or after ``import_finalized`` checked a quorum of
  commit seals): put the candidate's write set into the kv buffer and commit it with the
  block row (QBFT round, proposer, commit seals) and the canonical index in one SQLite
  transaction; prune the pool; drop the other candidates of that height.

Sealed block body, version 1 (docs/PROTOCOL.md, "Sealed block body v1")::

    key       = HKDF-SHA256(consortium secret, info=b"coco-gateway/block-body/v1")
    blob      = 0x01 || nonce (12) || AES-256-GCM(key, nonce, plaintext, ad)
    ad        = b"coco-gateway/block-body/v1" || chain id (32 bytes, big-endian) || block hash
    plaintext = msgpack {"txs": [raw signed transaction, ...],
                         "diff": [[key, value or None], ...]}

``diff`` is the block's write set into py-evm's database: trie nodes, code, the header, the
block's transactions and receipts, and lookups.

Sealed block body, version 2 (a block sealed under ledger secret generation g >= 1, after a
``rotate_ledger_secret``; docs/PROTOCOL.md, "Sealed block body v2")::

    key       = HKDF-SHA256(generation g's secret, info=b"coco-gateway/block-body/v2")
    blob      = 0x02 || g (4 bytes, big-endian) || nonce (12) || AES-256-GCM(key, nonce, pt, ad)
    ad        = b"coco-gateway/block-body/v2" || chain id (32) || g (4) || block hash
    plaintext = as v1

Block n is sealed under the ledger generation of the governance state after block n - 1
(generation 0: v1, as before any rotation); a verifier refuses a body of another
generation ("bad-body").
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
import rlp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth.constants import BLANK_ROOT_HASH
from eth.db.schema import SchemaV1
from eth.vm.header import HeaderSedes
from eth_utils import keccak
from trie import HexaryTrie

from gateway.consensus.qbft.messages import Block, commit_seal_digest, recover_signer
from gateway.consensus.qbft.validation import quorum
from gateway.enclave import govern
from gateway.errors import BlockRefused, RpcError
from gateway.execution.building import BlockSelection, BuildAborted, PreparedBlock
from gateway.ledger import CommittedBlock

if TYPE_CHECKING:
    from gateway.enclave.govern import Governance
    from gateway.enclave.keys import KeyRing
    from gateway.execution.engine import Engine
    from gateway.ledger import Ledger

log = logging.getLogger("gateway.enclave.blocks")

BODY_VERSION = 1
BODY_INFO = b"coco-gateway/block-body/v1"
BODY_VERSION_2 = 2
BODY_INFO_2 = b"coco-gateway/block-body/v2"
MAX_GENERATION = 2**32 - 1
VALIDATION_RULES = ("attested-diff", "re-execute")
# the most candidates kept at once (several rounds of one height, a few heights ahead)
MAX_CANDIDATES = 64
# a sealed body travels in one p2p frame (16 MiB)
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BUILD_ATTEMPTS = 16
EXTRA_DATA = b"coco-gateway"


@dataclass
class Candidate:
    """A block built or verified here, not committed.

    ``writes`` is the block's write set into py-evm's database (py-evm key -> value, None for
    a delete), applied as is on commit. ``body`` is the sealed body v1 (what travels as the
    proposal's sidecar and in ``ExportedBlock["body"]``). ``included`` are the hashes of the
    block's transactions in order; ``dropped`` the pool transactions found invalid while
    building (proposer only), with the reason, which leave the pool on commit.
    """

    number: int
    hash: bytes
    parent_hash: bytes
    header_rlp: bytes
    body: bytes
    writes: dict[bytes, bytes | None]
    included: list[bytes]
    dropped: list[tuple[bytes, str]] = field(default_factory=list)
    # the executed block and receipts when this enclave ran it (build, re-execute); None
    # when it was accepted on its attested diff
    prepared: Any = None
    tx_bytes: int = 0  # the encoded size of the block's transactions (for its RPC shape)
    # the block's governance (gateway.enclave.govern.Outcome): its section and the state
    # after it; None on a chain without governance
    governance: Any = None


# --------------------------------------------------------------------------- sealed body v1


def _body_ad(chain_id: int, block_hash: bytes, generation: int = 0) -> bytes:
    if generation == 0:
        return BODY_INFO + chain_id.to_bytes(32, "big") + block_hash
    return BODY_INFO_2 + chain_id.to_bytes(32, "big") + generation.to_bytes(4, "big") + block_hash


def seal_body(
    key: bytes,
    chain_id: int,
    block_hash: bytes,
    txs: list[bytes],
    writes: dict[bytes, bytes | None],
    gov: list[bytes] | None = None,
    generation: int = 0,
) -> bytes:
    """The sealed body of a block (module docstring): v1 under generation 0, v2 (which
    names its generation) after a rotation; ``key`` is that generation's body key;
    ``gov``: the block's governance section (its records), under the key "gov" only when
    there are any."""
    content: dict[str, Any] = {"txs": list(txs), "diff": [[k, v] for k, v in writes.items()]}
    if gov:
        content["gov"] = list(gov)
    plaintext = msgpack.packb(content, use_bin_type=True)
    nonce = secrets.token_bytes(12)
    ad = _body_ad(chain_id, block_hash, generation)
    if generation == 0:
        return bytes([BODY_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, ad)
    if not 1 <= generation <= MAX_GENERATION:
        raise ValueError(f"ledger generation {generation} out of range")
    return (
        bytes([BODY_VERSION_2])
        + generation.to_bytes(4, "big")
        + nonce
        + AESGCM(key).encrypt(nonce, plaintext, ad)
    )


def body_generation(blob: bytes) -> int:
    """The ledger secret generation a sealed body names (v1: 0); ``BlockRefused`` "bad-body"
    for an unknown version or a blob too short."""
    if not isinstance(blob, bytes) or len(blob) < 1 + 12 + 16:
        raise BlockRefused("bad-body", "the sealed block body is missing or too short")
    if blob[0] == BODY_VERSION:
        return 0
    if blob[0] == BODY_VERSION_2 and len(blob) >= 5 + 12 + 16:
        generation = int.from_bytes(blob[1:5], "big")
        if generation >= 1:
            return generation
    raise BlockRefused("bad-body", f"unknown sealed block body version {blob[0]}")


BodyKey = bytes | Callable[[int], bytes]


def open_body(
    key: BodyKey, chain_id: int, block_hash: bytes, blob: bytes
) -> tuple[list[bytes], dict[bytes, bytes | None]]:
    """The transactions and the write set of a sealed body, or ``BlockRefused("bad-body")``
    when it does not open under this consortium's key for this block, or is malformed."""
    txs, writes, _gov = open_body_full(key, chain_id, block_hash, blob)
    return txs, writes


def open_body_full(
    key: BodyKey, chain_id: int, block_hash: bytes, blob: bytes
) -> tuple[list[bytes], dict[bytes, bytes | None], list[bytes]]:
    """``open_body`` and the body's governance section (records; empty when absent).
    ``key``: the body key, or a function from the generation the body names to its key
    (``KeyRing.body_key_of``)."""
    from gateway.enclave.keys import MissingGeneration

    if not isinstance(blob, bytes) or len(blob) < 1 + 12 + 16 or len(blob) > MAX_BODY_BYTES:
        raise BlockRefused("bad-body", "the sealed block body is missing, too short or too long")
    generation = body_generation(blob)
    if callable(key):
        try:
            key = key(generation)
        except MissingGeneration as exc:
            raise BlockRefused("bad-body", f"the sealed block body does not open: {exc}") from None
    start = 1 if generation == 0 else 5
    try:
        plaintext = AESGCM(key).decrypt(
            blob[start : start + 12], blob[start + 12 :], _body_ad(chain_id, block_hash, generation)
        )
    except InvalidTag:
        raise BlockRefused(
            "bad-body",
            "the sealed block body does not open: altered, sealed for another block, or "
            "under another consortium's secret",
        ) from None
    try:
        body = msgpack.unpackb(plaintext, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several types for malformed input
        raise BlockRefused("bad-body", "the block body is not valid msgpack") from None
    if not isinstance(body, dict) or set(body) not in ({"txs", "diff"}, {"txs", "diff", "gov"}):
        raise BlockRefused("bad-body", "the block body is not a map of txs, diff (and gov)")
    gov = body.get("gov", [])
    if (
        not isinstance(gov, list)
        or not all(isinstance(r, bytes) for r in gov)
        or ("gov" in body and not gov)
    ):
        raise BlockRefused("bad-body", "the block body's gov is not a non-empty list of records")
    txs, diff = body["txs"], body["diff"]
    if not isinstance(txs, list) or not all(isinstance(t, bytes) for t in txs):
        raise BlockRefused("bad-body", "the block body's txs are not a list of byte strings")
    writes: dict[bytes, bytes | None] = {}
    if not isinstance(diff, list):
        raise BlockRefused("bad-body", "the block body's diff is not a list")
    for row in diff:
        if (
            not isinstance(row, list)
            or len(row) != 2
            or not isinstance(row[0], bytes)
            or not (row[1] is None or isinstance(row[1], bytes))
        ):
            raise BlockRefused("bad-body", "a diff row is not [key bytes, value bytes or nil]")
        if row[0] in writes:
            raise BlockRefused("bad-diff", "the diff writes a key twice")
        writes[row[0]] = row[1]
    return txs, writes, gov


def tx_root(raws: list[bytes]) -> bytes:
    """The transactions root of a block with these signed transactions (as sent)."""
    trie = HexaryTrie({})
    for index, raw in enumerate(raws):
        trie[rlp.encode(index)] = raw
    return bytes(trie.root_hash)


def check_diff(
    writes: dict[bytes, bytes | None],
    header_rlp: bytes,
    tx_hashes: list[bytes],
    present: Callable[[bytes], bool],
) -> None:
    """The "attested-diff" checks of a write set for the block ``header_rlp`` whose
    transactions have ``tx_hashes``:

    * the header row, under the block hash, is exactly ``header_rlp`` ("header-mismatch");
    * every 32-byte key is content-addressed (a trie node, code, a header): it is written
      with a value whose keccak256 is the key, and never deleted ("bad-diff");
    * every other key is one of py-evm's lookups for this block: its number, its score,
      the canonical head (which must name this block), the chain-gap records, and its
      transactions' locations ("bad-diff");
    * the header's state root resolves: the root node is in the write set or already stored
      (``present``), or it is the empty trie's root ("state-root-mismatch").
    """
    header = decode_header(header_rlp)
    block_hash = bytes(header.hash)
    if writes.get(block_hash) != header_rlp:
        raise BlockRefused(
            "header-mismatch", "the diff does not hold the proposed header under its hash"
        )
    allowed = {
        SchemaV1.make_block_number_to_hash_lookup_key(header.block_number),
        SchemaV1.make_block_hash_to_score_lookup_key(block_hash),  # type: ignore[arg-type]
        SchemaV1.make_canonical_head_hash_lookup_key(),
        SchemaV1.make_header_chain_gaps_lookup_key(),
        SchemaV1.make_chain_gaps_lookup_key(),
        *(SchemaV1.make_transaction_hash_to_block_lookup_key(h) for h in tx_hashes),  # type: ignore[arg-type]
    }
    for key, value in writes.items():
        if len(key) == 32:
            if value is None:
                raise BlockRefused(
                    "bad-diff", f"the diff deletes the content-addressed row 0x{key.hex()}"
                )
            if keccak(value) != key:
                raise BlockRefused(
                    "bad-diff",
                    f"the diff's row 0x{key.hex()} is not content-addressed: its value "
                    "does not hash to its key",
                )
        elif key not in allowed or value is None:
            raise BlockRefused("bad-diff", f"the diff writes a row the block may not: {key[:40]!r}")
    lookups = (
        (SchemaV1.make_canonical_head_hash_lookup_key(), block_hash),
        (
            SchemaV1.make_block_number_to_hash_lookup_key(header.block_number),
            rlp.encode(block_hash),
        ),
    )
    for key, expected in lookups:
        if writes.get(key) != expected:
            raise BlockRefused("bad-diff", f"the diff's {key.decode()} does not name this block")
    state_root = bytes(header.state_root)
    if state_root != BLANK_ROOT_HASH and state_root not in writes and not present(state_root):
        raise BlockRefused(
            "state-root-mismatch",
            f"the header's state root 0x{state_root.hex()} does not resolve in the state "
            "database with the diff applied",
        )


def decode_header(header_rlp: bytes) -> Any:
    """A header from its RLP, which must be its canonical encoding ("bad-header")."""
    if not isinstance(header_rlp, bytes) or not header_rlp or len(header_rlp) > 64 * 1024:
        raise BlockRefused("bad-header", "the block header is missing or too long")
    try:
        header = rlp.decode(header_rlp, sedes=HeaderSedes)
        encoded = rlp.encode(header)
    except Exception:  # rlp raises several types for malformed input
        raise BlockRefused("bad-header", "the block header is not a valid RLP header") from None
    if encoded != header_rlp:
        raise BlockRefused("bad-header", "the block header is not canonically encoded")
    return header


# --------------------------------------------------------------------------- the life cycle


class BlockLifecycle:
    """The enclave's block methods (mixed into ``gateway.enclave.core.Enclave``).

    Callers hold the enclave's build lock (one block operation at a time); the methods take
    the enclave lock themselves where they touch the pool, the head or the ledger.

    Attributes the enclave sets: ``consensus_validators`` (the QBFT validator set, default
    ``(self.validator,)``) and ``validation_rule`` ("attested-diff" or "re-execute").
    """

    consensus_validators: tuple[bytes, ...]
    governance: Governance | None
    validation_rule: str
    validator: bytes
    engine: Engine
    ledger: Ledger
    keys: KeyRing
    _lock: threading.RLock
    _candidates: OrderedDict[bytes, Candidate]
    strict: bool

    def _forget_dropped(self, dropped: list[tuple[bytes, str]]) -> None:
        raise NotImplementedError  # the enclave's

    def _issue_recovery_shares(self) -> None:
        raise NotImplementedError  # the enclave's (gateway.enclave.recovering)

    def _adopt_generation(self, generation: int, secret: bytes) -> None:
        raise NotImplementedError  # the enclave's (gateway.enclave.core): seal it, key it

    def _rotation_maker(self, height: int) -> Any:
        raise NotImplementedError  # the enclave's: makes a ledger secret record

    def _rotated_secret(self, outcome: Any, height: int) -> tuple[int, bytes | None]:
        raise NotImplementedError  # the enclave's: opens this node's share

    def _learn_join_keys(self, records: list[bytes]) -> None:
        raise NotImplementedError  # the enclave's: node keys for later rotations

    def sealing_generation(self) -> int:
        """The ledger secret generation the next block is sealed under: the head's
        governance state's (0 on a chain without governance)."""
        return 0 if self.governance is None else self.governance.state.ledger_generation

    def validators_for(self, height: int) -> tuple[bytes, ...]:
        """The validator set that decides block ``height``: the governance state's schedule
        (docs/GOVERNANCE.md), or the terms' static set on a chain without governance."""
        if self.governance is not None:
            return self.governance.validators_at(height)
        return self.consensus_validators

    # ------------------------------------------------------------------ build
    def prepare_candidate(
        self, timestamp: int, *, allow_empty: bool = True, budget: float | None = None
    ) -> Candidate | None:
        """Build the next block on the head from the pool: execute, capture the kv write set,
        discard the buffer, keep and return the candidate. Nothing is committed.

        None when there is nothing to build (no executable transaction and not
        ``allow_empty``). A transaction py-evm refuses mid-block is dropped from the pool and
        the block rebuilt without it (as BuildBlock always did). ``budget``: seconds of
        transaction execution, from now, after which no further transaction is started (the
        rest wait for a later block); None: the block fills up to its gas limit.
        """
        deadline = None if budget is None else time.monotonic() + budget
        for _attempt in range(MAX_BUILD_ATTEMPTS):
            try:
                return self._prepare_once(timestamp, allow_empty, deadline)
            except BuildAborted as exc:
                log.warning(
                    "dropped tx 0x%s from the pool: %s",
                    exc.tx_hash.hex(),
                    exc.reason.split(":", 1)[0],
                )
                with self._lock:
                    self._forget_dropped([(exc.tx_hash, exc.reason)])
        return None

    def _prepare_once(
        self, timestamp: int, allow_empty: bool, deadline: float | None = None
    ) -> Candidate | None:
        with self._lock:
            if not len(self.engine.pool) and not allow_empty:
                return None
            outcome = None
            extra = EXTRA_DATA
            if self.governance is not None:
                height = self.engine.head.block_number + 1
                outcome = self.governance.build(height, timestamp, self._rotation_maker(height))
                extra = govern.commitment(outcome.records)
            generation = self.sealing_generation()
            selection = self.engine.select_block(timestamp, extra_data=extra)
            if not self._service_open():  # type: ignore[attr-defined]  # govern.py
                # the service is opening: users' transactions wait in the pool for the
                # open_network vote (a proposer's choice, not a validity rule)
                selection.candidates = []
        prepared, writes = self._execute(selection, deadline)
        if prepared.deferred:
            log.info(
                "block %d: %d transaction(s) in the build budget, %d left for the next block",
                prepared.header.block_number,
                len(prepared.included),
                prepared.deferred,
            )
        if not prepared.included and not allow_empty:
            with self._lock:
                self._forget_dropped(prepared.dropped)
            return None
        header = prepared.header
        header_rlp = rlp.encode(header)
        if outcome is not None and header.timestamp != timestamp:
            raise RuntimeError("the block's timestamp is not the one its governance used")
        candidate = Candidate(
            number=header.block_number,
            hash=bytes(header.hash),
            parent_hash=bytes(header.parent_hash),
            header_rlp=header_rlp,
            body=seal_body(
                self.keys.body_key_of(generation),
                self.engine.chain_id,
                bytes(header.hash),
                prepared.raws,
                writes,
                None if outcome is None else outcome.records,
                generation,
            ),
            writes=writes,
            included=list(prepared.included),
            dropped=list(prepared.dropped),
            prepared=prepared,
            governance=outcome,
        )
        self._keep(candidate)
        return candidate

    def _execute(
        self, selection: BlockSelection, deadline: float | None = None
    ) -> tuple[PreparedBlock, dict[bytes, bytes | None]]:
        """Execute a block into the kv buffer and take its write set out of it: the buffer is
        empty again whatever happens (nothing is committed before the decision)."""
        try:
            random_key = self.keys.random_key_of(self.sealing_generation())
            prepared = self.engine.execute_block(selection, random_key, deadline)
        except BaseException:
            with self._lock:
                self.ledger.kv.discard()
                self.engine.on_abandoned()
            raise
        with self._lock:
            return prepared, self.ledger.kv.take()

    def _keep(self, candidate: Candidate) -> None:
        with self._lock:
            self._candidates[candidate.hash] = candidate
            self._candidates.move_to_end(candidate.hash)
            while len(self._candidates) > MAX_CANDIDATES:
                self._candidates.popitem(last=False)

    def candidate(self, block_hash: bytes) -> Candidate | None:
        """A candidate built or verified here and not committed or dropped yet."""
        with self._lock:
            return self._candidates.get(block_hash)

    # ------------------------------------------------------------------ verify
    def verify_candidate(self, header_rlp: bytes, body_blob: bytes) -> Candidate:
        """Check a block built by another enclave on this node's head, under
        ``self.validation_rule``, and keep it as a candidate. Nothing is committed.

        Raises ``BlockRefused`` (an RpcError) with a reason code: "not-next" (its number is
        not head + 1), "unknown-parent" (its parent is not the head), "bad-header" (not a
        header of this chain, or not valid on its parent), "bad-body" (the sealed body does
        not open or is malformed, or its transactions are not the header's), "bad-diff" (a
        content-addressed row whose key is not the hash of its value), "header-mismatch"
        (the diff's header is not this header, or re-execution gives another header),
        "state-root-mismatch" (the state root does not resolve, or re-execution gives
        another root), "bad-block" (a transaction does not apply on re-execution).
        """
        if self.validation_rule not in VALIDATION_RULES:
            raise ValueError(f"unknown validation rule {self.validation_rule!r}")
        header = decode_header(header_rlp)
        block_hash = bytes(header.hash)
        known = self.candidate(block_hash)
        if known is not None and known.body == body_blob:
            return known
        with self._lock:
            parent = self.engine.head
        if header.block_number != parent.block_number + 1:
            raise BlockRefused(
                "not-next",
                f"block {header.block_number} is not the next block (the head is "
                f"{parent.block_number})",
                number=header.block_number,
                head=parent.block_number,
            )
        if header.parent_hash != parent.hash:
            raise BlockRefused(
                "unknown-parent",
                f"block {header.block_number}'s parent 0x{bytes(header.parent_hash).hex()} "
                f"is not the head 0x{bytes(parent.hash).hex()}",
            )
        try:
            self.engine.chain.get_vm_class(header).validate_header(header, parent)
        except Exception as exc:  # py-evm's ValidationError and friends
            raise BlockRefused(
                "bad-header", f"the header is not valid on its parent: {exc}"
            ) from None
        generation = self.sealing_generation()
        if body_generation(body_blob) != generation:
            raise BlockRefused(
                "bad-body",
                f"block {header.block_number}'s body is sealed under ledger generation "
                f"{body_generation(body_blob)}, the block's is {generation}",
            )
        txs, writes, gov = open_body_full(
            self.keys.body_key_of, self.engine.chain_id, block_hash, body_blob
        )
        if tx_root(txs) != header.transaction_root:
            raise BlockRefused("bad-body", "the body's transactions are not the header's")
        outcome = None
        if self.governance is not None:
            with self._lock:
                outcome = self.governance.verify(
                    gov, header.block_number, header.timestamp, bytes(header.extra_data)
                )
            if outcome.state.ledger_generation != generation:
                outcome.secret = self._rotated_secret(outcome, header.block_number)
        elif gov:
            raise BlockRefused("bad-governance", "this chain has no governance (no members)")
        if self.validation_rule == "re-execute":
            candidate = self._reexecute(header, header_rlp, body_blob, txs, parent)
        else:
            kv = self.ledger.kv
            included = [keccak(raw) for raw in txs]
            with self._lock:
                check_diff(writes, header_rlp, included, kv.__contains__)
            candidate = Candidate(
                number=header.block_number,
                hash=block_hash,
                parent_hash=bytes(header.parent_hash),
                header_rlp=header_rlp,
                body=body_blob,
                writes=writes,
                included=included,
                tx_bytes=sum(len(raw) for raw in txs),
            )
        candidate.governance = outcome
        self._keep(candidate)
        return candidate

    def _reexecute(
        self, header: Any, header_rlp: bytes, body: bytes, txs: list[bytes], parent: Any
    ) -> Candidate:
        """The "re-execute" rule: run ``txs`` on the parent with the header's fields."""
        chain = self.engine.chain
        with self._lock:
            try:
                replayed = [self.engine.admission.replay(raw) for raw in txs]
            except RpcError as exc:
                raise BlockRefused(
                    "bad-block", f"a transaction of the block: {exc.message}"
                ) from None
            rebuilt = chain.create_header_from_parent(
                parent,
                timestamp=header.timestamp,
                coinbase=header.coinbase,
                extra_data=header.extra_data,
                gas_limit=header.gas_limit,
            )
            selection = BlockSelection(parent, rebuilt, chain.get_vm(rebuilt), replayed)
        try:
            prepared, writes = self._execute(selection)
        except BuildAborted as exc:
            raise BlockRefused(
                "bad-block", f"transaction 0x{exc.tx_hash.hex()} does not apply: {exc.reason}"
            ) from None
        got = prepared.header
        if len(prepared.included) != len(txs):
            raise BlockRefused(
                "bad-block",
                f"{len(txs) - len(prepared.included)} of the block's transactions do not apply "
                "on its parent",
            )
        if got.state_root != header.state_root:
            raise BlockRefused(
                "state-root-mismatch",
                f"re-executing the block gives state root 0x{bytes(got.state_root).hex()}, "
                f"the header says 0x{bytes(header.state_root).hex()}",
            )
        if got.hash != header.hash:
            raise BlockRefused(
                "header-mismatch",
                f"re-executing the block gives header 0x{bytes(got.hash).hex()}, not "
                f"0x{bytes(header.hash).hex()}",
            )
        return Candidate(
            number=header.block_number,
            hash=bytes(header.hash),
            parent_hash=bytes(header.parent_hash),
            header_rlp=header_rlp,
            body=body,
            writes=writes,
            included=list(prepared.included),
            prepared=prepared,
        )

    # ------------------------------------------------------------------ commit
    def commit_candidate(
        self, candidate: Candidate, round_: int, proposer: bytes, seals: list[bytes]
    ) -> dict[str, Any]:
        """Commit a candidate decided by consensus (``seals``: the commit seals, or on the dev
        chain the v1 seal) with its round and proposer; the canonical index moves to it, the
        pool is pruned, the other candidates of its height are dropped. Returns the block
        summary, as BuildBlock's result: {"number", "hash", "timestamp", "transactions",
        "header", "executablePending", "gasPrice"}. Raises ``BlockRefused`` "unknown-parent"
        when the head moved since the candidate was made."""
        with self._lock:
            engine = self.engine
            if candidate.parent_hash != engine.head.hash:
                raise BlockRefused(
                    "unknown-parent",
                    f"block {candidate.number} was made on 0x{candidate.parent_hash.hex()}, "
                    f"the head is now 0x{bytes(engine.head.hash).hex()}",
                )
            kv = self.ledger.kv
            if self.governance is not None and candidate.governance is None:
                raise BlockRefused("bad-governance", "the candidate lacks its governance")
            rotated = None if candidate.governance is None else candidate.governance.secret
            if rotated is not None and rotated[1] is not None:
                # sealed beside the ledger before the block commits: a node killed between
                # the two finds the generation on restart (a block that never commits
                # leaves a secret that the block finally committed at h overwrites)
                self._adopt_generation(rotated[0], rotated[1])
            kv.discard()
            kv.restore(candidate.writes)
            try:
                self.ledger.commit_block(
                    CommittedBlock(
                        candidate.number,
                        candidate.hash,
                        candidate.header_rlp,
                        tuple(bytes(s) for s in seals),
                        bytes(proposer),
                        int(round_),
                        candidate.body,
                    ),
                    candidate.included + [h for h, _ in candidate.dropped],
                    None if candidate.governance is None else candidate.governance.ledger_row(),
                )
            except BaseException:
                kv.discard()
                engine.on_abandoned()
                raise
            if self.governance is not None:
                self.governance.committed(candidate.governance)
                self._apply_policies()  # type: ignore[attr-defined]  # govern.py: in force now
                self._learn_join_keys(candidate.governance.records)
                self._issue_recovery_shares()  # a new share generation: its set (recovering.py)
            if candidate.prepared is not None:
                engine.on_committed(candidate.prepared)
            else:
                engine.on_imported(candidate.included)
            if engine.head.hash != candidate.hash:
                raise RuntimeError("the committed block's diff did not move the chain's head")
            for stale in [h for h, c in self._candidates.items() if c.number <= candidate.number]:
                del self._candidates[stale]
            for tx_hash, reason in candidate.dropped:
                log.info("dropped tx 0x%s from the pool: %s", tx_hash.hex(), reason.split(":")[0])
            header = engine.head
            if candidate.prepared is not None:
                shape = engine.block_rpc(header, False)  # remembered from its execution
            else:  # its transactions and receipts stay in the database until asked for
                shape = engine.block_rpc_of(header, candidate.included, candidate.tx_bytes)
            return {
                "number": header.block_number,
                "hash": bytes(header.hash),
                "timestamp": header.timestamp,
                "transactions": list(candidate.included),
                "header": shape,
                "executablePending": engine.executable_count(),
                "gasPrice": engine.gas_price(),
                "privacy": "strict" if self.strict else "open",  # the policy in force
            }

    # ------------------------------------------------------------------ import
    def check_seals(
        self,
        number: int,
        proposer: bytes,
        header_rlp: bytes,
        round_: int,
        seals: list[bytes],
        validators: tuple[bytes, ...] | None = None,
    ) -> list[bytes]:
        """The signers of ``seals``, checked: each a commit seal over Block(number,
        proposer, header) at ``round_`` by a distinct validator (of ``validators``, default
        this node's set for ``number``), and a quorum of them; else
        ``BlockRefused("bad-seals")``."""
        if validators is None:
            validators = self.validators_for(number)
        need = quorum(len(validators))
        if not isinstance(seals, list) or len(seals) > len(validators):
            raise BlockRefused("bad-seals", "more commit seals than validators")
        digest = commit_seal_digest(Block(number, proposer, header_rlp).digest, round_)
        signers: list[bytes] = []
        for seal in seals:
            signer = recover_signer(digest, seal) if isinstance(seal, bytes) else None
            if signer is None or signer not in validators:
                raise BlockRefused(
                    "bad-seals", "a commit seal is not a validator's seal of this block"
                )
            if signer in signers:
                raise BlockRefused("bad-seals", f"two commit seals of 0x{signer.hex()}")
            signers.append(signer)
        if len(signers) < need:
            raise BlockRefused(
                "bad-seals",
                f"{len(signers)} commit seals, a quorum is {need} of {len(validators)}",
                have=len(signers),
                quorum=need,
            )
        return signers

    def import_finalized(self, exported: dict[str, Any]) -> dict[str, Any] | None:
        """Import one finalized block from a peer (an ``ExportedBlock`` dict): check a quorum
        of distinct validators' commit seals over the QBFT digest of Block(number, proposer,
        header) at its round ("bad-seals"), then verify it per rule and commit it. Returns
        the commit summary, or None when this block is already the canonical block at its
        height (nothing to do); another block there is "conflicting-block"."""
        try:
            number = exported["number"]
            block_hash = exported["hash"]
            header_rlp = exported["header"]
            body = exported.get("body")
            round_ = exported["round"]
            proposer = exported["proposer"]
            seals = exported["seals"]
        except (KeyError, TypeError):
            raise BlockRefused("bad-block", "an exported block lacks a field") from None
        if not (
            isinstance(number, int)
            and isinstance(round_, int)
            and 0 <= round_ < 2**31
            and isinstance(proposer, bytes)
            and len(proposer) == 20
            and isinstance(block_hash, bytes)
        ):
            raise BlockRefused("bad-block", "an exported block's fields have the wrong types")
        header = decode_header(header_rlp)
        if header.hash != block_hash or header.block_number != number:
            raise BlockRefused("bad-header", "the header is not the block's number and hash")
        self.check_seals(number, proposer, header_rlp, round_, seals)
        with self._lock:
            head_number = self.engine.head.block_number
            existing = self.ledger.block_by_number(number) if number <= head_number else None
        if number <= head_number:
            if existing is not None and existing.hash == block_hash:
                return None
            raise BlockRefused(
                "conflicting-block",
                f"block {number} 0x{block_hash.hex()} carries a quorum of seals but this node "
                "committed another block at that height",
            )
        if body is None:
            raise BlockRefused("bad-body", "the exported block has no body (a public export)")
        candidate = self.verify_candidate(header_rlp, body)
        return self.commit_candidate(candidate, round_, proposer, list(seals))
