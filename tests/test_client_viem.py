"""viem v2 (tests/clients/js/viem.mjs) against a real node, through the checking proxy.

Each test runs one scenario of the script in Node.js; the script fails on any unmet
expectation, and the proxy fails the test if any response viem received breaks the
execution-apis shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clients_support import ensure_npm_packages, run_client_script
from conftest import NodeProcess
from rpc_proxy import CheckingProxy


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    ensure_npm_packages()
    node = NodeProcess(tmp_path_factory.mktemp("viem") / "data").start()
    yield node
    node.stop()


def run(proxy: CheckingProxy, scenario: str) -> dict[str, Any]:
    report = run_client_script("viem.mjs", [scenario], proxy)
    proxy.assert_clean()
    return report


def test_http_deploy_write_read(proxy: CheckingProxy) -> None:
    """deployContract, writeContract, waitForTransactionReceipt, readContract over http."""
    run(proxy, "http_contracts")


def test_websocket_deploy_write_read(proxy: CheckingProxy) -> None:
    """The same round trip with both clients on the webSocket transport."""
    run(proxy, "ws_contracts")


def test_watch_contract_event_http_filters(proxy: CheckingProxy) -> None:
    """watchContractEvent over http polls an eth_newFilter filter, no eth_getLogs fallback."""
    run(proxy, "watch_http")
    assert proxy.calls["eth_newFilter"] >= 2
    assert proxy.calls["eth_getFilterChanges"] >= 2


def test_watch_contract_event_websocket(proxy: CheckingProxy) -> None:
    """watchContractEvent and watchBlockNumber over webSocket use eth_subscribe."""
    run(proxy, "watch_ws")
    assert proxy.calls["eth_subscribe"] >= 2


def test_json_rpc_account_uses_unlocked_accounts(proxy: CheckingProxy) -> None:
    """A wallet client with a JSON-RPC account: eth_accounts, then eth_sendTransaction."""
    run(proxy, "json_rpc_account")
    assert proxy.calls["eth_sendTransaction"] >= 2


def test_watch_pending_transactions_websocket(proxy: CheckingProxy) -> None:
    """watchPendingTransactions over webSocket: eth_subscribe newPendingTransactions."""
    run(proxy, "pending_ws")


def test_watch_pending_transactions_http(proxy: CheckingProxy) -> None:
    """watchPendingTransactions over http polls an eth_newPendingTransactionFilter."""
    run(proxy, "pending_http")


def test_fee_estimation_and_typed_sends(proxy: CheckingProxy) -> None:
    """estimateFeesPerGas (EIP-1559 and legacy), then sends of both types."""
    run(proxy, "fees")


def test_simulate_contract_reverts(proxy: CheckingProxy) -> None:
    """simulateContract reverts decoded as ContractFunctionRevertedError (reason, errorName)."""
    run(proxy, "simulate_revert")
