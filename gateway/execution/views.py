"""Views: blocks, transactions and receipts as JSON-RPC shapes, from a cache of block data."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI, ChainDatabaseAPI, ReceiptAPI, SignedTransactionAPI
from eth.exceptions import TransactionNotFound

from gateway.execution import format as fmt
from gateway.execution.admission import EnvelopeKeys
from gateway.execution.pool import PoolTx
from gateway.protocol import envelope

TxFilter = Callable[[Any], bool]
BLOCK_CACHE_SIZE = 256
OPENED_CACHE_SIZE = 4096


def _block_head(header: BlockHeaderAPI, tx_bytes: int) -> dict[str, Any]:
    return fmt.header_to_rpc(header, size=len(rlp.encode(header)) + tx_bytes + 3)


def _block_tail(header: BlockHeaderAPI, out: dict[str, Any]) -> dict[str, Any]:
    out["uncles"] = []
    if getattr(header, "withdrawals_root", None) is not None:
        out["withdrawals"] = []
    return out


def sender_of(tx: Any) -> bytes:
    return bytes(tx.sender)


@dataclass
class BlockData:
    header: BlockHeaderAPI
    txs: tuple[SignedTransactionAPI, ...]
    receipts: tuple[ReceiptAPI, ...]
    first_log_index: tuple[int, ...]


class BlockViews:
    """Reads blocks from py-evm's database, keeps the recent ones, and shapes them."""

    def __init__(
        self,
        chaindb: ChainDatabaseAPI,
        tx_builder: Any,
        receipt_builder: Any,
        envelopes: EnvelopeKeys | None,
    ) -> None:
        self.chaindb = chaindb
        self.tx_builder = tx_builder
        self.receipt_builder = receipt_builder
        self.envelopes = envelopes
        self._blocks: OrderedDict[bytes, BlockData] = OrderedDict()
        self._opened: OrderedDict[bytes, envelope.OpenedRequest] = OrderedDict()

    # ---------------------------------------------------------------- block data
    def data(self, header: BlockHeaderAPI) -> BlockData:
        cached = self._blocks.get(header.hash)
        if cached is not None:
            self._blocks.move_to_end(header.hash)
            return cached
        txs = tuple(self.chaindb.get_block_transactions(header, self.tx_builder))
        receipts = tuple(self.chaindb.get_receipts(header, self.receipt_builder))
        return self.remember(header, txs, receipts)

    def remember(
        self,
        header: BlockHeaderAPI,
        txs: tuple[SignedTransactionAPI, ...],
        receipts: tuple[ReceiptAPI, ...],
    ) -> BlockData:
        firsts = []
        count = 0
        for r in receipts:
            firsts.append(count)
            count += len(r.logs)
        data = BlockData(header, txs, receipts, tuple(firsts))
        self._blocks[header.hash] = data
        if len(self._blocks) > BLOCK_CACHE_SIZE:
            self._blocks.popitem(last=False)
        return data

    def clear(self) -> None:
        self._blocks.clear()

    def locate(self, tx_hash: bytes) -> tuple[int, int] | None:
        """The block number and index of a mined transaction (canonical or not: check)."""
        try:
            number, index = self.chaindb.get_transaction_index(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return int(number), int(index)

    # ---------------------------------------------------------------- shapes
    def block_rpc(
        self, header: BlockHeaderAPI, full: bool, visible: TxFilter | None = None
    ) -> dict[str, Any]:
        """The block; ``visible`` picks which transactions the caller may see."""
        data = self.data(header)
        base_fee = getattr(header, "base_fee_per_gas", None)
        out = _block_head(header, sum(len(tx.encode()) for tx in data.txs))
        if full:
            out["transactions"] = [
                fmt.tx_to_rpc(
                    tx,
                    block_hash=header.hash,
                    block_number=header.block_number,
                    index=i,
                    base_fee=base_fee,
                    timestamp=header.timestamp,
                )
                for i, tx in enumerate(data.txs)
                if visible is None or visible(tx)
            ]
        else:
            out["transactions"] = [
                fmt.data(tx.hash) for tx in data.txs if visible is None or visible(tx)
            ]
        return _block_tail(header, out)

    def block_rpc_of(
        self, header: BlockHeaderAPI, tx_hashes: Sequence[bytes], tx_bytes: int
    ) -> dict[str, Any]:
        """``block_rpc(header, False)`` of a block whose transactions' hashes and encoded
        size the caller knows (a block committed on its attested diff), without reading its
        transactions and receipts back out of the database: they are read when asked for."""
        out = _block_head(header, tx_bytes)
        out["transactions"] = [fmt.data(h) for h in tx_hashes]
        return _block_tail(header, out)

    def block_tx_count(self, header: BlockHeaderAPI) -> int:
        return len(self.data(header).txs)

    def tx_by_index_rpc(self, header: BlockHeaderAPI, index: int) -> dict[str, Any] | None:
        data = self.data(header)
        if not 0 <= index < len(data.txs):
            return None
        return fmt.tx_to_rpc(
            data.txs[index],
            block_hash=header.hash,
            block_number=header.block_number,
            index=index,
            base_fee=getattr(header, "base_fee_per_gas", None),
            timestamp=header.timestamp,
        )

    def receipt_at(self, data: BlockData, index: int) -> dict[str, Any]:
        previous = data.receipts[index - 1].gas_used if index else 0
        tx = data.txs[index]
        return fmt.receipt_to_rpc(
            tx,
            data.receipts[index],
            header=data.header,
            index=index,
            gas_used=data.receipts[index].gas_used - previous,
            first_log_index=data.first_log_index[index],
            logs_shown=self.shown_logs(tx, data.receipts[index].logs),
        )

    def block_receipts_rpc(self, header: BlockHeaderAPI) -> list[dict[str, Any]]:
        data = self.data(header)
        return [self.receipt_at(data, i) for i in range(len(data.txs))]

    def shown_logs(self, tx: Any, logs: Sequence[Any]) -> list[Any]:
        """An enveloped transaction's log data, sealed to its sender's response key.

        Topics stay as they are (filters match on them). The nonce is derived from the key,
        the transaction hash and the log's position: a receipt reads the same every time it
        is fetched, and the same envelope sent in two transactions (allowed: the sender may
        reuse it) never seals two different log data under one nonce.
        """
        if self.envelopes is None or not logs or not envelope.is_envelope(bytes(tx.data)):
            return list(logs)
        tx_hash = bytes(tx.hash)
        opened = self._opened.get(tx_hash)
        if opened is None:
            try:
                opened = self.envelopes.open(
                    bytes(tx.data), bytes(tx.sender), bytes(tx.to) or None, admission=False
                )
            except envelope.EnvelopeError:
                return list(logs)
            self._opened[tx_hash] = opened  # a receipt is fetched again and again: keep it
            if len(self._opened) > OPENED_CACHE_SIZE:
                self._opened.popitem(last=False)
        shown = []
        for i, entry in enumerate(logs):
            nonce = hashlib.sha256(
                b"coco-gateway/log-nonce/v1"
                + opened.response_key
                + bytes(tx.hash)
                + i.to_bytes(4, "big")
            ).digest()[:12]
            sealed = envelope.seal_response(
                bytes(entry.data),
                response_key=opened.response_key,
                request_digest=opened.request_digest,
                purpose=envelope.Purpose.LOG,
                index=i,
                nonce=nonce,
            )
            shown.append(SimpleNamespace(address=entry.address, topics=entry.topics, data=sealed))
        return shown

    def activity(
        self, headers: Iterable[BlockHeaderAPI], sender: bytes, *, limit: int
    ) -> list[dict[str, Any]]:
        """``sender``'s transactions in ``headers`` (give them newest first), newest first."""
        out: list[dict[str, Any]] = []
        for header in headers:
            data = self.data(header)
            for i in reversed(range(len(data.txs))):
                if bytes(data.txs[i].sender) == sender:
                    receipt = self.receipt_at(data, i)
                    out.append(
                        {
                            "hash": receipt["transactionHash"],
                            "blockNumber": receipt["blockNumber"],
                            "to": receipt["to"],
                            "contractAddress": receipt["contractAddress"],
                            "status": receipt["status"],
                        }
                    )
                    if len(out) >= limit:
                        return out
        return out


def pending_tx_rpc(ptx: PoolTx) -> dict[str, Any]:
    """A pooled transaction, as eth_getTransactionByHash shows one not yet mined."""
    return fmt.tx_to_rpc(
        ptx.tx,
        block_hash=None,
        block_number=None,
        index=None,
        base_fee=None,  # type: ignore[arg-type]
    )
