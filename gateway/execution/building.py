"""Building: pick a block's transactions, run them on the parent, tidy the pool after commit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.vm.spoof import SpoofTransaction
from eth_utils import ValidationError

from gateway.execution.admission import signed_by
from gateway.execution.pool import PoolTx, TxPool
from gateway.execution.precompiles import BlockRandomness


@dataclass
class BlockSelection:
    parent: BlockHeaderAPI
    header: BlockHeaderAPI
    vm: Any
    candidates: list[PoolTx]


class BuildAborted(Exception):
    """py-evm rejected a transaction mid-block; the block must be rebuilt without it."""

    def __init__(self, tx_hash: bytes, reason: str) -> None:
        super().__init__(reason)
        self.tx_hash = tx_hash
        self.reason = reason


@dataclass
class PreparedBlock:
    """A block built and executed but not yet committed."""

    block: BlockAPI
    receipts: tuple[ReceiptAPI, ...]
    included: list[bytes]
    dropped: list[tuple[bytes, str]]
    raws: list[bytes] = field(default_factory=list)  # the included transactions as signed
    deferred: int = 0  # candidates left for a later block when the build deadline passed

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header


def select_block(
    chain: MiningChain,
    parent: BlockHeaderAPI,
    pool: TxPool,
    *,
    coinbase: bytes,
    timestamp: int,
    extra_data: bytes = b"",
) -> BlockSelection:
    """Choose the next block's header and transactions (reads the pool: hold the lock)."""
    timestamp = max(timestamp, parent.timestamp + 1)
    header = chain.create_header_from_parent(
        parent,
        timestamp=timestamp,
        coinbase=coinbase,
        extra_data=extra_data[:32],
        gas_limit=parent.gas_limit,
    )
    vm = chain.get_vm(header)
    state: Any = vm.state
    base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
    candidates = pool.executable(lambda s: int(state.get_nonce(s)), base_fee)
    return BlockSelection(parent, header, vm, candidates)


def execute_block(
    chain: MiningChain,
    selection: BlockSelection,
    random_key: bytes | None = None,
    deadline: float | None = None,
) -> PreparedBlock:
    """Run the selected transactions and seal the state root.

    Touches no shared engine structure: the pool may take new transactions meanwhile.
    ``random_key``: the key of the random precompile's block randomness (every validator
    derives the same one); None leaves it on the OS's randomness (tests of the engine alone).
    ``deadline`` (``time.monotonic()``): once passed, no further transaction is started (at
    least one is always included); the rest stay in the pool for a later block. A proposer
    uses it so that building a full block does not outlast its QBFT round (docs/qbft.md).
    """
    randomness = (
        None
        if random_key is None
        else BlockRandomness(
            random_key,
            selection.parent.hash,
            selection.header.block_number,
            selection.header.timestamp,
        )
    )
    if randomness is None:
        return _execute(chain, selection, None, deadline)
    with randomness.active():
        return _execute(chain, selection, randomness, deadline)


def _execute(
    chain: MiningChain,
    selection: BlockSelection,
    randomness: BlockRandomness | None,
    deadline: float | None,
) -> PreparedBlock:
    vm = selection.vm
    state: Any = vm.state
    candidates = selection.candidates
    header = selection.header
    txs: list[SignedTransactionAPI] = []
    receipts: list[ReceiptAPI] = []
    included: list[bytes] = []
    raws: list[bytes] = []
    dropped: list[tuple[bytes, str]] = []
    blocked: set[bytes] = set()
    running = header
    deferred = 0
    for index, ptx in enumerate(candidates):
        if deadline is not None and included and time.monotonic() >= deadline:
            deferred = len(candidates) - index
            break
        if ptx.sender in blocked:
            continue
        if ptx.gas > running.gas_limit - running.gas_used:
            blocked.add(ptx.sender)  # waits for the next block, with its successors
            continue
        # py-evm's own validation runs after it has locked the state's checkpoints, so
        # a transaction it rejects cannot be reverted: check what can change since
        # admission (nonce, funds) here, and let only valid transactions reach it.
        tx: Any = ptx.tx
        if ptx.vouched:
            # forwarded by another attested enclave, which recovered the sender: recovered
            # here too before it goes into a block this node proposes
            if not signed_by(tx, ptx.sender):
                blocked.add(ptx.sender)
                dropped.append((ptx.hash, "invalid sender: the signature is not the sender's"))
                continue
            ptx.vouched = False
        if int(state.get_nonce(ptx.sender)) != ptx.nonce:
            blocked.add(ptx.sender)
            continue
        cost = ptx.gas * ptx.fee_cap + int(tx.value)
        balance = int(state.get_balance(ptx.sender))
        if balance < cost:
            blocked.add(ptx.sender)
            dropped.append(
                (
                    ptx.hash,
                    f"insufficient funds for gas * price + value: have {balance} want {cost}",
                )
            )
            continue
        # an enveloped transaction runs on its decrypted data; the block keeps the
        # signed transaction as it was sent (envelope included)
        runnable = tx if ptx.plaintext is None else SpoofTransaction(tx, data=ptx.plaintext)
        if randomness is not None:
            randomness.begin_transaction(ptx.hash)
        try:
            receipt, _computation = vm.apply_transaction(running, runnable)
        except ValidationError as exc:
            raise BuildAborted(ptx.hash, str(exc)) from None
        running = vm.add_receipt_to_header(running, receipt)
        txs.append(tx)
        receipts.append(receipt)
        included.append(ptx.hash)
        raws.append(ptx.raw)
    block = vm.set_block_transactions_and_withdrawals(vm.get_block(), running, txs, receipts)
    mined = vm.mine_block(block).block
    chain.chaindb.persist_block(mined)
    return PreparedBlock(
        block=mined,
        receipts=tuple(receipts),
        included=included,
        dropped=dropped,
        raws=raws,
        deferred=deferred,
    )


def prune_pool(pool: TxPool, prepared: PreparedBlock, nonce_of: Callable[[bytes], int]) -> None:
    """After a commit: the block's transactions, the dropped ones and those whose nonce the
    new head has passed leave the pool."""
    pool.remove(prepared.included)
    pool.remove(h for h, _ in prepared.dropped)
    stale = pool.stale(nonce_of)
    pool.remove(p.hash for p in stale)
