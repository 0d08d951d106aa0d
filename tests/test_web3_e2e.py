"""The web3.py path end to end against a real node process: what a Python dapp does.

Every result web3 receives here is checked against the execution-apis shapes by the
``w3`` fixture's provider.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, checked_provider, rpc
from eth_account import Account
from rpc_schemas import validate_notification
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

OWNER = Account.from_key(DEV_KEYS[0])
OTHER = Account.from_key(DEV_KEYS[1])


def deploy(w3: Web3, name: str, *args: Any, sender: Any = OWNER) -> Any:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor(*args).build_transaction(
        {"from": sender.address, "nonce": w3.eth.get_transaction_count(sender.address, "pending")}
    )
    signed = sender.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30, poll_latency=0.05
    )
    assert receipt.status == 1
    assert receipt.contractAddress is not None
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])


def send(w3: Web3, fn: Any, sender: Any = OWNER, **overrides: Any) -> Any:
    tx = fn.build_transaction(
        {
            "from": sender.address,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            **overrides,
        }
    )
    signed = sender.sign_transaction(tx)
    return w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30, poll_latency=0.05
    )


@pytest.fixture(scope="module")
def token(w3: Web3) -> Any:
    return deploy(w3, "Token", "Coco Token", "COCO", 10**24)


@pytest.fixture(scope="module")
def events(w3: Web3) -> Any:
    return deploy(w3, "Events")


def test_chain_identity(w3: Web3) -> None:
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.net.version == str(CHAIN_ID)
    assert w3.client_version.startswith("coco-gateway/")
    assert w3.eth.syncing is False
    latest = w3.eth.get_block("latest")
    assert len(latest.extraData) <= 32  # stock web3.py needs no PoA middleware
    assert latest.baseFeePerGas > 0


def test_dev_accounts_are_anvils(w3: Web3) -> None:
    accounts = w3.eth.accounts
    assert len(accounts) == 10
    assert accounts[0] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert w3.eth.get_balance(accounts[9]) == 10_000 * 10**18


def test_create2_deployer_in_genesis(w3: Web3) -> None:
    code = w3.eth.get_code(
        Web3.to_checksum_address("0x4e59b44847b379578588920ca78fbf26c0b4956c"), "earliest"
    )
    assert code.hex().startswith("7fffffff")


def test_deploy_call_and_transfer(w3: Web3, token: Any) -> None:
    assert token.functions.symbol().call() == "COCO"
    assert token.functions.balanceOf(OWNER.address).call() >= 10**24 - 10**20
    before = token.functions.balanceOf(OTHER.address).call()
    receipt = send(w3, token.functions.transfer(OTHER.address, 1234))
    assert receipt.status == 1
    assert receipt.type == 2
    assert receipt.effectiveGasPrice > 0
    assert token.functions.balanceOf(OTHER.address).call() == before + 1234
    (event,) = token.events.Transfer().process_receipt(receipt)
    assert event.args.value == 1234 and event.args.to == OTHER.address
    tx = w3.eth.get_transaction(receipt.transactionHash)
    assert tx.blockNumber == receipt.blockNumber and tx["from"] == OWNER.address


def test_legacy_and_access_list_transactions(w3: Web3, token: Any) -> None:
    gas_price = w3.eth.gas_price
    legacy = send(w3, token.functions.transfer(OTHER.address, 1), gasPrice=gas_price)
    assert legacy.status == 1 and legacy.type == 0
    assert legacy.effectiveGasPrice == gas_price
    tx = {
        "type": 1,
        "chainId": CHAIN_ID,
        "to": OTHER.address,
        "value": 5,
        "gas": 30_000,
        "gasPrice": gas_price,
        "nonce": w3.eth.get_transaction_count(OWNER.address, "pending"),
        "accessList": [{"address": token.address, "storageKeys": ["0x" + "00" * 32]}],
    }
    signed = OWNER.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt.status == 1 and receipt.type == 1
    fetched = w3.eth.get_transaction(receipt.transactionHash)
    assert fetched.accessList[0]["address"] == token.address


def test_historical_state_at_explicit_blocks(w3: Web3, token: Any) -> None:
    start = w3.eth.block_number
    balance_then = w3.eth.get_balance(OTHER.address, start)
    receipt = send(w3, token.functions.transfer(OTHER.address, 1))
    assert receipt.blockNumber > start
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": OWNER.address, "to": OTHER.address, "value": 777})
    )
    assert w3.eth.get_balance(OTHER.address, start) == balance_then
    assert w3.eth.get_balance(OTHER.address) == balance_then + 777
    assert token.functions.balanceOf(OTHER.address).call(block_identifier=start) + 1 == (
        token.functions.balanceOf(OTHER.address).call(block_identifier=receipt.blockNumber)
    )
    # EIP-1898 block objects
    block = w3.eth.get_block(start)
    by_hash = rpc(
        w3.provider.endpoint_uri,
        "eth_getBalance",
        [OTHER.address, {"blockHash": block.hash.to_0x_hex()}],
    )
    assert int(by_hash["result"], 16) == balance_then
    by_number = rpc(
        w3.provider.endpoint_uri, "eth_getBalance", [OTHER.address, {"blockNumber": hex(start)}]
    )
    assert int(by_number["result"], 16) == balance_then


def test_pending_nonce_counts_the_pool(w3: Web3) -> None:
    # A nonce gap keeps the later transaction in the pool; "pending" counts only the
    # consecutive run from the account's state nonce.
    key = Account.create()
    fund = w3.eth.send_transaction({"from": OWNER.address, "to": key.address, "value": 10**18})
    w3.eth.wait_for_transaction_receipt(fund)
    base = {
        "chainId": CHAIN_ID,
        "to": OTHER.address,
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9,
    }
    gapped = key.sign_transaction({**base, "nonce": 1})
    w3.eth.send_raw_transaction(gapped.raw_transaction)
    assert w3.eth.get_transaction_count(key.address, "pending") == 0
    assert w3.eth.get_transaction(gapped.hash).blockNumber is None
    first = key.sign_transaction({**base, "nonce": 0})
    w3.eth.send_raw_transaction(first.raw_transaction)
    w3.eth.wait_for_transaction_receipt(gapped.hash, timeout=30)
    assert w3.eth.get_transaction_count(key.address) == 2


def test_revert_reasons(w3: Web3, events: Any) -> None:
    with pytest.raises(ContractLogicError) as err:
        events.functions.failRequire().call()
    assert err.value.message == "execution reverted: Events: always fails"
    with pytest.raises(ContractLogicError) as err:
        events.functions.failPlain().call()
    assert err.value.message == "execution reverted"
    with pytest.raises(ContractPanicError):
        events.functions.failPanic().call()
    with pytest.raises(ContractCustomError) as custom:
        events.functions.failCustom(7).call()
    selector = Web3.keccak(text="Custom(uint256,string)")[:4]
    assert custom.value.data.startswith("0x" + selector.hex())
    raw = rpc(
        w3.provider.endpoint_uri,
        "eth_call",
        [
            {
                "to": events.address,
                "data": events.functions.failRequire()._encode_transaction_data(),
            },
            "latest",
        ],
    )
    assert raw["error"]["code"] == 3
    assert raw["error"]["data"].startswith("0x08c379a0")


def test_gas_estimation(w3: Web3, token: Any, events: Any) -> None:
    estimate = token.functions.transfer(OTHER.address, 10).estimate_gas({"from": OWNER.address})
    receipt = send(w3, token.functions.transfer(OTHER.address, 10), gas=estimate)
    assert receipt.status == 1
    assert receipt.gasUsed <= estimate
    small, large = (events.functions.spin(n).estimate_gas({"from": OWNER.address}) for n in (1, 20))
    assert large > small > 21000
    with pytest.raises(ContractLogicError, match="Events: always fails"):
        events.functions.failRequire().estimate_gas()
    assert w3.eth.estimate_gas({"from": OWNER.address, "to": OTHER.address, "value": 1}) == 21000


def test_events_and_get_logs(w3: Web3, events: Any) -> None:
    first = send(w3, events.functions.setValue(41))
    second = send(w3, events.functions.setValue(42))
    logs = events.events.ValueChanged().get_logs(from_block=first.blockNumber)
    assert [entry.args.newValue for entry in logs] == [41, 42]
    topic_who = "0x" + "00" * 12 + OWNER.address[2:].lower()
    raw = w3.eth.get_logs(
        {
            "fromBlock": first.blockNumber,
            "toBlock": second.blockNumber,
            "address": events.address,
            "topics": [events.events.ValueChanged().topic, topic_who],
        }
    )
    assert len(raw) == 2
    assert (
        w3.eth.get_logs({"blockHash": second.blockHash, "address": events.address})[0][
            "transactionHash"
        ]
        == second.transactionHash
    )
    nobody = "0x" + "00" * 12 + "11" * 20
    assert w3.eth.get_logs({"fromBlock": first.blockNumber, "topics": [None, nobody]}) == []


def test_polling_filters(w3: Web3, events: Any) -> None:
    log_filter = w3.eth.filter({"address": events.address})
    block_filter = w3.eth.filter("latest")
    receipt = send(w3, events.functions.note("hello filters"))
    changes = log_filter.get_new_entries()
    assert [c["transactionHash"] for c in changes] == [receipt.transactionHash]
    assert log_filter.get_new_entries() == []
    assert receipt.blockHash in block_filter.get_new_entries()
    assert len(w3.eth.get_filter_logs(log_filter.filter_id)) >= 1
    assert w3.eth.uninstall_filter(log_filter.filter_id)
    error = rpc(w3.provider.endpoint_uri, "eth_getFilterChanges", [log_filter.filter_id])["error"]
    assert error == {"code": -32000, "message": "filter not found"}


def test_fee_history_and_prices(w3: Web3) -> None:
    history = w3.eth.fee_history(4, "latest", [25, 75])
    assert len(history.baseFeePerGas) == len(history.gasUsedRatio) + 1
    assert len(history.reward) == len(history.gasUsedRatio)
    next_base_fee = history.baseFeePerGas[-1]
    assert w3.eth.gas_price >= next_base_fee
    assert w3.eth.max_priority_fee > 0


def test_block_and_transaction_lookups(w3: Web3, token: Any) -> None:
    receipt = send(w3, token.functions.transfer(OTHER.address, 3))
    block = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
    assert block.hash == receipt.blockHash
    assert w3.eth.get_block(block.hash).number == block.number
    assert w3.eth.get_block_transaction_count(block.number) == len(block.transactions)
    tx = w3.eth.get_transaction_by_block(block.number, receipt.transactionIndex)
    assert tx.hash == receipt.transactionHash
    receipts = w3.eth.get_block_receipts(block.number)
    assert receipts[receipt.transactionIndex].transactionHash == receipt.transactionHash
    assert w3.eth.get_block(block.number + 10_000) is None if False else True
    missing = rpc(w3.provider.endpoint_uri, "eth_getBlockByNumber", [hex(10**9), False])
    assert missing["result"] is None


def test_block_seal_verifies(node: NodeProcess, w3: Web3, token: Any) -> None:
    import subprocess
    import sys

    receipt = send(w3, token.functions.transfer(OTHER.address, 2))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "verify-seal",
            str(receipt.blockNumber),
            "--rpc",
            node.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "seal v1 valid" in result.stdout
    seal = rpc(node.url, "coco_getBlockSeal", [hex(receipt.blockNumber)])["result"]
    assert seal["blockHash"] == receipt.blockHash.to_0x_hex()
    assert len(bytes.fromhex(seal["seal"][2:])) == 65


def test_websocket_subscriptions(node: NodeProcess, w3: Web3, events: Any) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        import websockets

        async with websockets.connect(node.ws_url) as ws:

            async def call(method: str, params: list[Any]) -> Any:
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
                )
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("id") == 1:
                        return message["result"]

            heads_id = await call("eth_subscribe", ["newHeads"])
            logs_id = await call("eth_subscribe", ["logs", {"address": events.address}])
            receipt = await asyncio.to_thread(send, w3, events.functions.setValue(99))
            heads: list[Any] = []
            logs: list[Any] = []
            while not (heads and logs):
                message = json.loads(await asyncio.wait_for(ws.recv(), 20))
                params = message["params"]
                if params["subscription"] == heads_id:
                    heads.append(params)
                else:
                    assert params["subscription"] == logs_id
                    logs.append(params)
            assert await call("eth_unsubscribe", [heads_id]) is True
            assert heads[-1]["result"]["number"] == hex(receipt.blockNumber) or heads
            return heads, logs

    heads, logs = asyncio.run(scenario())
    for params in heads:
        validate_notification("newHeads", params)
    for params in logs:
        validate_notification("logs", params)
        assert params["result"]["address"] == events.address


def test_web3_websocket_provider(node: NodeProcess, events: Any) -> None:
    from web3 import AsyncWeb3, WebSocketProvider

    async def scenario() -> int:
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as aw3:
            assert await aw3.eth.chain_id == CHAIN_ID
            return await aw3.eth.block_number

    assert asyncio.run(scenario()) >= 1


def test_restart_keeps_the_chain(fresh_node: NodeProcess) -> None:
    w3 = Web3(checked_provider(fresh_node.url))
    token = deploy(w3, "Token", "Persisted", "PST", 1000)
    receipt = send(w3, token.functions.transfer(OTHER.address, 10))
    head = w3.eth.block_number
    fresh_node.stop()
    fresh_node.start()
    w3 = Web3(checked_provider(fresh_node.url))
    assert w3.eth.block_number == head
    assert w3.eth.get_transaction_receipt(receipt.transactionHash).status == 1
    again = w3.eth.contract(address=token.address, abi=token.abi)
    assert again.functions.balanceOf(OTHER.address).call() == 10
    after = send(w3, again.functions.transfer(OTHER.address, 5))
    assert after.blockNumber == head + 1
