"""Durable embedded storage: public header chain and seals, the state and bodies, the pool."""

from gateway.ledger.store import CommittedBlock, Ledger, LedgerError, PoolEntry

__all__ = ["CommittedBlock", "Ledger", "LedgerError", "PoolEntry"]
