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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BODY_VERSION = 1
BODY_INFO = b"coco-gateway/block-body/v1"
VALIDATION_RULES = ("attested-diff", "re-execute")
# the most candidates kept at once (several rounds of one height, a few heights ahead)
MAX_CANDIDATES = 64


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


class BlockLifecycle:
    """The enclave's block methods (mixed into ``gateway.enclave.core.Enclave``).

    Callers hold the enclave's build lock (one block operation at a time); the methods take
    the enclave lock themselves where they touch the pool, the head or the ledger.

    Attributes the enclave sets: ``consensus_validators`` (the QBFT validator set, default
    ``(self.validator,)``) and ``validation_rule`` ("attested-diff" or "re-execute").
    """

    consensus_validators: tuple[bytes, ...]
    validation_rule: str

    def prepare_candidate(self, timestamp: int, *, allow_empty: bool = True) -> Candidate | None:
        """Build the next block on the head from the pool: execute, capture the kv write set,
        discard the buffer, keep and return the candidate. Nothing is committed.

        None when there is nothing to build (no executable transaction and not
        ``allow_empty``). A transaction py-evm refuses mid-block is dropped from the pool and
        the block rebuilt without it (as BuildBlock always did).
        """
        raise NotImplementedError

    def verify_candidate(self, header_rlp: bytes, body_blob: bytes) -> Candidate:
        """Check a block built by another enclave on this node's head, under
        ``self.validation_rule``, and keep it as a candidate. Nothing is committed.

        Raises ``BlockRefused`` (an RpcError) with a reason code: "not-next" (its number is
        not head + 1), "unknown-parent" (its parent is not the head), "bad-header" (not a
        header of this chain), "bad-body" (the sealed body does not open or is malformed),
        "bad-diff" (a content-addressed row whose key is not the hash of its value, or a row
        the block may not write), "header-mismatch" (the diff's header is not this header,
        or re-execution gives another header), "state-root-mismatch" (the state root does not
        resolve, or re-execution gives another root), "bad-block" (a transaction does not
        apply on re-execution).
        """
        raise NotImplementedError

    def commit_candidate(
        self, candidate: Candidate, round_: int, proposer: bytes, seals: list[bytes]
    ) -> dict[str, Any]:
        """Commit a candidate decided by consensus (``seals``: the commit seals, or on the dev
        chain the v1 seal) with its round and proposer; the canonical index moves to it, the
        pool is pruned, the other candidates of its height are dropped. Returns the block
        summary, as BuildBlock's result: {"number", "hash", "timestamp", "transactions",
        "header", "executablePending", "gasPrice"}. Raises ``BlockRefused`` "unknown-parent"
        when the head moved since the candidate was made."""
        raise NotImplementedError

    def import_finalized(self, exported: dict[str, Any]) -> dict[str, Any] | None:
        """Import one finalized block from a peer (an ``ExportedBlock`` dict): check a quorum
        of distinct validators' commit seals over the QBFT digest of Block(number, proposer,
        header) at its round ("bad-seals"), then verify it per rule and commit it. Returns
        the commit summary, or None when this block is already the canonical block at its
        height (nothing to do)."""
        raise NotImplementedError
