"""The execution engine: admits transactions, builds blocks, answers state queries.

Runs inside the enclave room only. It is synchronous and CPU-bound by nature (py-evm);
the enclave runtime keeps it off the host's event loop.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

import rlp
from eth import constants
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth.exceptions import (
    BlockNotFound,
    HeaderNotFound,
    TransactionNotFound,
)
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.spoof import SpoofTransaction
from eth_bloom import BloomFilter
from eth_utils import ValidationError

from gateway.errors import (
    AccountStateRefusal,
    ExecutionReverted,
    InvalidParams,
    LimitExceeded,
    ServerError,
)
from gateway.execution import access, rlpscan
from gateway.execution import format as fmt
from gateway.execution.chain import GenesisSpec, open_chain
from gateway.execution.osaka import gas_limit_too_high, transaction_gas_limit_cap
from gateway.execution.pool import PoolTx, TxPool
from gateway.execution.revert import decode_revert_reason, vm_error_message
from gateway.protocol import envelope

log = logging.getLogger("gateway.execution")

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_TX_SIZE = 128 * 1024  # geth's txMaxSize
MAX_INITCODE_SIZE = 2 * 24_576  # EIP-3860
CALL_GAS_CAP = 50_000_000  # geth's default RPC gas cap
MAX_LOG_BLOCK_RANGE = 10_000
MAX_LOG_RESULTS = 10_000
SUPPORTED_TX_TYPES = (0, 1, 2)
DEFAULT_PRIORITY_FEE = 1_000_000_000  # 1 gwei, suggested tip
MAX_ACCESS_LIST_ROUNDS = 16  # eth_createAccessList re-runs until its list is stable
ENVELOPE_NOT_TRACED = (
    "invalid argument 0 (transaction.input): eth_createAccessList does not trace enveloped "
    "(encrypted) call data: the list of accounts and storage slots the call touched would "
    "show in plaintext what the encrypted call did"
)


TxFilter = Callable[[Any], bool]
LogVisibility = Callable[[Any, Sequence[Any]], bool]


def sender_of(tx: Any) -> bytes:
    return bytes(tx.sender)


def topic_bytes(topic: Any) -> bytes:
    return topic.to_bytes(32, "big") if isinstance(topic, int) else bytes(topic)


class EnvelopeKeys(Protocol):
    """The enclave's side of the envelope format: opens request envelopes."""

    def open(
        self, data: bytes, sender: bytes, to: bytes | None, *, admission: bool
    ) -> envelope.OpenedRequest: ...


@dataclass(frozen=True)
class CallArgs:
    """A call or gas estimate, as parsed from JSON-RPC."""

    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None


@dataclass(frozen=True)
class LogFilter:
    from_block: int
    to_block: int
    addresses: tuple[bytes, ...] = ()
    # topics[i] is None (any) or a tuple of alternatives
    topics: tuple[tuple[bytes, ...] | None, ...] = ()
    block_hash: bytes | None = None


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

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header


@dataclass
class _BlockData:
    header: BlockHeaderAPI
    txs: tuple[SignedTransactionAPI, ...]
    receipts: tuple[ReceiptAPI, ...]
    first_log_index: tuple[int, ...]


class Engine:
    def __init__(
        self,
        kv: MutableMapping[bytes, bytes],
        spec: GenesisSpec,
        *,
        create: bool,
        coinbase: bytes = constants.ZERO_ADDRESS,
        envelopes: EnvelopeKeys | None = None,
        require_encryption: bool = False,
    ) -> None:
        self.envelopes = envelopes
        self.require_encryption = require_encryption
        self.spec = spec
        self.chain_id = spec.chain_id
        self.chain = open_chain(spec, kv, create=create)
        self.coinbase = coinbase
        self.pool = TxPool()
        self.head: BlockHeaderAPI = self.chain.get_canonical_head()
        self.finalized_number = self.head.block_number
        vm_class = self.chain.get_vm_class(self.head)
        self._tx_builder = vm_class.get_transaction_builder()
        self._receipt_builder = vm_class.get_receipt_builder()
        self.tx_gas_cap = transaction_gas_limit_cap(vm_class)  # EIP-7825, from Osaka on
        self._block_cache: OrderedDict[bytes, _BlockData] = OrderedDict()
        self._head_state: Any = None
        self._opened: OrderedDict[bytes, envelope.OpenedRequest] = OrderedDict()

    # ---------------------------------------------------------------- block references
    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        if number < 0 or number > self.head.block_number:
            return None
        try:
            return self.chain.get_canonical_block_header_by_number(number)  # type: ignore[arg-type]
        except HeaderNotFound:
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        try:
            header = self.chain.get_block_header_by_hash(block_hash)  # type: ignore[arg-type]
        except (HeaderNotFound, BlockNotFound):
            return None
        canonical = self.header_by_number(header.block_number)
        return header if canonical is not None and canonical.hash == header.hash else None

    def resolve(self, ref: Any) -> BlockHeaderAPI | None:
        """A block reference from the API: a tag, a number, or {"hash": bytes}."""
        if isinstance(ref, dict):
            return self.header_by_hash(ref["hash"])
        if isinstance(ref, int):
            return self.header_by_number(ref)
        if ref in ("latest", "pending"):
            return self.head
        if ref == "earliest":
            return self.header_by_number(0)
        if ref in ("safe", "finalized"):
            return self.header_by_number(self.finalized_number)
        raise InvalidParams(f"unknown block tag {ref!r}")

    def require(self, ref: Any) -> BlockHeaderAPI:
        header = self.resolve(ref)
        if header is None:
            if isinstance(ref, dict):
                raise ServerError(f"header for hash 0x{ref['hash'].hex()} not found")
            raise ServerError("header not found")
        return header

    # ---------------------------------------------------------------- account state
    def _state(self, header: BlockHeaderAPI) -> Any:  # py-evm's StateAPI, loosely typed
        """Read-only state at ``header``; the head's is kept, with its warm caches."""
        if header.hash == self.head.hash:
            if self._head_state is None:
                self._head_state = self.chain.get_vm(header).state
            return self._head_state
        return self.chain.get_vm(header).state

    def balance(self, address: bytes, header: BlockHeaderAPI) -> int:
        return int(self._state(header).get_balance(address))

    def nonce(self, address: bytes, header: BlockHeaderAPI, *, pending: bool = False) -> int:
        n = int(self._state(header).get_nonce(address))
        return self.pool.pending_nonce(address, n) if pending else n

    def code(self, address: bytes, header: BlockHeaderAPI) -> bytes:
        return bytes(self._state(header).get_code(address))

    def storage(self, address: bytes, slot: int, header: BlockHeaderAPI) -> int:
        return int(self._state(header).get_storage(address, slot))

    # ---------------------------------------------------------------- fees
    def next_base_fee(self) -> int:
        return int(calculate_expected_base_fee_per_gas(self.head))

    def gas_price(self) -> int:
        return self.next_base_fee() + DEFAULT_PRIORITY_FEE

    def fee_history(
        self, count: int, newest: BlockHeaderAPI, percentiles: Sequence[float]
    ) -> dict[str, Any]:
        count = max(0, min(count, 1024, newest.block_number + 1))
        oldest = newest.block_number - count + 1
        base_fees: list[str] = []
        ratios: list[float] = []
        rewards: list[list[str]] = []
        for number in range(oldest, newest.block_number + 1):
            header = self.header_by_number(number)
            assert header is not None
            base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
            base_fees.append(fmt.qty(base_fee))
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
            if percentiles:
                rewards.append([fmt.qty(r) for r in self._rewards(header, base_fee, percentiles)])
        if count:
            base_fees.append(fmt.qty(int(calculate_expected_base_fee_per_gas(newest))))
        out: dict[str, Any] = {
            "oldestBlock": fmt.qty(oldest if count else newest.block_number),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
        }
        if percentiles:
            out["reward"] = rewards
        return out

    def _rewards(
        self, header: BlockHeaderAPI, base_fee: int, percentiles: Sequence[float]
    ) -> list[int]:
        data = self._block_data(header)
        if not data.txs:
            return [0 for _ in percentiles]
        items = []
        previous = 0
        for tx, receipt in zip(data.txs, data.receipts, strict=True):
            items.append(
                (fmt.effective_gas_price(tx, base_fee) - base_fee, receipt.gas_used - previous)
            )
            previous = receipt.gas_used
        items.sort()
        total = sum(g for _, g in items) or 1
        out = []
        for p in percentiles:
            threshold = total * p / 100
            acc = 0
            chosen = items[-1][0]
            for tip, gas in items:
                acc += gas
                if acc >= threshold:
                    chosen = tip
                    break
            out.append(max(chosen, 0))
        return out

    # ---------------------------------------------------------------- admission
    def decode(self, raw: bytes) -> SignedTransactionAPI:
        if len(raw) > MAX_TX_SIZE:
            raise ServerError(
                f"oversized data: the transaction is {len(raw)} bytes, the limit is "
                f"{MAX_TX_SIZE} bytes"
            )
        if not raw:
            raise InvalidParams("invalid raw transaction: empty input")
        if raw[0] <= 0x7F and raw[0] not in SUPPORTED_TX_TYPES:
            raise ServerError("transaction type not supported")
        try:
            # the structure first, cheaply: py-rlp's recursive decode of absurd nesting
            # costs gigabytes before it fails
            rlpscan.check(memoryview(raw)[1:] if raw[0] <= 0x7F else raw)
        except rlpscan.RlpShapeError as exc:
            raise InvalidParams(f"invalid raw transaction: {exc}") from None
        try:
            tx = self._tx_builder.decode(raw)
        except Exception:  # rlp and py-evm raise a zoo of types for malformed input
            raise InvalidParams(
                "invalid raw transaction: not a valid RLP-encoded signed transaction"
            ) from None
        return tx

    def admit(self, raw: bytes, *, restoring: bool = False) -> PoolTx:
        """Check a signed transaction against the pool's rules and head state.

        ``restoring`` re-admits a transaction the node had accepted before a restart: the
        rules that judge it against the head state of the moment (fee cap against the base
        fee, cost against the balance, the envelope's epoch window) are not applied again,
        since a running node would have kept it waiting too.
        """
        tx = self.decode(raw)
        if not 0 < tx.s <= SECP256K1_N // 2 or not 0 < tx.r < SECP256K1_N:
            # EIP-2: only the low-s form of a signature is valid, so each has one encoding
            raise ServerError("invalid transaction v, r, s values")
        try:
            tx.validate()
            sender = tx.sender
        except Exception:
            raise ServerError("invalid sender: the signature does not recover an address") from None
        kind = fmt.tx_type(tx)
        chain_id = tx.chain_id
        if chain_id is None:
            raise ServerError("only replay-protected (EIP-155) transactions allowed over RPC")
        if chain_id != self.chain_id:
            raise ServerError(f"invalid chain id for signer: have {chain_id} want {self.chain_id}")
        intrinsic = int(tx.intrinsic_gas)
        if tx.gas < intrinsic:
            raise ServerError(f"intrinsic gas too low: have {tx.gas}, want {intrinsic}")
        if tx.gas > self.head.gas_limit:
            raise ServerError("exceeds block gas limit")
        if self.tx_gas_cap is not None and tx.gas > self.tx_gas_cap:
            raise ServerError(gas_limit_too_high(tx.gas, self.tx_gas_cap))
        if kind == 2:
            fee_cap, tip_cap = int(tx.max_fee_per_gas), int(tx.max_priority_fee_per_gas)
            if tip_cap > fee_cap:
                raise ServerError(
                    f"max priority fee per gas higher than max fee per gas: address "
                    f"0x{sender.hex()}, maxPriorityFeePerGas: {tip_cap}, maxFeePerGas: {fee_cap}"
                )
        else:
            fee_cap = tip_cap = int(tx.gas_price)
        base_fee = self.next_base_fee()
        if fee_cap < base_fee and not restoring:
            raise ServerError(
                f"max fee per gas less than block base fee: address 0x{sender.hex()}, "
                f"maxFeePerGas: {fee_cap}, baseFee: {base_fee}"
            )
        plaintext = self._open_envelope(tx.data, sender, tx.to, admission=not restoring)
        code = plaintext if plaintext is not None else bytes(tx.data)
        _check_initcode(tx.to, code)
        state = self._state(self.head)
        if (
            self.require_encryption
            and plaintext is None
            and tx.data
            and (not tx.to or state.get_code(tx.to))
        ):
            raise ServerError(
                "this node requires encrypted call data and init code: seal the data to "
                "the enclave's transaction key (coco_getAttestation) in an envelope; "
                "plain value transfers are accepted"
            )
        ptx = PoolTx(
            hash=bytes(tx.hash),
            sender=bytes(sender),
            nonce=int(tx.nonce),
            gas=int(tx.gas),
            fee_cap=fee_cap,
            tip_cap=tip_cap,
            raw=raw,
            tx=tx,
            plaintext=plaintext,
        )
        replaces = self.pool.check(ptx, int(state.get_nonce(sender)))
        cost = tx.gas * fee_cap + tx.value
        balance = int(state.get_balance(sender))
        if balance < cost and not restoring:
            raise _insufficient_funds(bytes(sender), balance, cost)
        ptx.replaces = replaces
        return ptx

    def _open_envelope(
        self, data: bytes, sender: bytes, to: bytes | None, *, admission: bool
    ) -> bytes | None:
        """The plaintext of enveloped data (None for plain data); a bad envelope is refused."""
        if self.envelopes is None or not envelope.is_envelope(data):
            return None
        try:
            return self.envelopes.open(data, sender, to or None, admission=admission).plaintext
        except envelope.EnvelopeError as exc:
            detail, fields = _envelope_refusal(exc, sender, to)
            raise ServerError(
                f"invalid transaction envelope: {detail}", {"reason": exc.reason, **fields}
            ) from None

    def accept(self, ptx: PoolTx) -> None:
        self.pool.add(ptx, ptx.replaces)

    # ---------------------------------------------------------------- blocks
    def build_block(self, timestamp: int, extra_data: bytes = b"") -> PreparedBlock:
        """Execute pool transactions on top of head. Nothing is committed here."""
        return self.execute_block(self.select_block(timestamp, extra_data))

    def select_block(self, timestamp: int, extra_data: bytes = b"") -> BlockSelection:
        """Choose the next block's header and transactions (reads the pool: hold the lock)."""
        parent = self.head
        timestamp = max(timestamp, parent.timestamp + 1)
        header = self.chain.create_header_from_parent(
            parent,
            timestamp=timestamp,
            coinbase=self.coinbase,
            extra_data=extra_data[:32],
            gas_limit=parent.gas_limit,
        )
        vm = self.chain.get_vm(header)
        state: Any = vm.state
        base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
        candidates = self.pool.executable(lambda s: int(state.get_nonce(s)), base_fee)
        return BlockSelection(parent, header, vm, candidates)

    def execute_block(self, selection: BlockSelection) -> PreparedBlock:
        """Run the selected transactions and seal the state root.

        Touches no shared engine structure: the pool may take new transactions meanwhile.
        """
        vm = selection.vm
        state: Any = vm.state
        candidates = selection.candidates
        header = selection.header
        txs: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        included: list[bytes] = []
        dropped: list[tuple[bytes, str]] = []
        blocked: set[bytes] = set()
        running = header
        for ptx in candidates:
            if ptx.sender in blocked:
                continue
            if ptx.gas > running.gas_limit - running.gas_used:
                blocked.add(ptx.sender)  # waits for the next block, with its successors
                continue
            # py-evm's own validation runs after it has locked the state's checkpoints, so
            # a transaction it rejects cannot be reverted: check what can change since
            # admission (nonce, funds) here, and let only valid transactions reach it.
            tx: Any = ptx.tx
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
            try:
                receipt, _computation = vm.apply_transaction(running, runnable)
            except ValidationError as exc:
                raise BuildAborted(ptx.hash, str(exc)) from None
            running = vm.add_receipt_to_header(running, receipt)
            txs.append(tx)
            receipts.append(receipt)
            included.append(ptx.hash)
        block = vm.set_block_transactions_and_withdrawals(vm.get_block(), running, txs, receipts)
        mined = vm.mine_block(block).block
        self.chain.chaindb.persist_block(mined)
        return PreparedBlock(
            block=mined, receipts=tuple(receipts), included=included, dropped=dropped
        )

    def on_committed(self, prepared: PreparedBlock) -> None:
        self.head = prepared.header
        self._head_state = None
        self._remember(prepared.header, tuple(prepared.block.transactions), prepared.receipts)
        self.pool.remove(prepared.included)
        self.pool.remove(h for h, _ in prepared.dropped)
        state = self._state(self.head)
        stale = self.pool.stale(lambda s: int(state.get_nonce(s)))
        self.pool.remove(p.hash for p in stale)
        self.finalized_number = self.head.block_number

    def on_abandoned(self) -> None:
        """Building or committing failed: the buffered writes were discarded."""
        self.head = self.chain.get_canonical_head()
        self._head_state = None
        self._block_cache.clear()

    # ---------------------------------------------------------------- block data
    def _block_data(self, header: BlockHeaderAPI) -> _BlockData:
        cached = self._block_cache.get(header.hash)
        if cached is not None:
            self._block_cache.move_to_end(header.hash)
            return cached
        txs = tuple(self.chain.chaindb.get_block_transactions(header, self._tx_builder))
        receipts = tuple(self.chain.chaindb.get_receipts(header, self._receipt_builder))
        return self._remember(header, txs, receipts)

    def _remember(
        self,
        header: BlockHeaderAPI,
        txs: tuple[SignedTransactionAPI, ...],
        receipts: tuple[ReceiptAPI, ...],
    ) -> _BlockData:
        firsts = []
        count = 0
        for r in receipts:
            firsts.append(count)
            count += len(r.logs)
        data = _BlockData(header, txs, receipts, tuple(firsts))
        self._block_cache[header.hash] = data
        if len(self._block_cache) > 256:
            self._block_cache.popitem(last=False)
        return data

    def block_rpc(
        self, header: BlockHeaderAPI, full: bool, visible: TxFilter | None = None
    ) -> dict[str, Any]:
        """The block; ``visible`` picks which transactions the caller may see."""
        data = self._block_data(header)
        base_fee = getattr(header, "base_fee_per_gas", None)
        size = len(rlp.encode(header)) + sum(len(tx.encode()) for tx in data.txs) + 3
        out = fmt.header_to_rpc(header, size=size)
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
        out["uncles"] = []
        if getattr(header, "withdrawals_root", None) is not None:
            out["withdrawals"] = []
        return out

    def block_tx_count(self, header: BlockHeaderAPI) -> int:
        return len(self._block_data(header).txs)

    def _locate(self, tx_hash: bytes) -> tuple[BlockHeaderAPI, int] | None:
        try:
            number, index = self.chain.chaindb.get_transaction_index(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        header = self.header_by_number(number)
        if header is None:
            return None
        return header, index

    def tx_rpc(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self._locate(tx_hash)
        if found is None:
            ptx = self.pool.get(tx_hash)
            if ptx is None:
                return None
            return fmt.tx_to_rpc(
                ptx.tx,
                block_hash=None,
                block_number=None,
                index=None,
                base_fee=None,  # type: ignore[arg-type]
            )
        header, index = found
        return self.tx_by_index_rpc(header, index)

    def tx_by_index_rpc(self, header: BlockHeaderAPI, index: int) -> dict[str, Any] | None:
        data = self._block_data(header)
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

    def receipt_rpc(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self._locate(tx_hash)
        if found is None:
            return None
        header, index = found
        return self._receipt_at(self._block_data(header), index)

    def _receipt_at(self, data: _BlockData, index: int) -> dict[str, Any]:
        previous = data.receipts[index - 1].gas_used if index else 0
        tx = data.txs[index]
        return fmt.receipt_to_rpc(
            tx,
            data.receipts[index],
            header=data.header,
            index=index,
            gas_used=data.receipts[index].gas_used - previous,
            first_log_index=data.first_log_index[index],
            logs_shown=self._shown_logs(tx, data.receipts[index].logs),
        )

    def _shown_logs(self, tx: Any, logs: Sequence[Any]) -> list[Any]:
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
            if len(self._opened) > 4096:
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

    def block_receipts_rpc(self, header: BlockHeaderAPI) -> list[dict[str, Any]]:
        data = self._block_data(header)
        return [self._receipt_at(data, i) for i in range(len(data.txs))]

    def executable_count(self) -> int:
        """How many pooled transactions could go into the next block."""
        state = self._state(self.head)
        return len(self.pool.executable(lambda s: int(state.get_nonce(s)), self.next_base_fee()))

    def pending_hashes(self, sender: bytes | None = None) -> list[bytes]:
        if sender is None:
            return self.pool.hashes()
        return [h for h in self.pool.hashes() if (p := self.pool.get(h)) and p.sender == sender]

    def activity(self, sender: bytes, *, max_blocks: int = 5000, limit: int = 200) -> list[Any]:
        """``sender``'s mined transactions, newest first (a bounded scan of recent blocks)."""
        out: list[dict[str, Any]] = []
        stop = max(0, self.head.block_number - max_blocks)
        for number in range(self.head.block_number, stop, -1):
            header = self.header_by_number(number)
            if header is None:
                continue
            data = self._block_data(header)
            for i in reversed(range(len(data.txs))):
                if bytes(data.txs[i].sender) == sender:
                    receipt = self._receipt_at(data, i)
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

    # ---------------------------------------------------------------- logs
    def logs(self, flt: LogFilter, visible: LogVisibility | None = None) -> list[dict[str, Any]]:
        """Matching logs; ``visible(tx, topics)`` hides the ones the caller may not see."""
        if flt.block_hash is not None:
            header = self.header_by_hash(flt.block_hash)
            if header is None:
                raise ServerError(f"unknown block 0x{flt.block_hash.hex()}")
            headers: Sequence[BlockHeaderAPI] = [header]
        else:
            start, end = flt.from_block, min(flt.to_block, self.head.block_number)
            if end - start + 1 > MAX_LOG_BLOCK_RANGE:
                raise LimitExceeded(
                    f"block range too large: {end - start + 1} blocks, at most "
                    f"{MAX_LOG_BLOCK_RANGE} per eth_getLogs call"
                )
            headers = [h for n in range(start, end + 1) if (h := self.header_by_number(n))]
        out: list[dict[str, Any]] = []
        for header in headers:
            if not header.bloom or not _bloom_may_match(header.bloom, flt):
                continue
            data = self._block_data(header)
            for i, (tx, receipt) in enumerate(zip(data.txs, data.receipts, strict=True)):
                shown = None
                for j, entry in enumerate(receipt.logs):
                    if not _log_matches(entry, flt):
                        continue
                    if visible is not None and not visible(tx, entry.topics):
                        continue
                    if shown is None:
                        shown = self._shown_logs(tx, receipt.logs)
                    out.append(
                        fmt.log_to_rpc(
                            shown[j],
                            block_hash=header.hash,
                            block_number=header.block_number,
                            tx_hash=tx.hash,
                            tx_index=i,
                            log_index=data.first_log_index[i] + j,
                        )
                    )
                    if len(out) > MAX_LOG_RESULTS:
                        raise LimitExceeded(
                            f"query returned more than {MAX_LOG_RESULTS} results; "
                            "narrow the block range or the filter"
                        )
        return out

    # ---------------------------------------------------------------- calls
    def _run(
        self,
        args: CallArgs,
        header: BlockHeaderAPI,
        gas: int,
        plaintext: bytes | None = None,
        access_list: access.AccessList | None = None,
        watch: Callable[[Any], None] | None = None,
    ) -> Any:
        """Execute ``args`` on ``header``'s state and throw the changes away.

        ``plaintext`` is the decrypted data of an enveloped call: intrinsic gas is charged on
        the envelope (what a transaction would carry), the code runs on the plaintext.
        """
        _check_initcode(args.to, args.data if plaintext is None else plaintext)
        vm: Any = self.chain.get_vm(header)
        child = vm.create_header_from_parent(
            header, timestamp=max(int(time.time()), header.timestamp + 1), coinbase=header.coinbase
        )
        exec_header = (
            child.copy(gas_limit=max(CALL_GAS_CAP, header.gas_limit), base_fee_per_gas=0)
            if hasattr(child, "base_fee_per_gas")
            else child.copy(gas_limit=max(CALL_GAS_CAP, header.gas_limit))
        )
        # lazily: only a call that uses BLOCKHASH reads ancestor headers
        prev_hashes = itertools.islice(
            itertools.chain([header.hash], vm.previous_hashes or ()), 256
        )
        state: Any = vm.build_state(
            self.chain.chaindb.db, exec_header, vm.chain_context, prev_hashes
        )
        sender = args.sender or constants.ZERO_ADDRESS
        balance = int(state.get_balance(sender))
        if args.value > balance:
            raise _insufficient_funds(sender, balance, args.value)
        unsigned = vm.create_unsigned_transaction(
            nonce=int(state.get_nonce(sender)),
            gas_price=0,
            gas=gas,
            to=args.to or b"",
            value=args.value,
            data=args.data,
        )
        if access_list:  # eth_createAccessList: run as an EIP-2930 transaction would
            builder: Any = self._tx_builder
            unsigned = builder.new_unsigned_access_list_transaction(
                self.chain_id, unsigned.nonce, 0, gas, unsigned.to, args.value, args.data,
                [(a, [int.from_bytes(k, "big") for k in keys]) for a, keys in access_list],
            )  # fmt: skip
        if watch is not None:
            watch(state)
        if plaintext is None:
            tx = SpoofTransaction(unsigned, from_=sender)
        else:
            tx = SpoofTransaction(unsigned, from_=sender, data=plaintext)
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(tx)
        except ValidationError as exc:
            raise ServerError(_validation_message(str(exc))) from None
        finally:
            state.revert(snapshot)

    def _call_gas(self, args: CallArgs) -> int:
        gas = CALL_GAS_CAP if args.gas is None else min(args.gas, CALL_GAS_CAP)
        return gas

    def _open_call(self, args: CallArgs) -> envelope.OpenedRequest | None:
        if self.envelopes is None or not envelope.is_envelope(args.data):
            return None
        sender = args.sender or constants.ZERO_ADDRESS
        try:
            return self.envelopes.open(args.data, sender, args.to or None, admission=True)
        except envelope.EnvelopeError as exc:
            detail, fields = _envelope_refusal(exc, sender, args.to)
            raise InvalidParams(
                f"invalid call envelope: {detail}", {"reason": exc.reason, **fields}
            ) from None

    def call(self, args: CallArgs, header: BlockHeaderAPI) -> bytes:
        """Return data; for an enveloped call, sealed to the caller's response key."""
        opened = self._open_call(args)
        plaintext = None if opened is None else opened.plaintext
        computation = self._run(args, header, self._call_gas(args), plaintext)
        if computation.is_error:
            _raise_for(computation, opened)
        output = bytes(computation.output)
        if opened is None:
            return output
        return envelope.seal_response(
            output, response_key=opened.response_key, request_digest=opened.request_digest
        )

    def estimate_gas(self, args: CallArgs, header: BlockHeaderAPI) -> int:
        opened = self._open_call(args)
        plaintext = None if opened is None else opened.plaintext
        cap = self._call_gas(args) if args.gas is not None else self.head.gas_limit
        if self.tx_gas_cap is not None:
            # no transaction may carry more (EIP-7825); geth's estimator caps the same way,
            # while eth_call keeps the RPC gas cap, as geth's does
            cap = min(cap, self.tx_gas_cap)
        computation = self._run(args, header, cap, plaintext)
        if computation.is_error:
            if type(computation.error).__name__ == "OutOfGas":
                raise ServerError(f"gas required exceeds allowance ({cap})")  # geth's words
            _raise_for(computation, opened)
        used = cap - int(computation.get_gas_remaining())
        # try the common case first: what the run used plus the 1/64 withheld by CALLs
        hint = min(cap, used + used // 63 + 2300)
        lo, hi = used - 1, cap
        if self._succeeds(args, header, hint, plaintext):
            hi = hint
        else:
            lo = hint
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self._succeeds(args, header, mid, plaintext):
                hi = mid
            else:
                lo = mid
        return hi

    def _succeeds(
        self, args: CallArgs, header: BlockHeaderAPI, gas: int, plaintext: bytes | None
    ) -> bool:
        try:
            return not self._run(args, header, gas, plaintext).is_error
        except ServerError:
            return False

    # ---------------------------------------------------------------- access lists, proofs
    def create_access_list(
        self,
        args: CallArgs,
        header: BlockHeaderAPI,
        given: Sequence[tuple[bytes, Sequence[bytes]]] = (),
    ) -> dict[str, Any]:
        """eth_createAccessList, as geth answers it: run the call, list what it touched
        (less its sender, recipient, precompiles and coinbase, warm anyway), run it again
        with that list until the list stays the same; ``gasUsed`` is the last run's."""
        if self.envelopes is not None and envelope.is_envelope(args.data):
            raise InvalidParams(ENVELOPE_NOT_TRACED)
        state = self._state(header)
        sender = args.sender or constants.ZERO_ADDRESS
        to = args.to or fmt.contract_address(sender, int(state.get_nonce(sender)))
        vm_class: Any = self.chain.get_vm_class(header)
        precompiles = vm_class.get_state_class().computation_class.get_precompiles()
        excluded = {sender, to, bytes(header.coinbase), *(bytes(a) for a in precompiles)}
        gas = self._call_gas(args)
        tried = access.starting_list(given, excluded)
        for _round in range(MAX_ACCESS_LIST_ROUNDS):
            recorder = access.AccessRecorder()
            computation = self._run(args, header, gas, access_list=tried, watch=recorder.attach)
            found = recorder.access_list(excluded | access.created(computation))
            if found == tried:
                break
            tried = found
        used = vm_class.finalize_gas_used(SimpleNamespace(gas=gas), computation)
        out: dict[str, Any] = {
            "accessList": access.access_list_rpc(tried),
            "gasUsed": fmt.qty(used),
        }
        if computation.is_error:
            out["error"] = _failure(computation)
        return out

    def proof(
        self, address: bytes, keys: Sequence[bytes], header: BlockHeaderAPI
    ) -> dict[str, Any]:
        """eth_getProof (EIP-1186) at ``header``'s state root."""
        return access.account_proof(self.chain.chaindb.db, header, address, keys)


def _failure(computation: Any) -> str:
    """A failed run's error, as eth_createAccessList reports it (geth's wording)."""
    if type(computation.error).__name__ == "Revert":
        reason = decode_revert_reason(bytes(computation.output))
        return f"execution reverted: {reason}" if reason else "execution reverted"
    return vm_error_message(computation.error)


def _insufficient_funds(sender: bytes, balance: int, cost: int) -> AccountStateRefusal:
    text = f"insufficient funds for gas * price + value: address 0x{sender.hex()}"
    return AccountStateRefusal(
        f"{text} have {balance} want {cost}", f"{text} want {cost}", sender
    )


def _envelope_refusal(
    exc: envelope.EnvelopeError, sender: bytes, to: bytes | None
) -> tuple[str, dict[str, str]]:
    """The message and typed fields of a refused envelope. When the AEAD failed, they name
    the sender and recipient the node opened it for, so a client can tell a wrong sender
    or recipient from an altered envelope; the caller knows both already (the transaction's
    signer and recipient, or the identity it called as)."""
    if type(exc) is not envelope.EnvelopeAuthenticationError:
        return str(exc), {}
    recipient = "0x" + bytes(to).hex() if to else None
    opened = f"the node opened it for sender 0x{bytes(sender).hex()} and " + (
        f"recipient {recipient}" if recipient else "a contract creation"
    )
    fields = {"sender": "0x" + bytes(sender).hex()}
    if recipient:
        fields["recipient"] = recipient
    return f"{exc} ({opened})", fields


def _check_initcode(to: bytes | None, code: bytes) -> None:
    """EIP-3860 (Shanghai and later), with geth's words; py-evm would raise it as OutOfGas."""
    if not to and len(code) > MAX_INITCODE_SIZE:
        raise ServerError(
            f"max initcode size exceeded: code size {len(code)} limit {MAX_INITCODE_SIZE}"
        )


def _raise_for(computation: Any, opened: envelope.OpenedRequest | None = None) -> None:
    error = computation.error
    if computation.is_error and type(error).__name__ == "Revert":
        output = bytes(computation.output)
        if opened is not None:
            # the reason is the caller's secret: only the sealed revert data goes back
            sealed = envelope.seal_response(
                output,
                response_key=opened.response_key,
                request_digest=opened.request_digest,
                purpose=envelope.Purpose.REVERT,
            )
            raise ExecutionReverted(None, sealed)
        raise ExecutionReverted(decode_revert_reason(output), output)
    raise ServerError(vm_error_message(error))


def _validation_message(text: str) -> str:
    if "intrinsic" in text.lower():
        return "intrinsic gas too low"
    if "gas" in text.lower() and "limit" in text.lower():
        return "gas limit too high for a call"
    return "the call is not valid against the chosen block's state"


def _bloom_may_match(bloom_value: int, flt: LogFilter) -> bool:
    bloom = BloomFilter(bloom_value)
    if flt.addresses and not any(a in bloom for a in flt.addresses):
        return False
    for alternatives in flt.topics:
        if alternatives and not any(t in bloom for t in alternatives):
            return False
    return True


def _log_matches(entry: Any, flt: LogFilter) -> bool:
    if flt.addresses and bytes(entry.address) not in flt.addresses:
        return False
    topics = [t.to_bytes(32, "big") if isinstance(t, int) else bytes(t) for t in entry.topics]
    for i, alternatives in enumerate(flt.topics):
        if alternatives is None or not alternatives:
            continue
        if i >= len(topics) or topics[i] not in alternatives:
            return False
    return True

