"""Durable embedded storage: public header chain and seals, the sealed state and bodies, the
sealed pool. The cipher is injected (``Ledger.set_sealer``): this room holds no key."""

from gateway.ledger.store import (
    FORMAT_VERSION,
    LEDGER_FILE,
    SNAPSHOT_META,
    CommittedBlock,
    Ledger,
    LedgerError,
    LedgerRefused,
    PoolEntry,
    SealedValueError,
    Sealer,
    SnapshotView,
    read_meta,
)

__all__ = [
    "FORMAT_VERSION",
    "LEDGER_FILE",
    "SNAPSHOT_META",
    "CommittedBlock",
    "Ledger",
    "LedgerError",
    "LedgerRefused",
    "PoolEntry",
    "SealedValueError",
    "Sealer",
    "SnapshotView",
    "read_meta",
]
