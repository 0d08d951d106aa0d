"""MetaMask's own packages (tests/clients/metamask) against a real node, through the proxy.

What runs headless is the wallet's background logic, from the npm registry, at the versions
pinned in tests/clients/metamask/package.json (the newest this registry can install as one
consistent set; later transaction-controller releases need packages it does not serve):

- @metamask/network-controller: the "Add a network" result (addNetwork, setActiveNetwork,
  the network lookup and EIP-1559 check) and the network client it builds for a custom RPC
  URL: RPC service (fetch), eth-json-rpc-middleware's block-ref-rewrite, block-cache,
  inflight-cache and block-tracker-inspector middleware, and eth-block-tracker's
  PollingBlockTracker;
- @metamask/transaction-controller: the real addTransaction -> confirmation -> approve ->
  nonce (@metamask/nonce-tracker) -> sign -> eth_sendRawTransaction -> pending-transaction
  tracker -> confirmed/failed flow, with gas estimation, fee selection and type detection;
- @metamask/gas-fee-controller: fee estimates, which for a custom chain fall back to
  eth_gasPrice;
- @metamask/eth-simple-keyring: signs with a dev key, as MetaMask does for an imported key.

Stubbed in tests/clients/metamask/wallet.mjs, because they are UI, vault or MetaMask-server
bound: the approval queue (the test accepts or rejects like a user), AccountsController,
RemoteFeatureFlagController and the error-reporting service. MetaMask's gas API is refused
(nothing leaves the machine), which is what it amounts to for a private chain.

Replayed over HTTP, because they live in the extension's UI code and not in a package: the
"Add a network" form's eth_chainId check (ui/pages/settings/networks-tab/networks-form/
networks-form.tsx with shared/modules/rpc.utils.js's jsonRpcRequest) and
wallet_addEthereumChain's chain id validation (app/scripts/lib/rpc-method-middleware/
handlers/ethereum-chain-utils.js).

Each test runs one scenario of metamask.mjs in Node.js; the script fails on any unmet
expectation and the proxy fails the test if any answer breaks the execution-apis shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients_support import JS_DIR, ensure_npm_packages, node_binary, run_client_script
from conftest import DEV_KEYS, NodeProcess, rpc
from eth_account import Account
from rpc_proxy import CheckingProxy

from gateway.client.session import sign_in

MM_DIR = Path(__file__).resolve().parent / "clients" / "metamask"
SCRIPT = MM_DIR / "metamask.mjs"

# The packages whose code the scenarios exercise, as pinned in package.json.
EXERCISED = (
    "@metamask/network-controller",
    "@metamask/transaction-controller",
    "@metamask/gas-fee-controller",
    "@metamask/eth-block-tracker",
    "@metamask/eth-json-rpc-middleware",
    "@metamask/eth-simple-keyring",
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    ensure_npm_packages(MM_DIR, timeout=600)
    node = NodeProcess(tmp_path_factory.mktemp("metamask") / "data").start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def interval_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node that seals a block every 2 s, so transactions are seen while pending."""
    ensure_npm_packages(MM_DIR, timeout=600)
    node = NodeProcess(tmp_path_factory.mktemp("metamask-interval") / "data", "--block-time", "2")
    node.start()
    yield node
    node.stop()


def run(proxy: CheckingProxy, scenario: str) -> dict[str, Any]:
    report = run_client_script(str(SCRIPT), [scenario], proxy)
    proxy.assert_clean()
    return report


def test_pinned_packages_are_installed() -> None:
    """The packages that run are the pinned versions (package.json, exact pins)."""
    ensure_npm_packages(MM_DIR, timeout=600)
    pins = json.loads((MM_DIR / "package.json").read_text())["dependencies"]
    for name in EXERCISED:
        assert pins[name][0].isdigit(), f"{name} is not pinned exactly: {pins[name]}"
        manifest = MM_DIR / "node_modules" / name / "package.json"
        installed = json.loads(manifest.read_text())["version"]
        assert installed == pins[name], f"{name}: installed {installed}, pinned {pins[name]}"


def test_add_network_chain_id(proxy: CheckingProxy) -> None:
    """Add a network: eth_chainId is exactly "0x7a69"; addNetwork + setActiveNetwork succeed.

    The form's check is a string comparison with the typed chain id converted to lowercase,
    unpadded hex; NetworkController then marks the network available and EIP-1559. No
    net_version is asked.
    """
    run(proxy, "add_network")
    assert proxy.calls["eth_chainId"] >= 1
    assert proxy.calls["net_version"] == 0


def test_eip1559_detection(proxy: CheckingProxy) -> None:
    """eth_getBlockByNumber([<block>, false]) has baseFeePerGas and gasLimit."""
    run(proxy, "eip1559")
    assert proxy.calls["eth_getBlockByNumber"] >= 2


def test_polling_block_tracker_sees_new_blocks(proxy: CheckingProxy) -> None:
    """PollingBlockTracker polls eth_blockNumber and reports each block a transfer makes."""
    run(proxy, "block_tracker")
    assert proxy.calls["eth_blockNumber"] >= 3


def test_balances_and_nonces_at_tracker_block_numbers(proxy: CheckingProxy) -> None:
    """eth_getBalance / eth_getTransactionCount at hex block numbers, "latest" and "pending"."""
    run(proxy, "balances_nonces")
    assert proxy.calls["eth_getBalance"] >= 4
    assert proxy.calls["eth_getTransactionCount"] >= 4


def test_gas_estimation_with_fees_stripped(proxy: CheckingProxy) -> None:
    """eth_estimateGas gets {from, to, value, data, type, nonce, accessList, estimatedBaseFee}.

    TransactionController deletes only the fee fields before estimating, so MetaMask-internal
    keys reach the node; the estimate must be the same as without them.
    """
    run(proxy, "estimate_gas")
    assert proxy.calls["eth_estimateGas"] >= 3


def test_fee_fallback_to_gas_price(proxy: CheckingProxy) -> None:
    """No gas API for the chain: maxFeePerGas = maxPriorityFeePerGas = eth_gasPrice."""
    run(proxy, "fees")
    assert proxy.calls["eth_gasPrice"] >= 1  # the block cache answers repeats in a block
    assert proxy.calls["eth_feeHistory"] == 0


def test_send_eip1559_signed_in_wallet(proxy: CheckingProxy) -> None:
    """Type-2 transfer: confirm, sign with SimpleKeyring, raw send, receipt polled, confirmed."""
    run(proxy, "send_eip1559")
    assert proxy.calls["eth_sendRawTransaction"] == 1
    assert proxy.calls["eth_getTransactionReceipt"] >= 1


def test_send_legacy_signed_in_wallet(proxy: CheckingProxy) -> None:
    """Type-0 transfer priced with eth_gasPrice: same flow, legacy envelope."""
    run(proxy, "send_legacy")
    assert proxy.calls["eth_sendRawTransaction"] == 1


def test_pending_transaction_seen_before_it_is_mined(interval_chain: NodeProcess) -> None:
    """With --block-time 2: pending eth_getTransactionByHash, null receipt, "pending" nonce."""
    checking = CheckingProxy(interval_chain.url).start()
    try:
        run(checking, "pending")
        assert checking.calls["eth_getTransactionReceipt"] >= 3
    finally:
        checking.stop()


def test_revert_reason_from_estimate(proxy: CheckingProxy) -> None:
    """failRequire: eth_estimateGas error code 3, "execution reverted: Events: always fails".

    The node's error reaches MetaMask's provider wrapped as -32603 with the node's error in
    `data`; TransactionController records the failed estimate (simulationFails) and falls back
    to 35% of the block gas limit; the user rejects and the dapp gets 4001.
    """
    run(proxy, "reverts")


def test_mined_revert_and_eth_call_replay(proxy: CheckingProxy) -> None:
    """A failing tx sent with manual gas is mined with status 0x0 and marked failed.

    transaction-controller 61 does not look for the reason of a mined failure (its pending
    transaction tracker records a generic error); the reason is recovered by re-running the
    call with eth_call at the receipt's block and its parent, which must fail with code 3,
    the message and the Error(string) data, through MetaMask's provider and directly.
    """
    run(proxy, "mined_revert")
    assert proxy.calls["eth_call"] >= 4


def test_contract_detection_with_get_code(proxy: CheckingProxy) -> None:
    """eth_getCode decides simpleSend vs contractInteraction vs token transfer."""
    run(proxy, "contract_detection")
    assert proxy.calls["eth_getCode"] >= 3


def test_personal_url_of_a_strict_node(tmp_path: Path) -> None:
    """MetaMask on a ``--privacy strict`` node, its network's RPC URL being the personal URL
    of the account it signs with (what the sign-in page hands out), through the proxy.

    Each dev key signs in and gets its own URL; each scenario runs on the URL of the key it
    uses (metamask.mjs: DEV_KEYS[0] for block_tracker, fees and mined_revert, [1] for
    contract_detection and the sends, [2] for estimate_gas and reverts; add_network and
    eip1559 sign nothing). They cover the nonce tracker, type-2 sends, receipts (mined and
    failed), contract deployments, estimates, reverts and eth_call with the sender's own
    ``from``, and pass unchanged.

    Left out, for a principled reason: balances_nonces reads the balance of its transfer's
    recipient, another account, at its first step; a strict node answers balances and nonces
    only to their owner (-32002). send_legacy and send_eip1559 end by reading their
    recipient's balance too. They run, and must fail there and nowhere else: that read is
    their last step, sent only after every earlier expectation held (MetaMask signs the type 0
    / type 2 transaction, eth_sendRawTransaction, the receipt, the block by hash, and the
    eth_getTransactionByHash fields), so they still show both send types working. pending
    needs a node sealing on a timer (--block-time) and is not run here.
    """

    class ErrorRecordingProxy(CheckingProxy):
        def __init__(self, upstream: str) -> None:
            super().__init__(upstream)
            self.errors: list[tuple[str, Any, dict[str, Any]]] = []

        def _check_pair(self, request: Any, response: Any) -> None:
            super()._check_pair(request, response)
            if isinstance(request, dict) and isinstance(response, dict) and "error" in response:
                self.errors.append(
                    (request.get("method"), request.get("params"), response["error"])
                )

    ensure_npm_packages(MM_DIR, timeout=600)
    node = NodeProcess(tmp_path / "data", "--privacy", "strict").start()
    try:
        personal = [sign_in(node.url, key)["rpcUrl"] for key in DEV_KEYS[:3]]
        # the public URL tells nobody these accounts' nonces: MetaMask needs the personal one
        first = Account.from_key(DEV_KEYS[0]).address
        assert rpc(node.url, "eth_getTransactionCount", [first])["error"]["code"] == -32002

        groups = [
            (0, ["add_network", "eip1559", "block_tracker", "fees", "mined_revert"]),
            (1, ["contract_detection"]),
            (2, ["estimate_gas", "reverts"]),
        ]
        for key, scenarios in groups:
            proxy = ErrorRecordingProxy(personal[key]).start()
            try:
                run_client_script(str(SCRIPT), scenarios, proxy)
                proxy.assert_clean()
                assert proxy.calls["eth_sendRawTransaction"] >= 3
                assert proxy.calls["eth_getTransactionReceipt"] >= 3
                # the only errors are the scenarios' own reverts (code 3): no denial
                assert all(e["code"] == 3 for _, _, e in proxy.errors), proxy.errors
            finally:
                proxy.stop()

        # the two sends: denied at their last step, the recipient's balance, and only there
        proxy = ErrorRecordingProxy(personal[1]).start()
        try:
            env = dict(os.environ, RPC_URL=proxy.url, WS_URL=proxy.ws_url, NO_COLOR="1")
            done = subprocess.run(
                [node_binary(), str(SCRIPT), "send_legacy", "send_eip1559"],
                cwd=JS_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            report = json.loads(done.stdout.strip().splitlines()[-1])
            assert [(r["scenario"], r["ok"]) for r in report["results"]] == [
                ("send_legacy", False),
                ("send_eip1559", False),
            ], done.stderr[-4000:]
            # MetaMask's fetch middleware wraps the node's refusal as -32603
            assert all("Internal JSON-RPC error" in r["error"] for r in report["results"])
            recipients = [
                "0x00000000000000000000000000000000c0c00046",
                "0x" + "0" * 32 + "c0c00048",
            ]
            assert [(m, p[0]) for m, p, _ in proxy.errors] == [
                ("eth_getBalance", r) for r in recipients
            ], proxy.errors
            assert all(e["code"] == -32002 for _, _, e in proxy.errors)
            assert proxy.calls["eth_sendRawTransaction"] == 2
            assert proxy.calls["eth_getTransactionByHash"] == 2
            proxy.assert_clean()
        finally:
            proxy.stop()
    finally:
        node.stop()
