"""eth_, net_ and web3_ methods, answered from the enclave through its message interface."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway import __version__
from gateway.api import params as p
from gateway.api.filters import FilterManager
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient
from gateway.errors import ServerError, Unauthorized

log = logging.getLogger("gateway.api")

Method = Callable[[list[Any], Any], Awaitable[Any]]

PENDING_HIDDEN = (
    "pending-transaction notifications are not offered on this node: with privacy "
    "strict they would reveal other accounts' activity"
)

def qty(value: int) -> str:
    return hex(value)


def hexdata(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass
class ChainView:
    """Public facts the host keeps current from each block, so they need no enclave trip."""

    head_number: int = -1
    gas_price: int = 0

    def observe(self, answer: Any) -> Any:
        """An answer from the enclave names a committed block the host may not have adopted
        yet (the BuildBlock reply is still on its way): a client that saw the receipt must
        not then see an older eth_blockNumber."""
        number = answer.get("blockNumber") if isinstance(answer, dict) else None
        if isinstance(number, str):
            self.head_number = max(self.head_number, int(number, 16))
        return answer


@dataclass
class Api:
    enclave: EnclaveClient
    dev: bool = False
    on_transaction: Callable[[bytes], None] = lambda _h: None
    mine: Callable[[], Awaitable[None]] | None = None
    filters: FilterManager = field(init=False)
    chain_id: int = 0
    view: ChainView = field(default_factory=ChainView)
    strict: bool = False

    def __post_init__(self) -> None:
        self.filters = FilterManager(self.enclave, lambda: self.view.head_number)

    async def start(self) -> None:
        status = await self.enclave.request(m.GetStatus())
        self.chain_id = int(status["chainId"])
        self.view.head_number = int(status["head"]["number"])
        self.strict = status.get("privacy") == "strict"
        self.view.gas_price = int(status["gasPrice"])

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

    async def _ask(self, message: Any) -> Any:
        return await self.enclave.request(message)

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
        return "0x0"

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
        return await self._ask(m.GetBlock(ref, full, auth=_auth(ctx)))

    async def eth_getBlockByHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        block_hash = p.hash32(params[0], "blockHash", 0)
        full = p.boolean(params[1], "hydrated", 1)
        return await self._ask(m.GetBlock({"hash": block_hash}, full, auth=_auth(ctx)))

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
        return await self._ask(m.GetBlockReceipts(ref, auth=_auth(ctx)))

    # ------------------------------------------------------------------ transactions
    async def eth_getTransactionByHash(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        tx_hash = p.hash32(params[0], "transactionHash", 0)
        return self.view.observe(await self._ask(m.GetTx(tx_hash, _auth(ctx))))

    async def eth_getTransactionReceipt(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        tx_hash = p.hash32(params[0], "transactionHash", 0)
        return self.view.observe(await self._ask(m.GetReceipt(tx_hash, _auth(ctx))))

    async def eth_getTransactionByBlockNumberAndIndex(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        ref = p.block_number_or_tag(params[0], "block", 0)
        index = p.quantity(params[1], "index", 1, bits=32)
        return await self._ask(m.GetTxByBlockIndex(ref, index, _auth(ctx)))

    async def eth_getTransactionByBlockHashAndIndex(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2)
        ref = {"hash": p.hash32(params[0], "blockHash", 0)}
        index = p.quantity(params[1], "index", 1, bits=32)
        return await self._ask(m.GetTxByBlockIndex(ref, index, _auth(ctx)))

    async def eth_sendRawTransaction(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        raw = p.data(params[0], "transaction", 0)
        tx_hash: bytes = await self._ask(m.SubmitRawTx(raw, _auth(ctx)))
        self.on_transaction(tx_hash)
        return hexdata(tx_hash)

    async def eth_sendTransaction(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        if not self.dev:
            raise ServerError(
                "eth_sendTransaction needs an account unlocked on the node, and this node "
                "unlocks none; sign the transaction and use eth_sendRawTransaction"
            )
        tx = _tx_object(params[0], "transaction", 0)
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
                auth=_auth(ctx),
            )
        )
        self.on_transaction(tx_hash)
        return hexdata(tx_hash)

    # ------------------------------------------------------------------ state
    async def _account(self, kind: str, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1, 1)
        address = p.address(params[0], "address", 0)
        ref = p.block_ref(p.optional(params, 1, "latest"), "block", 1)
        return await self._ask(m.GetAccount(kind, address, ref, _auth(ctx)))

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
        return hexdata(await self._ask(m.GetStorage(address, slot, ref, _auth(ctx))))

    async def eth_call(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1, 2)
        if len(params) > 2 and params[2] not in (None, {}):
            raise p.bad("stateOverrides", 2, "state overrides are not supported")
        return hexdata(await self._ask(self._call_message(params, ctx, estimate=False)))

    async def eth_estimateGas(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1, 2)
        return qty(await self._ask(self._call_message(params, ctx, estimate=True)))

    def _call_message(self, params: list[Any], ctx: Any, *, estimate: bool) -> m.Call:
        tx = _tx_object(params[0], "transaction", 0)
        signature, leash = _signed_query(params[0])
        ref = p.block_ref(p.optional(params, 1, "pending" if estimate else "latest"), "block", 1)
        return m.Call(
            ref=ref,
            sender=tx.get("from"),
            to=tx.get("to"),
            gas=tx.get("gas"),
            value=tx.get("value", 0),
            data=tx.get("data", b""),
            estimate=estimate,
            auth=_auth(ctx),
            query_signature=signature,
            query_leash=leash,
        )

    # ------------------------------------------------------------------ logs and filters
    async def eth_getLogs(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self._ask(replace(_log_query(params[0], "filter", 0), auth=_auth(ctx)))

    async def eth_newFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 1)
        query = replace(_log_query(params[0], "filter", 0), auth=_auth(ctx))
        return await self.filters.new_log_filter(query)

    async def eth_newBlockFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0)
        return await self.filters.new_block_filter(_auth(ctx))

    async def eth_newPendingTransactionFilter(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0, 1)
        if self.strict:
            raise Unauthorized(PENDING_HIDDEN)
        return await self.filters.new_pending_filter(_auth(ctx))

    async def eth_getFilterChanges(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self.filters.changes(_filter_id(params[0]), _auth(ctx))

    async def eth_getFilterLogs(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        return await self.filters.all_logs(_filter_id(params[0]), _auth(ctx))

    async def eth_uninstallFilter(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 1)
        return self.filters.uninstall(_filter_id(params[0]), _auth(ctx))

    # ------------------------------------------------------------------ access lists, proofs
    async def eth_createAccessList(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1, 1)
        call = self._call_message(params, ctx, estimate=True)  # geth's default: "pending"
        return await self._ask(
            m.CreateAccessList(
                ref=call.ref,
                sender=call.sender,
                to=call.to,
                gas=call.gas,
                value=call.value,
                data=call.data,
                access_list=_access_list(params[0], "transaction", 0),
                auth=call.auth,
                query_signature=call.query_signature,
                query_leash=call.query_leash,
            )
        )

    async def eth_getProof(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 2, 1)
        address = p.address(params[0], "address", 0)
        keys = _storage_keys(params[1], "storageKeys", 1)
        ref = p.block_ref(p.optional(params, 2, "latest"), "block", 2)
        return await self._ask(m.GetProof(address, keys, ref, _auth(ctx)))

    # ------------------------------------------------------------------ pool
    async def txpool_status(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        status = await self._ask(m.PoolStatus())
        return {"pending": qty(status["pending"]), "queued": qty(status["queued"])}

    # ------------------------------------------------------------------ dev helpers
    async def evm_mine(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0, 1)
        if self.mine is None:
            raise ServerError("this node cannot mine on demand")
        await self.mine()
        return "0x0"

    # ------------------------------------------------------------------ the coco namespace
    async def coco_getBlockSeal(self, params: list[Any], ctx: Any) -> Any:
        """The proof-of-authority seal of a block (docs/PROTOCOL.md, "Block seal")."""
        p.arity(params, 1)
        ref = p.block_ref(params[0], "block", 0)
        seal = await self._ask(m.GetSeal(ref))
        if seal is None:
            return None
        from eth_utils import to_checksum_address

        return {
            "version": seal["version"],
            "chainId": qty(seal["chainId"]),
            "blockNumber": qty(seal["number"]),
            "blockHash": hexdata(seal["hash"]),
            "seal": hexdata(seal["seal"]),
            "sealer": to_checksum_address(seal["sealer"]) if seal["sealer"] else None,
        }

    async def coco_getAttestation(self, params: list[Any], ctx: Any) -> Any:
        """The enclave's signed attestation report and its transaction keys
        (docs/PROTOCOL.md, "Attestation report")."""
        p.arity(params, 0)
        answer = await self._ask(m.GetAttestation())
        return {
            "report": answer["report"],
            "signature": hexdata(answer["signature"]),
            "currentEpoch": answer["currentEpoch"],
        }

    async def coco_siweMessage(self, params: list[Any], ctx: Any) -> Any:
        """A Sign-In with Ethereum message for ``address`` to sign (personal_sign)."""
        p.arity(params, 1, 1)
        address = p.address(params[0], "address", 0)
        origin = p.optional(params, 1, getattr(ctx, "base_url", "") or "http://localhost")
        if not isinstance(origin, str) or not origin.startswith(("http://", "https://")):
            raise p.bad("origin", 1, "expected the page's origin, e.g. https://example.org")
        message = await self._ask(m.SiweMessage(address, origin))
        return {"message": message}

    async def coco_signIn(self, params: list[Any], ctx: Any) -> Any:
        """Exchange the signed message for a session and its personal RPC URL."""
        p.arity(params, 2)
        if not isinstance(params[0], str):
            raise p.bad("message", 0, "expected the SIWE message text")
        signature = p.data(params[1], "signature", 1, size=65)
        session = await self._ask(m.SignIn(params[0], signature))
        base = getattr(ctx, "base_url", "") or ""
        from eth_utils import to_checksum_address

        return {
            "token": session["token"],
            "address": to_checksum_address(session["address"]),
            "expiresAt": session["expiresAt"],
            "rpcUrl": f"{base}/rpc/{session['token']}",
        }

    async def coco_signOut(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 0)
        auth = _auth(ctx)
        if auth is None:
            raise Unauthorized("coco_signOut needs your personal RPC URL (/rpc/<token>)")
        return bool(await self._ask(m.SignOut(auth)))

    async def coco_myActivity(self, params: list[Any], ctx: Any) -> Any:
        """The signed-in account's own transactions (newest first) and contracts."""
        p.arity(params, 0)
        auth = _auth(ctx)
        if auth is None:
            raise Unauthorized("coco_myActivity needs your personal RPC URL (/rpc/<token>)")
        return await self._ask(m.MyActivity(auth))

    async def coco_nodeInfo(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        from eth_utils import to_checksum_address

        status = await self._ask(m.GetStatus())
        return {
            "client": f"coco-gateway/v{__version__}",
            "chainId": qty(status["chainId"]),
            "fork": status["fork"],
            "validators": [to_checksum_address(status["validator"])],
            "head": qty(status["head"]["number"]),
            "finalized": qty(status["finalized"]),
            "pendingTransactions": status["poolSize"],
            "dev": self.dev,
        }


def _auth(ctx: Any) -> str | None:
    """The caller's session token, from the personal RPC URL it came in on."""
    return getattr(ctx, "auth", None)


def _signed_query(value: Any) -> tuple[bytes | None, dict[str, int] | None]:
    """The optional ``signedQuery`` member of a call object: {signature, leash}."""
    if not isinstance(value, dict) or value.get("signedQuery") is None:
        return None, None
    query = value["signedQuery"]
    if not isinstance(query, dict):
        raise p.bad("transaction.signedQuery", 0, "expected an object {signature, leash}")
    signature = p.data(query.get("signature"), "transaction.signedQuery.signature", 0, size=65)
    leash_raw = query.get("leash")
    if not isinstance(leash_raw, dict):
        raise p.bad("transaction.signedQuery.leash", 0, "expected an object")
    leash = {}
    for key in ("nonce", "blockNumber", "blockRange", "expiry"):
        leash[key] = p.quantity(
            leash_raw.get(key), f"transaction.signedQuery.leash.{key}", 0, bits=64
        )
    return signature, leash


def _filter_id(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise p.bad("filterId", 0, "expected a hex filter id")
    return value.lower()


def _tx_object(value: Any, name: str, index: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise p.bad(name, index, f"expected a transaction object, got {p.json_type(value)}")
    out: dict[str, Any] = {}
    for key in ("from", "to"):
        if value.get(key) is not None:
            out[key] = p.address(value[key], f"{name}.{key}", index)
    for key, bits in (
        ("gas", 64),
        ("nonce", 64),
        ("gasPrice", 256),
        ("maxFeePerGas", 256),
        ("maxPriorityFeePerGas", 256),
        ("value", 256),
    ):
        if value.get(key) is not None:
            out[key] = p.quantity(value[key], f"{name}.{key}", index, bits=bits)
    if value.get("type") is not None:
        out["type"] = p.quantity(value["type"], f"{name}.type", index, bits=8)
    data = value.get("input")
    legacy = value.get("data")
    if data is not None and legacy is not None and data != legacy:
        raise p.bad(name, index, 'both "data" and "input" are set and not equal')
    chosen = data if data is not None else legacy
    if chosen is not None:
        out["data"] = p.data(chosen, f"{name}.input", index)
    if "gasPrice" in out and ("maxFeePerGas" in out or "maxPriorityFeePerGas" in out):
        raise p.bad(
            name, index, "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified"
        )
    return out


def _or_latest(value: dict[str, Any], key: str) -> Any:
    """An absent or null bound means "latest"; anything else must parse as a block."""
    found = value.get(key)
    return "latest" if found is None else found


def _log_query(value: Any, name: str, index: int) -> m.GetLogs:
    if not isinstance(value, dict):
        raise p.bad(name, index, f"expected a filter object, got {p.json_type(value)}")
    unknown = set(value) - {"fromBlock", "toBlock", "address", "topics", "blockHash"}
    if unknown:
        raise p.bad(name, index, f"unknown field(s) {', '.join(sorted(unknown))}")
    addresses_raw = value.get("address")
    if addresses_raw is None:
        addresses: list[bytes] = []
    elif isinstance(addresses_raw, list):
        addresses = [p.address(a, f"{name}.address", index) for a in addresses_raw]
    else:
        addresses = [p.address(addresses_raw, f"{name}.address", index)]
    topics_raw = value.get("topics")
    if topics_raw is None:
        topics_raw = []
    if not isinstance(topics_raw, list) or len(topics_raw) > 4:
        raise p.bad(name, index, "topics must be an array of at most 4 entries")
    topics: list[list[bytes] | None] = []
    for position, entry in enumerate(topics_raw):
        where = f"{name}.topics[{position}]"
        if entry is None:
            topics.append(None)
        elif isinstance(entry, list):
            topics.append([p.hash32(t, where, index) for t in entry] or None)
        else:
            topics.append([p.hash32(entry, where, index)])
    if value.get("blockHash") is not None:
        if value.get("fromBlock") is not None or value.get("toBlock") is not None:
            raise p.bad(name, index, "blockHash cannot be combined with fromBlock/toBlock")
        return m.GetLogs(
            addresses=addresses,
            topics=topics,
            block_hash=p.hash32(value["blockHash"], f"{name}.blockHash", index),
        )
    start = p.block_number_or_tag(_or_latest(value, "fromBlock"), f"{name}.fromBlock", index)
    end = p.block_number_or_tag(_or_latest(value, "toBlock"), f"{name}.toBlock", index)
    if isinstance(start, int) and isinstance(end, int) and start > end:
        raise p.bad(name, index, "fromBlock is after toBlock")
    return m.GetLogs(from_block=start, to_block=end, addresses=addresses, topics=topics)


MAX_PROOF_KEYS = 1024
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
MAX_ACCESS_LIST_ENTRIES = 1024


def _access_list(value: Any, name: str, index: int) -> list[list[Any]]:
    """The optional ``accessList`` of a call object: [{address, storageKeys}, ...]."""
    entries = value.get("accessList") if isinstance(value, dict) else None
    if entries is None:
        return []
    where = f"{name}.accessList"
    if not isinstance(entries, list):
        raise p.bad(where, index, f"expected an array, got {p.json_type(entries)}")
    out: list[list[Any]] = []
    total = 0
    for position, entry in enumerate(entries):
        here = f"{where}[{position}]"
        if not isinstance(entry, dict) or set(entry) - {"address", "storageKeys"}:
            raise p.bad(here, index, "expected an object {address, storageKeys}")
        keys = entry.get("storageKeys") or []
        if not isinstance(keys, list):
            raise p.bad(f"{here}.storageKeys", index, "expected an array of 32-byte hashes")
        total += 1 + len(keys)
        if total > MAX_ACCESS_LIST_ENTRIES:
            raise p.bad(
                where, index, f"at most {MAX_ACCESS_LIST_ENTRIES} addresses and keys in all"
            )
        address = p.address(entry.get("address"), f"{here}.address", index)
        out.append([address, [p.hash32(k, f"{here}.storageKeys", index) for k in keys]])
    return out


def _storage_keys(value: Any, name: str, index: int) -> list[bytes]:
    """eth_getProof's storage keys: hex of at most 32 bytes each (geth's decodeHash)."""
    if not isinstance(value, list):
        raise p.bad(name, index, f"expected an array of storage keys, got {p.json_type(value)}")
    if len(value) > MAX_PROOF_KEYS:
        raise p.bad(name, index, f"at most {MAX_PROOF_KEYS} keys per call, got {len(value)}")
    keys = []
    for position, key in enumerate(value):
        where = f"{name}[{position}]"
        if not isinstance(key, str):
            raise p.bad(where, index, f"expected a hex string, got {p.json_type(key)}")
        digits = key[2:] if key.startswith(("0x", "0X")) else key
        if not _HEX_DIGITS.fullmatch(digits):
            raise p.bad(where, index, f"invalid hex string {key[:80]!r}")
        if len(digits) > 64:
            raise p.bad(where, index, "hex string too long, want at most 32 bytes")
        keys.append(bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0")))
    return keys
