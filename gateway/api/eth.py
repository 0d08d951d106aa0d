"""eth_, net_, web3_ and txpool_ methods, and Api, which gathers every namespace's handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import __version__
from gateway.api import params as p
from gateway.api.base import ChainView, Method
from gateway.api.coco import CocoMethods
from gateway.api.dev import DevMethods
from gateway.api.filters import FilterManager
from gateway.api.gov import GovMethods
from gateway.api.params import hexdata, qty
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient
from gateway.errors import ServerError, Unauthorized

log = logging.getLogger("gateway.api")

PENDING_HIDDEN = (
    "pending-transaction notifications are not offered on this node: with privacy "
    "strict they would reveal other accounts' activity"
)


@dataclass
class Api(CocoMethods, DevMethods, GovMethods):
    """Every namespace's handlers on one object; ``methods()`` is the registry."""

    enclave: EnclaveClient
    dev: bool = False
    on_transaction: Callable[[bytes], None] = lambda _h: None
    on_governance: Callable[[bytes], None] = lambda _h: None  # a record pooled here
    # a session signed out here: its revocation, sealed for the other nodes (a consortium
    # node sends it to its peers; docs/PROTOCOL.md, "Session revocation")
    on_sign_out: Callable[[bytes], None] = lambda _r: None
    mine: Callable[[], Awaitable[None]] | None = None
    filters: FilterManager = field(init=False)
    chain_id: int = 0
    view: ChainView = field(default_factory=ChainView)
    strict: bool = False
    # a consortium node's own status (coco_nodeStatus); None on the dev node
    node_status: Callable[[], Awaitable[dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        self.filters = FilterManager(self.enclave, lambda: self.view.head_number)

    async def start(self) -> None:
        status = await self.enclave.request(m.GetStatus())
        self.chain_id = int(status["chainId"])
        self.view.head_number = int(status["head"]["number"])
        self.strict = status.get("privacy") == "strict"
        self.view.gas_price = int(status.get("gasPrice", 0))  # none before the secret is here

    def methods(self) -> dict[str, Method]:
        """The handlers by method name. No anvil_* or hardhat_* method is offered: forge and
        Hardhat probe them and must get -32601 to know this is not Anvil or Hardhat Network."""
        table: dict[str, Method] = {}
        for name in dir(self):
            if name.startswith(("eth_", "net_", "web3_", "coco_", "txpool_", "evm_")):
                table[name] = getattr(self, name)
        if not self.dev:
            table.pop("evm_mine", None)
        return table

    # ------------------------------------------------------------------ chain facts
    async def eth_chainId(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return qty(self.chain_id)

    async def net_version(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return str(self.chain_id)

    async def net_listening(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 0)
        return True

    async def net_peerCount(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        if self.node_status is None:
            return "0x0"  # the dev chain: a consortium of one
        return qty(len((await self.node_status())["peers"]))

    async def web3_clientVersion(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return f"coco-gateway/v{__version__}/python"

    async def web3_sha3(self, params: list[Any], ctx: Any) -> str:
        from eth_utils import keccak

        p.arity(params, 1)
        return hexdata(keccak(p.data(params[0], "data", 0)))

    async def eth_syncing(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 0)
        return False

    async def eth_mining(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 0)
        return True

    async def eth_hashrate(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return "0x0"

    async def eth_coinbase(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        from eth_utils import to_checksum_address

        status = await self._ask(m.GetStatus())
        return to_checksum_address(status["validator"])

    async def eth_accounts(self, params: list[Any], ctx: Any) -> list[str]:
        p.arity(params, 0)
        if not self.dev:
            return []
        from eth_utils import to_checksum_address

        status = await self._ask(m.GetStatus())
        return [to_checksum_address(a) for a in status["devAccounts"]]

    async def eth_blockNumber(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return qty(self.view.head_number)

    async def eth_gasPrice(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return qty(self.view.gas_price)

    async def eth_maxPriorityFeePerGas(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return qty(10**9)

    async def eth_blobBaseFee(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return "0x1"

    async def eth_feeHistory(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2, 1)
        raw_count = params[0]
        if isinstance(raw_count, int) and not isinstance(raw_count, bool) and raw_count >= 0:
            count = raw_count
        else:
            count = p.quantity(raw_count, "blockCount", 0, bits=64)
        newest = p.block_number_or_tag(params[1], "newestBlock", 1)
        percentiles_raw = p.optional(params, 2, [])
        if not isinstance(percentiles_raw, list):
            raise p.bad("rewardPercentiles", 2, "expected an array of numbers")
        percentiles: list[float] = []
        for value in percentiles_raw:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 100
            ):
                raise p.bad("rewardPercentiles", 2, f"{value!r} is not a number from 0 to 100")
            if percentiles and value < percentiles[-1]:
                raise p.bad("rewardPercentiles", 2, "percentiles must be in ascending order")
            percentiles.append(float(value))
        if count > 1024:
            raise p.bad("blockCount", 0, "at most 1024 blocks per call")
        return await self._ask(m.FeeHistory(count, newest, percentiles))

    # ------------------------------------------------------------------ blocks
    async def eth_getBlockByNumber(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        ref = p.block_number_or_tag(params[0], "block", 0)
        full = p.boolean(params[1], "hydrated", 1)
        return await self._ask(m.GetBlock(ref, full, auth=p.auth(ctx)))

    async def eth_getBlockByHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        block_hash = p.hash32(params[0], "blockHash", 0)
        full = p.boolean(params[1], "hydrated", 1)
        return await self._ask(m.GetBlock({"hash": block_hash}, full, auth=p.auth(ctx)))

    async def eth_getBlockTransactionCountByNumber(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        count = await self._ask(m.GetBlockTxCount(p.block_number_or_tag(params[0], "block", 0)))
        return None if count is None else qty(count)

    async def eth_getBlockTransactionCountByHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        count = await self._ask(m.GetBlockTxCount({"hash": p.hash32(params[0], "blockHash", 0)}))
        return None if count is None else qty(count)

    async def eth_getUncleCountByBlockNumber(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        block = await self._ask(m.GetBlock(p.block_number_or_tag(params[0], "block", 0)))
        return None if block is None else "0x0"

    async def eth_getUncleCountByBlockHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        block = await self._ask(m.GetBlock({"hash": p.hash32(params[0], "blockHash", 0)}))
        return None if block is None else "0x0"

    async def eth_getBlockReceipts(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        ref = p.block_ref(params[0], "block", 0)
        return await self._ask(m.GetBlockReceipts(ref, auth=p.auth(ctx)))

    # ------------------------------------------------------------------ transactions
    async def eth_getTransactionByHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        tx_hash = p.hash32(params[0], "transactionHash", 0)
        return self.view.observe(await self._ask(m.GetTx(tx_hash, p.auth(ctx))))

    async def eth_getTransactionReceipt(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        tx_hash = p.hash32(params[0], "transactionHash", 0)
        return self.view.observe(await self._ask(m.GetReceipt(tx_hash, p.auth(ctx))))

    async def eth_getTransactionByBlockNumberAndIndex(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        ref = p.block_number_or_tag(params[0], "block", 0)
        index = p.quantity(params[1], "index", 1, bits=32)
        return await self._ask(m.GetTxByBlockIndex(ref, index, p.auth(ctx)))

    async def eth_getTransactionByBlockHashAndIndex(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        ref = {"hash": p.hash32(params[0], "blockHash", 0)}
        index = p.quantity(params[1], "index", 1, bits=32)
        return await self._ask(m.GetTxByBlockIndex(ref, index, p.auth(ctx)))

    async def eth_sendRawTransaction(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        raw = p.data(params[0], "transaction", 0)
        tx_hash: bytes = await self._ask(m.SubmitRawTx(raw, p.auth(ctx)))
        self.on_transaction(tx_hash)
        return hexdata(tx_hash)

    async def eth_sendTransaction(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        if not self.dev:
            raise ServerError(
                "eth_sendTransaction needs an account unlocked on the node, and this node "
                "unlocks none; sign the transaction and use eth_sendRawTransaction"
            )
        tx = p.tx_object(params[0], "transaction", 0)
        if tx.get("from") is None:
            raise p.bad("transaction", 0, 'the "from" field is required')
        tx_hash: bytes = await self._ask(
            m.SubmitTx(
                sender=tx["from"],
                to=tx.get("to"),
                gas=tx.get("gas"),
                gas_price=tx.get("gasPrice"),
                max_fee_per_gas=tx.get("maxFeePerGas"),
                max_priority_fee_per_gas=tx.get("maxPriorityFeePerGas"),
                value=tx.get("value", 0),
                data=tx.get("data", b""),
                nonce=tx.get("nonce"),
                tx_type=tx.get("type"),
                auth=p.auth(ctx),
            )
        )
        self.on_transaction(tx_hash)
        return hexdata(tx_hash)

    # ------------------------------------------------------------------ state
    async def _account(self, kind: str, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1, 1)
        address = p.address(params[0], "address", 0)
        ref = p.block_ref(p.optional(params, 1, "latest"), "block", 1)
        return await self._ask(m.GetAccount(kind, address, ref, p.auth(ctx)))

    async def eth_getBalance(self, params: list[Any], ctx: Any) -> str:
        return qty(int(await self._account("balance", params, ctx)))

    async def eth_getTransactionCount(self, params: list[Any], ctx: Any) -> str:
        return qty(await self._account("nonce", params, ctx))

    async def eth_getCode(self, params: list[Any], ctx: Any) -> str:
        return hexdata(await self._account("code", params, ctx))

    async def eth_getStorageAt(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 2, 1)
        address = p.address(params[0], "address", 0)
        slot = p.quantity(params[1], "storageSlot", 1)
        ref = p.block_ref(p.optional(params, 2, "latest"), "block", 2)
        return hexdata(await self._ask(m.GetStorage(address, slot, ref, p.auth(ctx))))

    async def eth_call(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1, 2)
        if len(params) > 2 and params[2] not in (None, {}):
            raise p.bad("stateOverrides", 2, "state overrides are not supported")
        return hexdata(await self._ask(self._call_message(params, ctx, estimate=False)))

    async def eth_estimateGas(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1, 2)
        return qty(await self._ask(self._call_message(params, ctx, estimate=True)))

    def _call_message(self, params: list[Any], ctx: Any, *, estimate: bool) -> m.Call:
        tx = p.tx_object(params[0], "transaction", 0)
        signature, leash, node = p.signed_query(params[0])
        # a signed query is answered at the block it names (docs/PROTOCOL.md, version 3)
        default: Any = "pending" if estimate else "latest"
        if leash is not None:
            default = hex(leash["blockNumber"])
        ref = p.block_ref(p.optional(params, 1, default), "block", 1)
        return m.Call(
            ref=ref,
            sender=tx.get("from"),
            to=tx.get("to"),
            gas=tx.get("gas"),
            value=tx.get("value", 0),
            data=tx.get("data", b""),
            estimate=estimate,
            auth=p.auth(ctx),
            query_signature=signature,
            query_leash=leash,
            query_node=node,
        )

    # ------------------------------------------------------------------ logs and filters
    async def eth_getLogs(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self._ask(replace(p.log_query(params[0], "filter", 0), auth=p.auth(ctx)))

    async def eth_newFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        query = replace(p.log_query(params[0], "filter", 0), auth=p.auth(ctx))
        return await self.filters.new_log_filter(query)

    async def eth_newBlockFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return await self.filters.new_block_filter(p.auth(ctx))

    async def eth_newPendingTransactionFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0, 1)
        if self.strict:
            raise Unauthorized(PENDING_HIDDEN)
        return await self.filters.new_pending_filter(p.auth(ctx))

    async def eth_getFilterChanges(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self.filters.changes(p.filter_id(params[0]), p.auth(ctx))

    async def eth_getFilterLogs(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self.filters.all_logs(p.filter_id(params[0]), p.auth(ctx))

    async def eth_uninstallFilter(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 1)
        return self.filters.uninstall(p.filter_id(params[0]), p.auth(ctx))

    # ------------------------------------------------------------------ access lists, proofs
    async def eth_createAccessList(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1, 1)
        call = self._call_message(params, ctx, estimate=True)  # geth's default: "pending"
        given = p.access_list(params[0], "transaction", 0)
        return await self._ask(m.CreateAccessList.of_call(call, given))

    async def eth_getProof(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2, 1)
        address = p.address(params[0], "address", 0)
        keys = p.storage_keys(params[1], "storageKeys", 1)
        ref = p.block_ref(p.optional(params, 2, "latest"), "block", 2)
        return await self._ask(m.GetProof(address, keys, ref, p.auth(ctx)))

    # ------------------------------------------------------------------ pool
    async def txpool_status(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        status = await self._ask(m.PoolStatus())
        return {"pending": qty(status["pending"]), "queued": qty(status["queued"])}
