"""Issue 8 item 7 on real consortia: any node serves any caller the same, under one privacy.

Two consortia of real `coco-gateway node --config` processes, one at a time (the machine has
two cores; a module-scoped manager stops one before it starts the other):

* ``strict``: three validators, ``init --privacy strict``. A session made by signing in on
  node A works on B and C (the token key derives from the consortium secret); the owner
  reads the same receipt, logs, balance, nonce and call answers everywhere; another caller
  and an anonymous one get the same refusals on every node. A signed query made for B
  answers on B, once; A and C refuse it as made for another node (version 3). The
  SDK deploys through A with an encrypted init code and reads through B; every node offers
  the same transaction keys, so one envelope opens on any of them.
* ``open``: four validators with the dev accounts funded (chain 31337, what the client
  scripts expect): web3.py, ethers, viem and Foundry send through one node and read through
  another; MetaMask-like polling (receipts, fees, ``safe``/``finalized``), newHeads over
  WebSocket on each node, and two transactions of one sender sent to two nodes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from cluster_harness import OPEN_CHAIN, Cluster, ClusterNode, ClusterPool, lend_open, wait_until
from conftest import DEV_KEYS, rpc
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3
from web3.providers.rpc import HTTPProvider

from gateway.client.attest import fetch_and_verify
from gateway.client.session import sign_in
from gateway.client.web3 import confidential_web3
from gateway.devaccounts import derive
from gateway.protocol import query
from gateway.protocol.attestation import Report
from gateway.protocol.envelope import Kind, Purpose, open_response, seal_request

# pytest-timeout bounds each test's own call: the shared cluster it may start first is made
# in its set-up, under the harness's own deadlines (init 300 s, each node answering 120 s),
# and on a loaded machine that set-up alone can take minutes
pytestmark = pytest.mark.timeout(600, func_only=True)

STRICT_CHAIN = 4344
OWNER = Account.from_key("0x" + "51" * 32)
OTHER = Account.from_key("0x" + "52" * 32)
TO = "0x" + "77" * 20
DEV_ACCOUNTS = derive()  # funded by init --dev-alloc; the client scripts use the first four


# ------------------------------------------------------------------ the clusters


def _strict(pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from pool.lend(
        request, "strict", clean_exit=True, validators=3, dev_alloc=False,
        init_args=[
            "--privacy", "strict", "--chain-id", str(STRICT_CHAIN),
            "--alloc", f"{OWNER.address}={10**24}", "--alloc", f"{OTHER.address}={10**24}",
        ],
    )  # fmt: skip


@pytest.fixture
def strict(
    cluster_pool: ClusterPool, request: pytest.FixtureRequest
) -> Iterator[list[ClusterNode]]:
    for cluster in _strict(cluster_pool, request):
        yield list(cluster.nodes.values())


@pytest.fixture
def open_cluster(
    cluster_pool: ClusterPool, request: pytest.FixtureRequest
) -> Iterator[list[ClusterNode]]:
    """The validators of the shared "open" consortium (tests/test_cluster_basic.py's too)."""
    for cluster in lend_open(cluster_pool, request):
        yield cluster.validators()


# ------------------------------------------------------------------ helpers


def height(node: ClusterNode) -> int:
    return node.height()


def result(url: str, method: str, params: list[Any] | None = None) -> Any:
    answer = rpc(url, method, params)
    assert "result" in answer, f"{url} {method}: {answer}"
    return answer["result"]


def refusal(url: str, method: str, params: list[Any]) -> str | None:
    """The reason code of a node's refusal (an assertion if it answers)."""
    answer = rpc(url, method, params)
    assert "error" in answer, f"{url} {method} answered: {answer}"
    data = answer["error"].get("data")
    return data.get("reason") if isinstance(data, dict) else None


def personal(node: ClusterNode, token: str) -> str:
    return f"{node.url}/rpc/{token}"


def wait_result(
    nodes: list[ClusterNode], url: str, method: str, params: list[Any], timeout: float = 90
) -> Any:
    def fetch() -> Any:
        answer = rpc(url, method, params)
        return answer.get("result")

    return wait_until(fetch, timeout, f"{method} on {url}")


def wait_height(nodes: list[ClusterNode], number: int) -> None:
    wait_until(lambda: all(height(n) >= number for n in nodes), 90, f"height {number}")


def send(url: str, account: Any, nonce: int, chain_id: int, **fields: Any) -> str:
    tx = {
        "chainId": chain_id,
        "nonce": nonce,
        "gas": 3_000_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "value": 0,
        **fields,
    }
    raw = account.sign_transaction(tx).raw_transaction
    return str(result(url, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))


def token_deploy_data(supply: int) -> str:
    art = load_artifact("Token")
    contract = Web3().eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    return str(contract.constructor("Coco", "COCO", supply).data_in_transaction)


def token_call(fn: str, *args: Any) -> str:
    art = load_artifact("Token")
    contract = Web3().eth.contract(address="0x" + "00" * 20, abi=art["abi"])
    return str(getattr(contract.functions, fn)(*args)._encode_transaction_data())


# ------------------------------------------------------------------ open consortium, clients


def test_pending_nonce_with_two_nodes(open_cluster: list[ClusterNode]) -> None:
    a, b = open_cluster[0], open_cluster[1]
    sender = Account.from_key(DEV_ACCOUNTS[6].private_key)
    nonce = int(a.rpc("eth_getTransactionCount", [sender.address, "pending"]), 16)
    first = send(a.url, sender, nonce, OPEN_CHAIN, to=TO, value=1)
    second = send(b.url, sender, nonce + 1, OPEN_CHAIN, to=TO, value=2)

    def counted(node: ClusterNode) -> Any:
        return int(node.rpc("eth_getTransactionCount", [sender.address, "pending"]), 16)

    # once forwarded, each node counts both (or both are mined already)
    for node in open_cluster:
        wait_until(lambda node=node: counted(node) == nonce + 2, 60, "pending nonce")
    receipts = [
        wait_result(open_cluster, n.url, "eth_getTransactionReceipt", [h])
        for n, h in ((open_cluster[2], first), (open_cluster[3], second))
    ]
    assert [r["status"] for r in receipts] == ["0x1", "0x1"]
    top = max(int(r["blockNumber"], 16) for r in receipts)
    wait_height(open_cluster, top)
    latest = {n.rpc("eth_getTransactionCount", [sender.address, hex(top)]) for n in open_cluster}
    assert latest == {hex(nonce + 2)}


def test_web3py_and_metamask_like_flows(open_cluster: list[ClusterNode]) -> None:
    a, b, c, d = open_cluster
    account = Account.from_key(DEV_ACCOUNTS[7].private_key)
    w3a = Web3(HTTPProvider(a.url, request_kwargs={"timeout": 60}))
    w3b = Web3(HTTPProvider(b.url, request_kwargs={"timeout": 60}))
    assert w3a.eth.chain_id == w3b.eth.chain_id == OPEN_CHAIN
    art = load_artifact("Token")
    factory = w3a.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor("Web3", "W3", 10**6).build_transaction(
        {
            "from": account.address,
            "nonce": w3a.eth.get_transaction_count(account.address, "pending"),
            "gasPrice": w3a.eth.gas_price,
        }
    )
    tx_hash = w3a.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    # a wallet polls the receipt on another node (as MetaMask polls its RPC)
    receipt = w3b.eth.wait_for_transaction_receipt(tx_hash, timeout=90, poll_latency=0.2)
    assert receipt.status == 1
    wait_height(open_cluster, receipt.blockNumber)
    for node in (c, d):
        w3 = Web3(HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        token = w3.eth.contract(address=receipt.contractAddress, abi=art["abi"])
        assert token.functions.balanceOf(account.address).call() == 10**6
        assert w3.eth.get_transaction_receipt(tx_hash).blockHash == receipt.blockHash
        history = w3.eth.fee_history(4, "latest", [25, 75])
        blocks = len(history["reward"])  # four, or fewer on a young chain
        assert len(history["baseFeePerGas"]) == blocks + 1 and 1 <= blocks <= 4
        assert history["oldestBlock"] + blocks - 1 >= receipt.blockNumber
        assert w3.eth.gas_price > 0 and w3.eth.max_priority_fee >= 0
        for tag in ("safe", "finalized"):  # every committed block has its quorum of seals
            block = w3.eth.get_block(tag)
            assert receipt.blockNumber <= block.number <= w3.eth.block_number
    # safe/finalized are final everywhere: the same hash at their height on every node
    number = min(int(n.rpc("eth_getBlockByNumber", ["finalized", False])["number"], 16)
                 for n in open_cluster)  # fmt: skip
    hashes = {n.rpc("eth_getBlockByNumber", [hex(number), False])["hash"] for n in open_cluster}
    assert len(hashes) == 1


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_new_heads_over_websocket_on_every_node(
    open_cluster: list[ClusterNode], index: int
) -> None:
    """Each node announces blocks it did not propose (round-robin proposers)."""
    from websockets.sync.client import connect

    node = open_cluster[index]
    me = node.rpc("coco_nodeStatus")["address"].lower()
    with connect(node.url.replace("http", "ws", 1), open_timeout=30) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                            "params": ["newHeads"]}))  # fmt: skip
        json.loads(ws.recv(timeout=30))["result"]
        heads: list[dict[str, Any]] = []
        while len(heads) < 3 or all(h["miner"].lower() == me for h in heads):
            heads.append(json.loads(ws.recv(timeout=60))["params"]["result"])
            assert len(heads) < 12
    numbers = [int(h["number"], 16) for h in heads]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert any(h["miner"].lower() != me for h in heads)


def _client_proxy(node: ClusterNode) -> Any:
    from rpc_proxy import CheckingProxy

    return CheckingProxy(node.url).start()


@pytest.mark.parametrize(
    ("script", "scenarios"),
    [
        ("ethers.mjs", ["deploy_transfer", "fee_types", "nonce_manager", "websocket"]),
        ("viem.mjs", ["http_contracts", "ws_contracts", "fees"]),
    ],
    ids=["ethers", "viem"],
)
def test_js_clients_on_a_non_first_node(
    open_cluster: list[ClusterNode], script: str, scenarios: list[str]
) -> None:
    from clients_support import ensure_npm_packages, run_client_script

    ensure_npm_packages()
    proxy = _client_proxy(open_cluster[1 if script == "ethers.mjs" else 2])
    try:
        run_client_script(script, scenarios, proxy, timeout=300)
        proxy.assert_clean()
    finally:
        proxy.stop()


def test_foundry_deploys_through_one_node_and_reads_through_another(
    open_cluster: list[ClusterNode],
) -> None:
    """cast send --create and cast send through node A; cast reads through node D."""
    from foundry_support import Foundry, ensure_installed, first_number

    ensure_installed()
    a, d = open_cluster[0], open_cluster[3]
    through_a, through_d = Foundry(a.url), Foundry(d.url)
    art = load_artifact("Counter")
    deployed = through_a.cast_json(
        "send", "--private-key", DEV_KEYS[1], "--create", art["bytecode"]
    )
    assert int(str(deployed["status"]), 0) == 1
    address = str(deployed["contractAddress"])
    set_number = through_a.cast_json(
        "send", "--private-key", DEV_KEYS[1], address, "setNumber(uint256)", "4711"
    )
    assert int(str(set_number["status"]), 0) == 1
    wait_height(open_cluster, int(str(set_number["blockNumber"]), 0))
    assert through_d.cast("code", address).lower() == art["deployedBytecode"].lower()
    assert first_number(through_d.cast("call", address, "number()(uint256)")) == 4711
    receipt = through_d.cast_json("receipt", str(set_number["transactionHash"]))
    assert receipt["blockHash"] == set_number["blockHash"]


def test_metamask_wallet_flows_on_another_node(open_cluster: list[ClusterNode]) -> None:
    """MetaMask's own controllers (tests/clients/metamask) on node C: add the network,
    EIP-1559 detection, the polling block tracker, fees from eth_gasPrice, type-2 and legacy
    sends with receipt polling, and a transaction seen while pending."""
    from clients_support import ensure_npm_packages, run_client_script

    mm_dir = Path(__file__).resolve().parent / "clients" / "metamask"
    ensure_npm_packages(mm_dir, timeout=600)
    proxy = _client_proxy(open_cluster[2])
    scenarios = ["add_network", "eip1559", "block_tracker", "fees", "send_eip1559", "send_legacy",
                 "pending"]  # fmt: skip
    try:
        run_client_script(str(mm_dir / "metamask.mjs"), scenarios, proxy, timeout=300)
        proxy.assert_clean()
    finally:
        proxy.stop()


# ------------------------------------------------------------------ strict consortium


def test_a_session_from_one_node_reads_the_same_everywhere(strict: list[ClusterNode]) -> None:
    a, b, _ = strict
    session = sign_in(a.url, OWNER.key)
    token = session["token"]
    urls = [personal(n, token) for n in strict]
    for url in urls:  # the token opens on every node: its key derives from the secret
        assert result(url, "coco_whoami")["address"].lower() == OWNER.address.lower()

    nonce = int(result(urls[0], "eth_getTransactionCount", [OWNER.address, "latest"]), 16)
    deploy = send(a.url, OWNER, nonce, STRICT_CHAIN, data=token_deploy_data(10**6))
    deployed = wait_result(strict, urls[1], "eth_getTransactionReceipt", [deploy])
    assert deployed["status"] == "0x1"
    token_address = deployed["contractAddress"]
    transfer = send(
        b.url, OWNER, nonce + 1, STRICT_CHAIN, to=token_address,
        data=token_call("transfer", OTHER.address, 250),
    )  # fmt: skip
    receipt = wait_result(strict, urls[2], "eth_getTransactionReceipt", [transfer])
    number = int(receipt["blockNumber"], 16)
    wait_height(strict, number)

    at = hex(number)
    log_filter = {"address": token_address, "fromBlock": "0x0", "toBlock": at}
    call = {"from": OWNER.address, "to": token_address, "data": token_call("transfer", TO, 1)}
    seen = [
        {
            "receipt": result(url, "eth_getTransactionReceipt", [transfer]),
            "tx": result(url, "eth_getTransactionByHash", [transfer]),
            "logs": result(url, "eth_getLogs", [log_filter]),
            "balance": result(url, "eth_getBalance", [OWNER.address, at]),
            "nonce": result(url, "eth_getTransactionCount", [OWNER.address, at]),
            "pending": result(url, "eth_getTransactionCount", [OWNER.address, "pending"]),
            "tokens": result(
                url,
                "eth_call",
                [{"to": token_address, "data": token_call("balanceOf", OWNER.address)}, at],
            ),
            "as-owner": result(url, "eth_call", [call, at]),  # msg.sender = the signed-in owner
        }
        for url in urls
    ]
    assert seen[0] == seen[1] == seen[2]
    assert int(seen[0]["nonce"], 16) == nonce + 2 and int(seen[0]["as-owner"], 16) == 1
    assert int(seen[0]["tokens"], 16) == 10**6 - 250
    assert len(seen[0]["logs"]) == 2  # the mint and the transfer

    # another signed-in caller and an anonymous one: the same refusals on every node
    other = sign_in(b.url, OTHER.key)["token"]
    named = [log for log in seen[0]["logs"] if OTHER.address[2:].lower() in log["topics"][2]]
    for caller, its_logs, call_code in (
        # the transfer's log names it; a personal URL cannot call as somebody else
        ([personal(n, other) for n in strict], named, -32602),
        # nobody: `from` is ignored, the call runs as the zero address, which has no tokens
        ([n.url for n in strict], [], 3),
    ):
        answers = [
            [
                outcome(url, "eth_getTransactionReceipt", [transfer]),
                outcome(url, "eth_getTransactionByHash", [transfer]),
                outcome(url, "eth_getBalance", [OWNER.address, at]),
                outcome(url, "eth_getTransactionCount", [OWNER.address, at]),
                outcome(url, "eth_getLogs", [log_filter]),
                outcome(url, "eth_call", [call, at]),
            ]
            for url in caller
        ]
        assert answers[0] == answers[1] == answers[2], answers
        receipt_seen, tx_seen, balance, count, logs, run = answers[0]
        # as on a single strict node: another's transaction does not exist for this caller,
        # its balance and nonce are refused with a reason, only logs naming it are listed
        assert receipt_seen == tx_seen == ("result", None)
        assert balance[0] == count[0] == "error"
        assert balance[2] == count[2] == "private-account"
        assert logs == ("result", its_logs) and len(named) == 1
        assert run[:2] == ("error", call_code)

    # a SIWE message is one-time on the node that issued it: B refuses A's
    origin = a.url
    message = result(a.url, "coco_siweMessage", [OWNER.address, origin])["message"]
    signature = "0x" + bytes(OWNER.sign_message(encode_defunct(text=message)).signature).hex()
    assert "error" in rpc(b.url, "coco_signIn", [message, signature])
    assert result(a.url, "coco_signIn", [message, signature])["address"].lower() == (
        OWNER.address.lower()
    )
    # a sign-out at one node ends the session at every node (the revocation travels sealed:
    # docs/SECURITY.md, "Across the nodes"; tests/test_cluster_sessions.py)
    assert result(urls[0], "coco_signOut") is True
    assert "error" in rpc(urls[0], "coco_whoami")
    for url in urls[1:]:
        wait_until(lambda u=url: "error" in rpc(u, "coco_whoami"), 10, "signed out")


def outcome(url: str, method: str, params: list[Any]) -> tuple[Any, ...]:
    """What a node answers, without the request id: ("result", value) or ("error", code,
    reason)."""
    answer = rpc(url, method, params)
    if "result" in answer:
        return ("result", answer["result"])
    data = answer["error"].get("data")
    return (
        "error",
        answer["error"]["code"],
        data.get("reason") if isinstance(data, dict) else None,
    )


def _signed_call(
    node: ClusterNode, token_address: str, nonce: int, answerer: ClusterNode
) -> tuple[dict[str, Any], str]:
    """A signed query (version 3) for the node ``answerer``, made with ``node``'s facts."""
    head = height(node)
    info = node.rpc("coco_nodeInfo")
    answering = answerer.rpc("coco_getAttestation")["report"]["nodeAddress"]
    data = token_call("balanceOf", OWNER.address)
    leash = {
        "nonce": nonce,
        "blockNumber": head,
        "blockRange": 64,
        "expiry": int(time.time()) + 600,
    }
    signature = query.sign(
        bytes(OWNER.key),
        chain_id=int(info["chainId"], 16) if isinstance(info["chainId"], str) else info["chainId"],
        genesis_hash=bytes.fromhex(info["genesisHash"][2:]),
        sender=bytes.fromhex(OWNER.address[2:]),
        to=bytes.fromhex(token_address[2:]),
        value=0,
        data=bytes.fromhex(data[2:]),
        leash=leash,
        node=bytes.fromhex(answering[2:]),
    )
    call = {
        "from": OWNER.address,
        "to": token_address,
        "data": data,
        "signedQuery": {
            "version": 3,
            "signature": "0x" + signature.hex(),
            "leash": {**{k: hex(v) for k, v in leash.items()}, "node": answering},
        },
    }
    return call, hex(head)


def test_signed_query_answers_only_on_the_node_it_names(strict: list[ClusterNode]) -> None:
    a, b, c = strict
    infos = [n.rpc("coco_nodeInfo") for n in strict]
    assert len({(i["chainId"], i["genesisHash"]) for i in infos}) == 1
    token = sign_in(a.url, OWNER.key)["token"]
    nonce = int(
        result(personal(a, token), "eth_getTransactionCount", [OWNER.address, "pending"]), 16
    )
    deploy = send(a.url, OWNER, nonce, STRICT_CHAIN, data=token_deploy_data(777))
    token_address = wait_result(strict, personal(c, token), "eth_getTransactionReceipt", [deploy])[
        "contractAddress"
    ]
    wait_height(strict, height(a))

    call, at = _signed_call(a, token_address, nonce=int(time.time() * 1000), answerer=b)
    # made with A's chain id and genesis, for B: B answers it, anonymously, as the owner
    assert int(result(b.url, "eth_call", [call, at]), 16) == 777
    # the same (signer, nonce) again on B: refused, as on a single node
    assert refusal(b.url, "eth_call", [call, at]) == "replayed"
    # A and C, which never saw it, refuse it too: it is B's (tests/test_cluster_sessions.py)
    assert refusal(a.url, "eth_call", [call, at]) == "wrong-node"
    assert refusal(c.url, "eth_call", [call, at]) == "wrong-node"


def test_the_sdk_deploys_sealed_through_one_node_and_reads_through_another(
    strict: list[ClusterNode],
) -> None:
    a, b, c = strict
    reports = [
        fetch_and_verify(n.url, expected_chain_id=STRICT_CHAIN, allow_virtual=True) for n in strict
    ]
    # one consortium, one set of transaction keys; each node signs with its own identity
    assert len({json.dumps(_tx_keys(r), sort_keys=True) for r in reports}) == 1
    assert len({r.node_address for r in reports}) == 3

    token = sign_in(a.url, OWNER.key)["token"]
    w3a = confidential_web3(personal(a, token), OWNER, allow_virtual=True)
    art = load_artifact("Token")
    factory = w3a.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx_hash = factory.constructor("Sealed", "SEAL", 4242).transact({"from": OWNER.address})
    receipt = w3a.eth.wait_for_transaction_receipt(tx_hash, timeout=90, poll_latency=0.1)
    assert receipt.status == 1
    # on chain, the init code is an envelope: no plaintext of it anywhere on B
    raw = result(personal(b, token), "eth_getTransactionByHash", ["0x" + bytes(tx_hash).hex()])
    assert art["bytecode"][2:200].lower() not in raw["input"].lower()

    wait_height(strict, receipt.blockNumber)
    w3b = confidential_web3(personal(b, token), OWNER, allow_virtual=True)
    on_b = w3b.eth.contract(address=receipt.contractAddress, abi=art["abi"])
    assert on_b.functions.balanceOf(OWNER.address).call() == 4242
    assert on_b.functions.symbol().call() == "SEAL"
    # a sealed transfer through C, read back through B
    w3c = confidential_web3(personal(c, token), OWNER, allow_virtual=True)
    on_c = w3c.eth.contract(address=receipt.contractAddress, abi=art["abi"])
    sent = on_c.functions.transfer(OTHER.address, 42).transact({"from": OWNER.address})
    mined = w3b.eth.wait_for_transaction_receipt(sent, timeout=90, poll_latency=0.1)
    assert mined.status == 1
    wait_height(strict, mined.blockNumber)
    assert on_b.functions.balanceOf(OWNER.address).call() == 4200

    # one envelope for the whole consortium: sealed to A's attested key, opened by B and C
    key = reports[0].tx_keys[-1]
    owner, contract = bytes.fromhex(OWNER.address[2:]), bytes.fromhex(receipt.contractAddress[2:])
    sealed = seal_request(
        bytes.fromhex(token_call("balanceOf", OWNER.address)[2:]),
        kind=Kind.CALL, chain_id=STRICT_CHAIN, epoch=key.epoch, enclave_public=key.public_key,
        sender=owner, to=contract,
    )  # fmt: skip
    call = {
        "from": OWNER.address,
        "to": receipt.contractAddress,
        "data": "0x" + sealed.envelope.hex(),
    }
    at = hex(mined.blockNumber)
    for node in (b, c):
        answer = result(personal(node, token), "eth_call", [call, at])
        opened = open_response(
            bytes.fromhex(answer[2:]),
            response_key=sealed.response_key,
            request_digest=sealed.request_digest,
            purpose=Purpose.RESULT,
        )
        assert int.from_bytes(opened, "big") == 4200
    # and a transaction sealed to A's key, sent to C, runs: the transfer's data opened
    transfer = seal_request(
        bytes.fromhex(token_call("transfer", OTHER.address, 200)[2:]),
        kind=Kind.CALL, chain_id=STRICT_CHAIN, epoch=key.epoch, enclave_public=key.public_key,
        sender=owner, to=contract,
    )  # fmt: skip
    nonce = int(
        result(personal(c, token), "eth_getTransactionCount", [OWNER.address, "pending"]), 16
    )
    tx_hash = send(
        c.url, OWNER, nonce, STRICT_CHAIN, to=receipt.contractAddress,
        data="0x" + transfer.envelope.hex(),
    )  # fmt: skip
    done = wait_result(strict, personal(a, token), "eth_getTransactionReceipt", [tx_hash])
    assert done["status"] == "0x1"
    wait_height(strict, int(done["blockNumber"], 16))
    assert on_b.functions.balanceOf(OWNER.address).call() == 4000


def _tx_keys(report: Report) -> list[Any]:
    return [[k.epoch, k.public_key.hex()] for k in report.tx_keys]
