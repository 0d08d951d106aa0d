"""web3.py as its users write it, through the checking proxy: the async HTTP provider and
the WebSocket provider with subscriptions (the sync HTTP path is tests/test_web3_e2e.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS
from eth_account import Account
from web3 import AsyncWeb3, WebSocketProvider
from web3.exceptions import ContractLogicError
from web3.providers.rpc import AsyncHTTPProvider

SENDER = Account.from_key(DEV_KEYS[1])


async def _deploy(w3: AsyncWeb3, name: str, *args: Any) -> Any:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = await factory.constructor(*args).build_transaction(
        {
            "from": SENDER.address,
            "nonce": await w3.eth.get_transaction_count(SENDER.address, "pending"),
        }
    )
    signed = SENDER.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.05)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])


async def _transact(w3: AsyncWeb3, fn: Any) -> Any:
    tx = await fn.build_transaction(
        {
            "from": SENDER.address,
            "nonce": await w3.eth.get_transaction_count(SENDER.address, "pending"),
        }
    )
    signed = SENDER.sign_transaction(tx)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    return await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.05)


def test_async_http_provider(checking_proxy: Any) -> None:
    async def scenario() -> None:
        w3 = AsyncWeb3(AsyncHTTPProvider(checking_proxy.url))
        try:
            await exercise(w3)
        finally:
            await w3.provider.disconnect()  # its aiohttp session, or "Unclosed client session"

    async def exercise(w3: AsyncWeb3[Any]) -> None:
        assert await w3.eth.chain_id == CHAIN_ID
        token = await _deploy(w3, "Token", "Async", "ASY", 10**21)
        other = Account.create().address
        receipt = await _transact(w3, token.functions.transfer(other, 99))
        (event,) = token.events.Transfer().process_receipt(receipt)
        assert event.args.value == 99
        assert await token.functions.balanceOf(other).call() == 99
        logs = await token.events.Transfer().get_logs(from_block=receipt.blockNumber)
        assert [entry.args.to for entry in logs] == [other]
        events = await _deploy(w3, "Events")
        try:
            await events.functions.failRequire().call()
        except ContractLogicError as exc:
            assert exc.message == "execution reverted: Events: always fails"
        else:
            raise AssertionError("failRequire did not revert")
        fees = await w3.eth.fee_history(2, "latest", [50])
        assert len(fees.baseFeePerGas) == 3

    asyncio.run(scenario())
    checking_proxy.assert_clean()


def test_websocket_provider_subscriptions(checking_proxy: Any) -> None:
    async def scenario() -> None:
        async with AsyncWeb3(WebSocketProvider(checking_proxy.ws_url)) as w3:
            assert await w3.eth.chain_id == CHAIN_ID
            events = await _deploy(w3, "Events")
            heads = await w3.eth.subscribe("newHeads")
            logs = await w3.eth.subscribe("logs", {"address": events.address})
            receipt = await _transact(w3, events.functions.setValue(7))
            seen: dict[str, Any] = {}

            async def collect() -> None:
                async for message in w3.socket.process_subscriptions():
                    seen.setdefault(message["subscription"], message["result"])
                    if heads in seen and logs in seen:
                        return

            await asyncio.wait_for(collect(), 20)
            assert seen[logs]["transactionHash"] == receipt.transactionHash
            assert seen[heads]["number"] >= 1
            assert await w3.eth.unsubscribe(heads)
            assert await w3.eth.unsubscribe(logs)

    asyncio.run(scenario())
    checking_proxy.assert_clean()
