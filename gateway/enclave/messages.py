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
    )
}
