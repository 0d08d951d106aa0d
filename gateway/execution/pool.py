"""The pending pool: per-sender nonce queues, geth's replacement rule, block selection.

Pure bookkeeping: the engine checks a transaction against state before it gets here,
and the ledger makes admissions durable.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.errors import AccountStateRefusal, ServerError

# geth's defaults: a replacement must raise both fee caps by 10%; at most 64 queued
# (not yet executable) transactions per account. A sender's consecutive pending transactions
# (the run from its state nonce) are not a gap and do not count against that limit: they are
# bounded per sender and, with the queued ones, over the whole pool.
PRICE_BUMP_PERCENT = 10
MAX_NONCE_GAP = 64
MAX_PER_SENDER = 1024
MAX_POOL_SIZE = 20_000


@dataclass(slots=True)
class PoolTx:
    hash: bytes
    sender: bytes
    nonce: int
    gas: int
    fee_cap: int  # max fee per gas (gas price for legacy)
    tip_cap: int  # max priority fee per gas (gas price for legacy)
    raw: bytes
    tx: object  # the decoded py-evm transaction
    seq: int = 0
    replaces: PoolTx | None = None  # the pooled transaction this one supersedes
    plaintext: bytes | None = None  # decrypted data of an enveloped transaction (never stored)
    # the sender was vouched for by the attested enclave that forwarded the transaction, not
    # recovered here: a proposer recovers it before it puts the transaction in a block
    vouched: bool = False

    def effective_tip(self, base_fee: int) -> int:
        return min(self.tip_cap, self.fee_cap - base_fee)


@dataclass
class TxPool:
    by_hash: dict[bytes, PoolTx] = field(default_factory=dict)
    by_sender: dict[bytes, dict[int, PoolTx]] = field(default_factory=dict)
    _seq: int = 0

    def __len__(self) -> int:
        return len(self.by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self.by_hash

    def get(self, tx_hash: bytes) -> PoolTx | None:
        return self.by_hash.get(tx_hash)

    def check(self, ptx: PoolTx, state_nonce: int) -> PoolTx | None:
        """Raise the pool's rejection for ``ptx`` or return the transaction it would replace."""
        if ptx.hash in self.by_hash:
            raise ServerError("already known")
        if ptx.nonce < state_nonce:
            told = f"nonce too low: address 0x{ptx.sender.hex()}, tx: {ptx.nonce}"
            raise AccountStateRefusal(
                f"{told} state: {state_nonce}",
                told,
                ptx.sender,
            )
        queue = self.by_sender.get(ptx.sender, {})
        pending = state_nonce
        while pending in queue:
            pending += 1
        if ptx.nonce not in queue and ptx.nonce > pending + MAX_NONCE_GAP:
            raise AccountStateRefusal(
                f"nonce too high: address 0x{ptx.sender.hex()}, tx: {ptx.nonce} state: "
                f"{state_nonce} (next pending nonce {pending}; at most {MAX_NONCE_GAP} "
                "transactions may wait for a gap)",
                f"nonce too high: address 0x{ptx.sender.hex()}, tx: {ptx.nonce} (at most "
                f"{MAX_NONCE_GAP} transactions may wait for a gap)",
                ptx.sender,
            )
        old = queue.get(ptx.nonce)
        if old is not None:
            need_fee = old.fee_cap * (100 + PRICE_BUMP_PERCENT) // 100
            need_tip = old.tip_cap * (100 + PRICE_BUMP_PERCENT) // 100
            if ptx.fee_cap < need_fee or ptx.tip_cap < need_tip:
                raise ServerError("replacement transaction underpriced")
            return old
        if len(queue) >= MAX_PER_SENDER:
            raise ServerError(
                f"account limit exceeded: at most {MAX_PER_SENDER} transactions per sender "
                "may wait in the pool"
            )
        if len(self.by_hash) >= MAX_POOL_SIZE:
            raise ServerError("txpool is full")
        return None

    def add(self, ptx: PoolTx, replaces: PoolTx | None) -> None:
        if replaces is not None:
            self._drop(replaces)
        self._seq += 1
        ptx.seq = self._seq
        self.by_hash[ptx.hash] = ptx
        self.by_sender.setdefault(ptx.sender, {})[ptx.nonce] = ptx

    def _drop(self, ptx: PoolTx) -> None:
        self.by_hash.pop(ptx.hash, None)
        queue = self.by_sender.get(ptx.sender)
        if queue is not None and queue.get(ptx.nonce) is ptx:
            del queue[ptx.nonce]
            if not queue:
                del self.by_sender[ptx.sender]

    def remove(self, hashes: Iterable[bytes]) -> None:
        for h in hashes:
            ptx = self.by_hash.get(h)
            if ptx is not None:
                self._drop(ptx)

    def pending_nonce(self, sender: bytes, state_nonce: int) -> int:
        """The next nonce after the run of consecutive pooled transactions from state."""
        queue = self.by_sender.get(sender, {})
        nonce = state_nonce
        while nonce in queue:
            nonce += 1
        return nonce

    def stale(self, state_nonce: Callable[[bytes], int]) -> list[PoolTx]:
        """Transactions whose nonce is already used on chain (mined elsewhere or replaced);
        one state read per sender, not per transaction."""
        out: list[PoolTx] = []
        for sender, queue in self.by_sender.items():
            if not queue:
                continue
            nonce = state_nonce(sender)
            out.extend(ptx for n, ptx in queue.items() if n < nonce)
        return out

    def executable(self, state_nonce: Callable[[bytes], int], base_fee: int) -> list[PoolTx]:
        """Transactions runnable now, best tip first, each sender's in nonce order."""
        runs: list[list[PoolTx]] = []
        for sender, queue in self.by_sender.items():
            nonce = state_nonce(sender)
            run = []
            while nonce in queue:
                ptx = queue[nonce]
                if ptx.fee_cap < base_fee:
                    break
                run.append(ptx)
                nonce += 1
            if run:
                runs.append(run)
        heap = [(-run[0].effective_tip(base_fee), run[0].seq, i, 0) for i, run in enumerate(runs)]
        heapq.heapify(heap)
        out: list[PoolTx] = []
        while heap:
            _, _, i, j = heapq.heappop(heap)
            out.append(runs[i][j])
            if j + 1 < len(runs[i]):
                nxt = runs[i][j + 1]
                heapq.heappush(heap, (-nxt.effective_tip(base_fee), nxt.seq, i, j + 1))
        return out

    def hashes(self) -> list[bytes]:
        return [p.hash for p in sorted(self.by_hash.values(), key=lambda p: p.seq)]
