"""The execution engine: the chain, its head and its pool, and one place to reach each part.

Runs inside the enclave room only. It is synchronous and CPU-bound by nature (py-evm);
the enclave runtime keeps it off the host's event loop. The work is done in the modules
named here, each given its inputs explicitly: ``admission`` (decode, admit, envelopes),
``building`` (select and execute a block), ``views`` (blocks, transactions, receipts),
``logs``, ``calls`` (call, estimate, access lists) and ``fees``. What stays here is the
state they share: the head, the pool, the caches, and block references (tags, numbers,
hashes) resolved against the head.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

from eth import constants
from eth.abc import BlockHeaderAPI
from eth.exceptions import BlockNotFound, HeaderNotFound

from gateway.errors import InvalidParams, ServerError
from gateway.execution import access, building, fees
from gateway.execution.admission import Admission, EnvelopeKeys
from gateway.execution.building import BlockSelection, PreparedBlock
from gateway.execution.calls import CallArgs, Calls
from gateway.execution.chain import GenesisSpec, open_chain
from gateway.execution.logs import LogFilter, LogVisibility, query_logs
from gateway.execution.osaka import transaction_gas_limit_cap
from gateway.execution.pool import PoolTx, TxPool
from gateway.execution.views import BlockViews, TxFilter, pending_tx_rpc

log = logging.getLogger("gateway.execution")


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
        tx_builder = vm_class.get_transaction_builder()
        self.tx_gas_cap = transaction_gas_limit_cap(vm_class)  # EIP-7825, from Osaka on
        self.admission = Admission(
            tx_builder, self.chain_id, self.tx_gas_cap, envelopes, require_encryption
        )
        self.calls = Calls(self.chain, tx_builder, self.chain_id, self.tx_gas_cap, envelopes)
        self.views = BlockViews(
            self.chain.chaindb, tx_builder, vm_class.get_receipt_builder(), envelopes
        )
        self._head_state: Any = None

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

    def proof(
        self, address: bytes, keys: Sequence[bytes], header: BlockHeaderAPI
    ) -> dict[str, Any]:
        """eth_getProof (EIP-1186) at ``header``'s state root."""
        return access.account_proof(self.chain.chaindb.db, header, address, keys)

    # ---------------------------------------------------------------- fees
    def next_base_fee(self) -> int:
        return fees.next_base_fee(self.head)

    def gas_price(self) -> int:
        return fees.gas_price(self.head)

    def fee_history(
        self, count: int, newest: BlockHeaderAPI, percentiles: Sequence[float]
    ) -> dict[str, Any]:
        return fees.fee_history(
            count,
            newest,
            percentiles,
            header_by_number=self.header_by_number,
            block_data=self.views.data,
        )

    # ---------------------------------------------------------------- admission
    def set_require_encryption(self, required: bool) -> None:
        """Refuse plain call data and init code from now on (or accept it again): on a
        governed chain the ``requireEncryption`` policy at the head decides."""
        if self.admission.require_encryption != required:
            self.require_encryption = required
            self.admission = dataclasses.replace(self.admission, require_encryption=required)

    def admit(self, raw: bytes, *, restoring: bool = False, sender: bytes | None = None) -> PoolTx:
        """Check a signed transaction against the pool's rules and the head state
        (``sender``: vouched for by the attested enclave that forwarded it)."""
        return self.admission.admit(
            raw,
            head=self.head,
            base_fee=self.next_base_fee(),
            state=self._state(self.head),
            pool=self.pool,
            restoring=restoring,
            sender=sender,
        )

    def accept(self, ptx: PoolTx) -> None:
        self.pool.add(ptx, ptx.replaces)

    def executable_count(self) -> int:
        """How many pooled transactions could go into the next block."""
        state = self._state(self.head)
        return len(self.pool.executable(lambda s: int(state.get_nonce(s)), self.next_base_fee()))

    def pending_hashes(self, sender: bytes | None = None) -> list[bytes]:
        if sender is None:
            return self.pool.hashes()
        return [h for h in self.pool.hashes() if (p := self.pool.get(h)) and p.sender == sender]

    # ---------------------------------------------------------------- blocks
    def build_block(self, timestamp: int, extra_data: bytes = b"") -> PreparedBlock:
        """Execute pool transactions on top of head. Nothing is committed here."""
        return self.execute_block(self.select_block(timestamp, extra_data))

    def select_block(self, timestamp: int, extra_data: bytes = b"") -> BlockSelection:
        """Choose the next block's header and transactions (reads the pool: hold the lock)."""
        return building.select_block(
            self.chain,
            self.head,
            self.pool,
            coinbase=self.coinbase,
            timestamp=timestamp,
            extra_data=extra_data,
        )

    def execute_block(
        self,
        selection: BlockSelection,
        random_key: bytes | None = None,
        deadline: float | None = None,
    ) -> PreparedBlock:
        """Run the selected transactions (touches no shared structure: no lock needed).
        ``random_key``: the block randomness key of the random precompile; ``deadline``: no
        transaction is started after it (``building.execute_block``)."""
        return building.execute_block(self.chain, selection, random_key, deadline)

    def on_committed(self, prepared: PreparedBlock) -> None:
        self.head = prepared.header
        self._head_state = None
        self.views.remember(prepared.header, tuple(prepared.block.transactions), prepared.receipts)
        state = self._state(self.head)
        building.prune_pool(self.pool, prepared, lambda s: int(state.get_nonce(s)))
        self.finalized_number = self.head.block_number

    def on_imported(self, included: Sequence[bytes]) -> None:
        """A block built elsewhere was committed on its attested diff: its header (the
        diff moved py-evm's canonical head) is the head; its transactions leave the pool."""
        self.head = self.chain.get_canonical_head()
        self._head_state = None
        state = self._state(self.head)
        self.pool.remove(included)
        self.pool.remove(p.hash for p in self.pool.stale(lambda s: int(state.get_nonce(s))))
        self.finalized_number = self.head.block_number

    def on_abandoned(self) -> None:
        """Building or committing failed: the buffered writes were discarded."""
        self.head = self.chain.get_canonical_head()
        self._head_state = None
        self.views.clear()

    # ---------------------------------------------------------------- views
    def block_rpc(
        self, header: BlockHeaderAPI, full: bool, visible: TxFilter | None = None
    ) -> dict[str, Any]:
        """The block; ``visible`` picks which transactions the caller may see."""
        return self.views.block_rpc(header, full, visible)

    def block_rpc_of(
        self, header: BlockHeaderAPI, tx_hashes: Sequence[bytes], tx_bytes: int
    ) -> dict[str, Any]:
        """``block_rpc(header, False)`` from known transaction hashes and encoded size."""
        return self.views.block_rpc_of(header, tx_hashes, tx_bytes)

    def block_tx_count(self, header: BlockHeaderAPI) -> int:
        return self.views.block_tx_count(header)

    def _locate(self, tx_hash: bytes) -> tuple[BlockHeaderAPI, int] | None:
        found = self.views.locate(tx_hash)
        if found is None:
            return None
        header = self.header_by_number(found[0])
        return None if header is None else (header, found[1])

    def tx_rpc(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self._locate(tx_hash)
        if found is None:
            ptx = self.pool.get(tx_hash)
            return None if ptx is None else pending_tx_rpc(ptx)
        header, index = found
        return self.views.tx_by_index_rpc(header, index)

    def tx_by_index_rpc(self, header: BlockHeaderAPI, index: int) -> dict[str, Any] | None:
        return self.views.tx_by_index_rpc(header, index)

    def receipt_rpc(self, tx_hash: bytes) -> dict[str, Any] | None:
        found = self._locate(tx_hash)
        if found is None:
            return None
        header, index = found
        return self.views.receipt_at(self.views.data(header), index)

    def block_receipts_rpc(self, header: BlockHeaderAPI) -> list[dict[str, Any]]:
        return self.views.block_receipts_rpc(header)

    def activity(self, sender: bytes, *, max_blocks: int = 5000, limit: int = 200) -> list[Any]:
        """``sender``'s mined transactions, newest first (a bounded scan of recent blocks)."""
        return self.views.activity(self._recent_headers(max_blocks), sender, limit=limit)

    def _recent_headers(self, max_blocks: int) -> Iterator[BlockHeaderAPI]:
        stop = max(0, self.head.block_number - max_blocks)
        for number in range(self.head.block_number, stop, -1):
            header = self.header_by_number(number)
            if header is not None:
                yield header

    # ---------------------------------------------------------------- logs
    def logs(self, flt: LogFilter, visible: LogVisibility | None = None) -> list[dict[str, Any]]:
        """Matching logs; ``visible(tx, topics)`` hides the ones the caller may not see."""
        return query_logs(
            flt,
            self.views,
            head_number=self.head.block_number,
            header_by_number=self.header_by_number,
            header_by_hash=self.header_by_hash,
            visible=visible,
        )

    # ---------------------------------------------------------------- calls
    def call(self, args: CallArgs, header: BlockHeaderAPI) -> bytes:
        """Return data; for an enveloped call, sealed to the caller's response key."""
        return self.calls.call(args, header)

    def estimate_gas(self, args: CallArgs, header: BlockHeaderAPI) -> int:
        return self.calls.estimate_gas(args, header, self.head.gas_limit)

    def create_access_list(
        self,
        args: CallArgs,
        header: BlockHeaderAPI,
        given: Sequence[tuple[bytes, Sequence[bytes]]] = (),
    ) -> dict[str, Any]:
        return self.calls.create_access_list(args, header, self._state(header), given)
