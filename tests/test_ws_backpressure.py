"""No WebSocket client can stall block production or another client.

200 subscribers connect with a small receive buffer, subscribe to newHeads and logs, and
never read again; transactions whose init code emits eight 32 KiB logs each follow. Every
receipt must still arrive in time, a subscriber that reads keeps getting every
notification, and each non-reader is closed with code 1008 and the reason.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import websockets
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess
from eth_account import Account
from ws_support import RawWebSocket

SLOW_SUBSCRIBERS = 200
LOGS_PER_TX = 8
LOG_BYTES = 32 * 1024
# one transaction's log notifications are ~530 KB per subscriber; a non-reader holds the
# node's 16 MiB queue bound plus what the kernel buffers, so 60 overflow it with room
TRANSACTIONS = 60
RECEIPT_BOUND_SECONDS = 30.0

# init code: LOG0 over memory [0, 32 KiB) eight times (PUSH2 0x8000, PUSH0, LOG0), then STOP
INIT_CODE = bytes.fromhex("6180005fa0") * LOGS_PER_TX + b"\x00"
SENDER = Account.from_key(DEV_KEYS[1])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("backpressure") / "data").start()
    yield proc
    proc.stop()


class RawSubscriber(RawWebSocket):
    """A subscriber with a 4 KiB receive buffer that reads only when told to."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=30, receive_buffer=4096)
        assert self.head.startswith(b"HTTP/1.1 101"), self.head

    def send(self, document: Any) -> None:
        self.send_frame(1, json.dumps(document).encode())

    def call(self, method: str, params: list[Any]) -> Any:
        self.send({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        opcode, payload = self.frame()
        assert opcode == 1
        return json.loads(payload)["result"]

    def close_frame(self) -> tuple[int, str] | None:
        """Read (and discard) everything until the close frame: its code and reason."""
        try:
            while True:
                opcode, payload = self.frame()
                if opcode == 8:
                    return struct.unpack(">H", payload[:2])[0], payload[2:].decode()
        except (EOFError, ConnectionError, TimeoutError):
            return None


def _raw_creation(nonce: int, gas_price: int) -> str:
    tx = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "gasPrice": gas_price,
        "gas": 3_000_000,
        "to": b"",
        "value": 0,
        "data": INIT_CODE,
    }
    return "0x" + bytes(Account.sign_transaction(tx, SENDER.key).raw_transaction).hex()


async def _rpc(http: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with http.post(url, json=body) as response:
        answer = await response.json()
    assert "error" not in answer, answer
    return answer["result"]


def test_non_reading_subscribers_stall_neither_blocks_nor_other_clients(
    chain: NodeProcess,
) -> None:
    slow = [RawSubscriber(chain.port) for _ in range(SLOW_SUBSCRIBERS)]
    for subscriber in slow:
        subscriber.call("eth_subscribe", ["newHeads"])
        subscriber.call("eth_subscribe", ["logs", {}])
    try:
        asyncio.run(_transactions_with_a_reading_subscriber(chain))
        closes = [subscriber.close_frame() for subscriber in slow]
    finally:
        for subscriber in slow:
            subscriber.sock.close()
    reasons = {close for close in closes if close is not None}
    assert closes.count(None) == 0, f"{closes.count(None)} slow subscribers saw no close frame"
    for code, reason in reasons:
        assert code == 1008
        assert reason.startswith("subscriber too slow: ")
        assert reason.endswith(" messages queued")
    log = chain.log()
    assert "Traceback" not in log
    assert log.count("too slow") == SLOW_SUBSCRIBERS


async def _transactions_with_a_reading_subscriber(chain: NodeProcess) -> None:
    async with (
        websockets.connect(chain.ws_url, max_size=None) as good,
        aiohttp.ClientSession() as http,
    ):
        await good.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            )
        )
        heads_id = json.loads(await good.recv())["result"]
        await good.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["logs", {}]}
            )
        )
        logs_id = json.loads(await good.recv())["result"]
        heads: list[int] = []
        logs: list[str] = []

        async def read() -> None:
            async for message in good:
                params = json.loads(message)["params"]
                if params["subscription"] == heads_id:
                    heads.append(int(params["result"]["number"], 16))
                else:
                    assert params["subscription"] == logs_id
                    logs.append(params["result"]["transactionHash"])

        reader = asyncio.create_task(read())
        nonce = int(
            await _rpc(http, chain.url, "eth_getTransactionCount", [SENDER.address, "pending"]), 16
        )
        gas_price = int(await _rpc(http, chain.url, "eth_gasPrice", []), 16) * 2
        blocks: list[int] = []
        hashes: list[str] = []
        for i in range(TRANSACTIONS):
            tx_hash = await _rpc(
                http, chain.url, "eth_sendRawTransaction", [_raw_creation(nonce + i, gas_price)]
            )
            hashes.append(tx_hash)
            deadline = time.monotonic() + RECEIPT_BOUND_SECONDS
            while (
                receipt := await _rpc(http, chain.url, "eth_getTransactionReceipt", [tx_hash])
            ) is None:
                assert time.monotonic() < deadline, (
                    f"no receipt for transaction {i} within {RECEIPT_BOUND_SECONDS} s"
                )
                await asyncio.sleep(0.02)
            assert receipt["status"] == "0x1"
            assert len(receipt["logs"]) == LOGS_PER_TX
            blocks.append(int(receipt["blockNumber"], 16))
        # the reader gets every head and every log, in order
        deadline = time.monotonic() + RECEIPT_BOUND_SECONDS
        while not heads or heads[-1] < blocks[-1] or len(logs) < LOGS_PER_TX * TRANSACTIONS:
            assert time.monotonic() < deadline, (len(heads), len(logs))
            await asyncio.sleep(0.05)
        reader.cancel()
        assert set(blocks) <= set(heads)
        assert logs == [h for h in hashes for _ in range(LOGS_PER_TX)]
