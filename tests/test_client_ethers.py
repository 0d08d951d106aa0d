"""ethers v6 (tests/clients/js/ethers.mjs) against a real node, through the checking proxy.

Each test runs one scenario of the script in Node.js; the script fails on any unmet
expectation, and the proxy fails the test if any response ethers received breaks the
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
    node = NodeProcess(tmp_path_factory.mktemp("ethers") / "data").start()
    yield node
    node.stop()


def run(proxy: CheckingProxy, scenario: str) -> dict[str, Any]:
    report = run_client_script("ethers.mjs", [scenario], proxy)
    proxy.assert_clean()
    return report


def test_deploy_transfer_and_batched_reads(proxy: CheckingProxy) -> None:
    """ContractFactory deploys, waitForDeployment, transfer, balances read in one batch."""
    run(proxy, "deploy_transfer")
    assert proxy.calls["eth_sendRawTransaction"] >= 3


def test_contract_on_over_http_polls_filters(proxy: CheckingProxy) -> None:
    """contract.on over HTTP: eth_newFilter, then eth_getFilterChanges on each new block."""
    run(proxy, "events_http")
    assert proxy.calls["eth_newFilter"] >= 3
    assert proxy.calls["eth_getFilterChanges"] >= 1


def test_revert_reasons_and_custom_errors(proxy: CheckingProxy) -> None:
    """require message, Custom(uint256,string), Panic, empty revert, InsufficientBalance."""
    run(proxy, "reverts")


def test_eip1559_and_legacy_sends(proxy: CheckingProxy) -> None:
    run(proxy, "fee_types")


def test_nonce_manager_parallel_sends(proxy: CheckingProxy) -> None:
    """Six sends in Promise.all through a NonceManager: consecutive nonces, all mined."""
    run(proxy, "nonce_manager")


def test_json_rpc_signer_uses_unlocked_accounts(proxy: CheckingProxy) -> None:
    """provider.getSigner(1): deploy and send through eth_sendTransaction."""
    run(proxy, "json_rpc_signer")
    assert proxy.calls["eth_sendTransaction"] >= 3


def test_websocket_provider(proxy: CheckingProxy) -> None:
    """WebSocketProvider: getBlockNumber, contract.on via eth_subscribe logs, newHeads, pending."""
    run(proxy, "websocket")
    assert proxy.calls["eth_subscribe"] >= 3


def test_pending_listener_over_http(proxy: CheckingProxy) -> None:
    """provider.on("pending") over HTTP polls an eth_newPendingTransactionFilter."""
    run(proxy, "pending_http")
