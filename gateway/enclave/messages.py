"""The enclave interface: every request the host may make, as a plain dataclass.

If it is not a field of one of these types, it does not cross the boundary. Field values
are msgpack primitives only (None, bool, int, float, str, bytes, lists and string-keyed
dicts of these), so the codec never has to trust the other side with objects.

A block reference (``BlockRef``) is a tag ("latest", "earliest", "pending", "safe",
"finalized"), a block number, or ``{"hash": bytes, "requireCanonical": bool}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

BlockRef = str | int | dict[str, Any]

# The execution forks a chain can be created with (gateway.execution.chain.FORKS), named here
# for the host, which does not import the execution room; new chains get the newest.
FORK_NAMES = ("shanghai", "cancun", "prague", "osaka")
DEFAULT_FORK = "osaka"


@dataclass(frozen=True)
class Open:
    """First message: open (or create) the node's ledger and keys."""

    data_dir: str
    chain_id: int
    fork: str = DEFAULT_FORK
    gas_limit: int = 30_000_000
    genesis_timestamp: int = 0
    genesis_alloc: list[list[Any]] = field(default_factory=list)  # [address, balance wei str]
    dev_mnemonic: str | None = None
    dev_accounts: int = 0
    durable_fsync: bool = False
    epoch_period: int = 86_400  # seconds per transaction-key epoch
    epoch_grace: int = 1  # earlier epochs whose keys still open new envelopes
    require_encryption: bool = False  # refuse plain call data to contracts and plain deploys
    privacy: str = "open"  # "strict": who-may-see-what (docs/SECURITY.md) enforced on reads
    public_balances: bool = False  # with "strict": balances and nonces readable by anyone
    seal_storage: bool = True  # False: --insecure-plaintext-storage
    # A consortium node: the consortium's public terms (``consortium.json``, docs/consortium.md)
    # and this node's role in it, "validator" or "member". None: the single-node dev chain.
    consortium: dict[str, Any] | None = None
    role: str = "dev"
    # --recover: without a sealed consortium secret, take members' recovery shares
    # (docs/GOVERNANCE.md, "Recovery") besides waiting to join
    recover: bool = False


@dataclass(frozen=True)
class MakeIdentity:
    """Alternative first message (``coco-gateway init``): make, or open, this data directory's
    node identity key inside the enclave and say who it is; nothing else is opened.
    With ``consortium`` (the terms, as ``Open.consortium``) and when this node is their
    genesis node, the enclave also makes the consortium secret, sealed beside the identity
    (kept if this data directory already holds one for that chain).
    Answer: ``{"address": bytes20, "measurement": bytes32, "platform": str,
    "consortiumSecret": bool}`` (whether the directory now holds the sealed secret)."""

    data_dir: str
    seal_storage: bool = True
    consortium: dict[str, Any] | None = None


@dataclass(frozen=True)
class GenesisOf:
    """Alternative first message (an observer, which has no enclave of its own): the hash of
    the genesis block that these consortium terms make, computed by the enclave's code;
    nothing is opened and no key is made. Answer: ``{"genesisHash": bytes32, "chainId": int}``."""

    consortium: dict[str, Any]


@dataclass(frozen=True)
class GetStatus:
    pass


@dataclass(frozen=True)
class GetBlock:
    ref: BlockRef
    full: bool = False
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetBlockTxCount:
    ref: BlockRef


@dataclass(frozen=True)
class GetTxByBlockIndex:
    ref: BlockRef
    index: int
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetAccount:
    kind: str  # "balance" | "nonce" | "code"
    address: bytes
    ref: BlockRef
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetStorage:
    address: bytes
    slot: int
    ref: BlockRef
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class Call:
    """eth_call / eth_estimateGas arguments, already parsed into field values."""

    ref: BlockRef
    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    value: int = 0
    data: bytes = b""
    estimate: bool = False
    auth: str | None = None  # the caller's session token (None: anonymous)
    # an EIP-712 signed query (docs/PROTOCOL.md, "Signed query"): msg.sender is its signer
    query_signature: bytes | None = None
    query_leash: dict[str, int] | None = None
    query_node: bytes | None = None  # the node the signed query is for (version 3)


@dataclass(frozen=True)
class SubmitRawTx:
    raw: bytes
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class SubmitTx:
    """Dev mode only: the enclave signs with an unlocked dev account."""

    sender: bytes
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    tx_type: int | None = None
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetTx:
    hash: bytes
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetReceipt:
    hash: bytes
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetBlockReceipts:
    ref: BlockRef
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class GetLogs:
    from_block: BlockRef = "latest"
    to_block: BlockRef = "latest"
    addresses: list[bytes] = field(default_factory=list)
    topics: list[list[bytes] | None] = field(default_factory=list)
    block_hash: bytes | None = None
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class FeeHistory:
    count: int
    newest: BlockRef
    percentiles: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class PendingTxs:
    auth: str | None = None  # the caller's session token (None: anonymous)


@dataclass(frozen=True)
class PoolStatus:
    pass


@dataclass(frozen=True)
class BuildBlock:
    timestamp: int
    allow_empty: bool = False


@dataclass(frozen=True)
class GetAttestation:
    pass


@dataclass(frozen=True)
class SiweMessage:
    """Prepare a Sign-In with Ethereum (EIP-4361) message for ``address`` to sign."""

    address: bytes
    origin: str


@dataclass(frozen=True)
class SignIn:
    """Exchange a signed message this enclave prepared for a session token."""

    message: str
    signature: bytes


@dataclass(frozen=True)
class SignOut:
    """Revoke the caller's session. Answer: {"revocation": bytes}, the revocation sealed
    for the other nodes of the consortium (ImportRevocations)."""

    auth: str


@dataclass(frozen=True)
class MyActivity:
    auth: str


@dataclass(frozen=True)
class WhoAmI:
    """Who the node takes the caller of this URL to be (None: anonymous)."""

    auth: str | None = None


@dataclass(frozen=True)
class GetSeal:
    ref: BlockRef


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class CreateAccessList:
    """eth_createAccessList: a call's fields as for ``Call``, plus an access list to start
    from, ``[address, [32-byte slot, ...]]`` per entry."""

    ref: BlockRef
    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    value: int = 0
    data: bytes = b""
    access_list: list[list[Any]] = field(default_factory=list)
    auth: str | None = None  # the caller's session token (None: anonymous)
    query_signature: bytes | None = None
    query_leash: dict[str, int] | None = None
    query_node: bytes | None = None  # the node the signed query is for (version 3)

    @classmethod
    def of_call(cls, call: Call, access_list: list[list[Any]]) -> CreateAccessList:
        """The access-list request for ``call`` (every field it shares with ``Call``)."""
        shared = {f.name: getattr(call, f.name) for f in fields(cls) if f.name != "access_list"}
        return cls(**shared, access_list=access_list)

    def as_call(self) -> Call:
        """The call whose accesses are listed: run as a gas estimate is."""
        shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "access_list"}
        return Call(**shared, estimate=True)


@dataclass(frozen=True)
class GetProof:
    """eth_getProof (EIP-1186): an account's proof and its storage slots' proofs. Each key
    is as the caller gave it, 0 to 32 bytes (left-padded to a slot)."""

    address: bytes
    keys: list[bytes]
    ref: BlockRef
    auth: str | None = None  # the caller's session token (None: anonymous)


# ------------------------------------------------------------------ the consortium (issue 8)
# Blocks travel between nodes as ``ExportedBlock`` dicts (public header, sealed body, QBFT
# round and commit seals): {"number": int, "hash": bytes32, "header": bytes (RLP),
# "body": bytes | None (sealed body and state diff; None for observers), "round": int,
# "proposer": bytes20, "seals": [bytes65, ...]}.


@dataclass(frozen=True)
class ConsensusStep:
    """Drive the enclave's QBFT validator: ``inbound`` messages from peers, each
    ``[qbft message bytes, sidecar bytes | None]`` (a proposal's sidecar is its sealed body),
    and/or a timer ``tick``, at host time ``now``. Answer::

        {"outbound": [[message bytes, sidecar | None], ...],  # to every other validator
         "timer": float | None,          # call again with tick=True at this time
         "decided": [ExportedBlock + {"summary": block summary as BuildBlock's}, ...],
         "discarded": [{"reason": str, "sender": bytes20 | None, "code": int}, ...],
         "behind": [[peer bytes20, height], ...],  # send that peer blocks from height
         "status": {"height", "round", "proposer", "finalized", "validators"}}
    """

    now: float
    inbound: list[list[Any]] = field(default_factory=list)
    tick: bool = False


@dataclass(frozen=True)
class ImportBlocks:
    """Finalized blocks from a peer (catch-up, followers): each an ``ExportedBlock``. The
    enclave checks a quorum of commit seals, then applies the sealed state diff (or
    re-executes, as genesis says) and commits. Answer: {"imported": int, "head": int,
    "decided": [summary, ...]}; a bad block raises with a reason code and stops the batch."""

    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class ExportBlocks:
    """Finalized blocks ``start`` .. ``start + count - 1`` (fewer at the head), as
    ``ExportedBlock`` dicts; ``public`` leaves the sealed body out (for observers)."""

    start: int
    count: int
    public: bool = False


@dataclass(frozen=True)
class GetFinality:
    """A block's proof of finality: {"number", "hash", "header", "round", "proposer",
    "digest", "seals", "validators", "quorum"}; None for an unknown block."""

    ref: BlockRef


@dataclass(frozen=True)
class ExportPooledTxs:
    """Pooled transactions sealed for forwarding to other nodes (consortium key): a list of
    sealed blobs, for the hashes still in the pool."""

    hashes: list[bytes]


@dataclass(frozen=True)
class ImportPooledTxs:
    """Sealed transactions another node forwarded: admitted to the pool as if submitted
    here (not forwarded again). Answer: {"admitted": [hash, ...], "refused": int}."""

    blobs: list[bytes]


@dataclass(frozen=True)
class ExportRevocations:
    """Every live revoked session, sealed under the consortium's revocation key for another
    node (docs/PROTOCOL.md, "Session revocation"): a list of sealed blobs."""


@dataclass(frozen=True)
class ImportRevocations:
    """Revocations another node sealed (SignOut's, ExportRevocations'): kept until their
    expiry. Answer: {"added": int, "refused": int (blobs that did not open), "relay":
    [bytes] (the ones new here, sealed again to pass on)}."""

    blobs: list[bytes]


@dataclass(frozen=True)
class SignLink:
    """Sign a node-to-node link's handshake transcript with the node identity key:
    answer the 65-byte signature over keccak(b"coco-gateway/p2p/link/v2" || transcript)."""

    transcript: bytes


@dataclass(frozen=True)
class JoinRequest:
    """On a node awaiting the consortium secret: its attestation for the join, binding a
    fresh X25519 key. Answer: {"report": dict, "signature": bytes, "joinKey": bytes32}."""


@dataclass(frozen=True)
class JoinAdmit:
    """On a member node: check a joining node's ``JoinRequest`` answer against the
    consortium's terms (measurements, platforms, node list; on a governed chain, the
    governance state's) and answer the consortium secret encrypted to its join key:
    {"wrapped": bytes}. Refusals raise with a reason code: "bad-attestation",
    "unknown-measurement", "virtual-not-allowed", "unlisted-node", "wrong-chain"; governed:
    "measurement-not-allowed", "platform-not-allowed", "virtual-not-allowed",
    "node-retired", "too-many-pending", "node-pending" (data "record": the hash of the join
    record it pooled, for the host to forward)."""

    request: dict[str, Any]


@dataclass(frozen=True)
class JoinComplete:
    """On the joining node: open the wrapped secret, seal it locally, and finish opening
    the ledger and the engine. Answer: as GetStatus."""

    wrapped: bytes


# ------------------------------------------------------------------ sealed snapshots (item 9)
# docs/PROTOCOL.md, "Sealed snapshot v1"; gateway/enclave/snapshot.py. A chunk is sealed as a
# whole under a key derived from the consortium secret; the kv rows inside are the source
# ledger's rows as stored (blinded keys, values sealed under the storage key), so neither the
# hosts nor the wire see plaintext. A cursor is b"" (start), b"k" + stored key or
# b"b" + 8-byte block number; refusals carry a reason code (gateway.errors.SnapshotRefused).


@dataclass(frozen=True)
class ExportSnapshot:
    """On a node that serves snapshots: the next chunk of the snapshot pinned at block hash
    ``head`` (None: open one at the current head, or share one opened in the last 30 s), from
    ``cursor``, with about ``limit`` bytes of rows (0: 4 MiB; at most 8 MiB). Answer:
    {"height": int, "hash": bytes32, "chunk": bytes (sealed), "next": cursor | None (None:
    this was the last chunk), "total": int (bytes of rows in the whole snapshot, for
    progress)}. Refusals: "snapshot-expired" (no session at ``head`` any more: start over),
    "snapshot-busy", "bad-cursor", "not-a-consortium"."""

    head: bytes | None = None
    cursor: bytes = b""
    limit: int = 0


@dataclass(frozen=True)
class ImportSnapshot:
    """On a node far behind: open, check and stage one chunk (a chunk from cursor b"" starts
    the snapshot over). Answer: {"height", "hash", "next": the cursor to ask for next, or None
    when every chunk is staged, "bytes": bytes of rows staged so far}. Refusals:
    "bad-snapshot-chunk" (does not open: altered, or not sealed for this consortium, chain
    and genesis; malformed), "bad-snapshot-row", "snapshot-out-of-order",
    "snapshot-not-ahead", "bad-cursor"."""

    chunk: bytes


@dataclass(frozen=True)
class FinishSnapshot:
    """Check the staged snapshot as a whole and open it: the ledger's head becomes its block.
    Answer: {"height", "hash", "stateRoot"}. Refusals: "no-snapshot", "snapshot-incomplete",
    "broken-chain", "wrong-genesis", "bad-seals", "state-root-missing", "bad-snapshot-row",
    "snapshot-not-ahead" (the staged snapshot is dropped on any of them)."""


@dataclass(frozen=True)
class DropSnapshot:
    """Forget a staged snapshot (the host gave up on it). Answer: true."""


@dataclass(frozen=True)
class GovSubmit:
    """A signed governance record (its canonical JSON, docs/GOVERNANCE.md), checked against
    the governance state at the head as it would apply in the next block at ``now``, then
    pooled. Answer: {"hash", "type", "signer", "proposal"}; a refusal is a GovernanceError
    (reason codes of docs/GOVERNANCE.md). ``forwarded``: it came from another node."""

    record: bytes
    now: int
    forwarded: bool = False


@dataclass(frozen=True)
class GovQuery:
    """A public governance read: ``what`` is "state" (summary), "members", "nodes",
    "validators", "constitution", "proposals" (``arg``: a status or None), "proposal"
    (``arg``: 0x id), "block" (``arg``: a block number: its section and state digest)."""

    what: str
    arg: Any = None


@dataclass(frozen=True)
class RecoveryInfo:
    """The recovery share set's summary (generation, threshold, holders) and, on a node in
    recovery mode, its progress, recovery key and attestation; with ``member``, that
    member's issued (encrypted) share. Public."""

    member: bytes | None = None


@dataclass(frozen=True)
class RecoverySubmit:
    """A member's signed recovery share (``gateway.governance.share_record``, canonical
    JSON) for a node in recovery mode. Answer: {"state", "recovered", "member",
    "submitted", "threshold"}."""

    record: bytes


MESSAGES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Open,
        GetStatus,
        GetBlock,
        GetBlockTxCount,
        GetTxByBlockIndex,
        GetAccount,
        GetStorage,
        Call,
        SubmitRawTx,
        SubmitTx,
        GetTx,
        GetReceipt,
        GetBlockReceipts,
        GetLogs,
        FeeHistory,
        PendingTxs,
        PoolStatus,
        BuildBlock,
        GetSeal,
        GetAttestation,
        SiweMessage,
        SignIn,
        SignOut,
        MyActivity,
        WhoAmI,
        Close,
        CreateAccessList,
        GetProof,
        MakeIdentity,
        GenesisOf,
        ConsensusStep,
        ImportBlocks,
        ExportBlocks,
        GetFinality,
        ExportPooledTxs,
        ImportPooledTxs,
        ExportRevocations,
        ImportRevocations,
        SignLink,
        JoinRequest,
        JoinAdmit,
        JoinComplete,
        ExportSnapshot,
        ImportSnapshot,
        FinishSnapshot,
        DropSnapshot,
        GovSubmit,
        GovQuery,
        RecoveryInfo,
        RecoverySubmit,
    )
}
