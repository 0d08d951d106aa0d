"""Four validators, a member and an observer as real `coco-gateway node --config` processes
(the session's shared "open" consortium, tests/cluster_harness.py ``lend_open``).

The chain advances by QBFT inside the enclaves; a transaction sent to one node has its
receipt on another, one sent to the member is forwarded to the validators; every node
returns the same block hashes; the observer checks finality from headers and seals itself
and its data directory holds no plaintext of the calldata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import (
    Cluster,
    ClusterNode,
    ClusterPool,
    lend_open,
    make_identity,
    node_port,
    wait_until,
)
from conftest import rpc
from eth_account import Account

from gateway.devaccounts import derive

# pytest-timeout bounds each test's own call: the shared cluster it may start first is made
# in its set-up, under the harness's own deadlines (init 300 s, each node answering 120 s),
# and on a loaded machine that set-up alone can take minutes
pytestmark = pytest.mark.timeout(300, func_only=True)

MARKER = b"coco-p2p-plaintext-marker-7f3a"
SENDER = derive(count=9)[8]  # funded by init --dev-alloc; the client tests use 0..7


@pytest.fixture
def consortium(cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared "open" consortium (also tests/test_cluster_clients.py's): node1..node4
    (validators) and observer1, all running; restored after each test (a node a test
    stopped is started again, and all catch up)."""
    yield from lend_open(cluster_pool, request)


@pytest.fixture
def cluster(consortium: Cluster) -> list[ClusterNode]:
    """node1..node4 (the validators), then observer1."""
    return [*consortium.validators(), consortium["observer1"]]


def height(node: ClusterNode) -> int:
    return node.height()


def test_a_member_forwards_and_follows(consortium: Cluster) -> None:
    """A transaction sent to the member (node5) is forwarded sealed to a validator, decided
    there, pushed back, and its receipt read on the member."""
    member = consortium["node5"]
    assert member.status()["role"] == "member"
    sender = derive()[9]  # used by no other test
    nonce = int(member.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16)
    tx = {
        "chainId": consortium.chain_id, "nonce": nonce, "to": "0x" + "78" * 20, "value": 7,
        "gas": 21_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
    }  # fmt: skip
    raw = Account.sign_transaction(tx, sender.private_key).raw_transaction
    tx_hash = member.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])

    def receipt(node: ClusterNode) -> Any:
        return node.rpc("eth_getTransactionReceipt", [tx_hash])

    on_member = consortium.wait_until(lambda: receipt(member), 90, "the receipt on the member")
    for validator in consortium.validators():
        assert consortium.wait_until(lambda v=validator: receipt(v), 60, "the receipt") == on_member
    assert member.rpc("eth_getTransactionCount", [sender.address, "latest"]) == hex(nonce + 1)
    number = int(on_member["blockNumber"], 16)
    finality = member.rpc("coco_getFinality", [hex(number)])
    assert finality["final"] is True and finality["quorum"] == 3
    assert set(finality["signers"]) <= set(finality["validators"])
    assert len(finality["signers"]) >= finality["quorum"]


def test_the_chain_advances_and_every_node_agrees(cluster: list[ClusterNode]) -> None:
    validators = cluster[:4]
    wait_until(lambda: min(height(n) for n in validators) >= 3, 90, "height 3 everywhere")
    top = min(height(n) for n in validators)
    for number in range(0, top + 1):
        hashes = {n.rpc("eth_getBlockByNumber", [hex(number), False])["hash"] for n in validators}
        assert len(hashes) == 1, f"block {number}: {hashes}"
    status = validators[1].rpc("coco_nodeStatus")
    assert status["role"] == "validator" and status["state"] == "ready"
    assert len(status["validators"]) == 4 and len(status["peers"]) >= 3
    assert validators[0].rpc("eth_getBlockByNumber", ["finalized", False]) is not None


@pytest.mark.parametrize("index", [1, 4], ids=["validator", "observer"])
def test_new_heads_are_announced(cluster: list[ClusterNode], index: int) -> None:
    from websockets.sync.client import connect

    node = cluster[index]
    with connect(node.url.replace("http", "ws", 1), open_timeout=30) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                            "params": ["newHeads"]}))  # fmt: skip
        sub = json.loads(ws.recv(timeout=30))["result"]
        before = height(node)
        seen: list[int] = []
        while len(seen) < 2:
            note = json.loads(ws.recv(timeout=60))
            assert note["params"]["subscription"] == sub
            seen.append(int(note["params"]["result"]["number"], 16))
    assert seen[0] >= before and seen[1] > seen[0]
    assert (
        note["params"]["result"]["hash"]
        == node.rpc("eth_getBlockByNumber", [hex(seen[1]), False])["hash"]
    )


def test_net_peer_count_counts_links(cluster: list[ClusterNode]) -> None:
    assert int(cluster[0].rpc("net_peerCount"), 16) >= 3


def test_a_transaction_sent_to_one_node_has_its_receipt_on_another(
    cluster: list[ClusterNode],
) -> None:
    a, b = cluster[0], cluster[2]
    tx = {
        "chainId": int(a.rpc("eth_chainId"), 16),
        "nonce": int(a.rpc("eth_getTransactionCount", [SENDER.address, "latest"]), 16),
        "to": "0x" + "77" * 20,
        "value": 12345,
        "gas": 100_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + MARKER.hex(),
    }  # fmt: skip
    raw = Account.sign_transaction(tx, SENDER.private_key).raw_transaction
    tx_hash = a.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])

    def receipt_on_b() -> Any:
        return rpc(b.url, "eth_getTransactionReceipt", [tx_hash]).get("result")

    receipt = wait_until(receipt_on_b, 90, "the receipt on node3")
    assert receipt["status"] == "0x1"
    number = int(receipt["blockNumber"], 16)
    hashes = {
        n.rpc("eth_getBlockByNumber", [hex(number), False])["hash"]
        for n in cluster[:4]
        if height(n) >= number or wait_until(lambda n=n: height(n) >= number, 60, "height")
    }
    assert hashes == {receipt["blockHash"]}
    balance = int(b.rpc("eth_getBalance", ["0x" + "77" * 20, "latest"]), 16)
    assert balance >= 12345

    # the observer follows, checks the block's seals itself, and holds no plaintext
    observer = cluster[4]
    wait_until(lambda: height(observer) >= number, 90, "the observer reaches the block")
    header = observer.rpc("eth_getBlockByNumber", [hex(number), False])
    assert header["hash"] == receipt["blockHash"] and header["transactions"] == []
    finality = observer.rpc("coco_getFinality", [hex(number)])
    assert finality["final"] is True and len(finality["signers"]) >= finality["quorum"] == 3
    refused = rpc(observer.url, "eth_getBalance", ["0x" + "77" * 20, "latest"])
    assert "observer" in refused["error"]["message"]
    assert refused["error"]["data"]["reason"] == "observer-node"
    assert (
        "observer" in rpc(observer.url, "eth_getTransactionReceipt", [tx_hash])["error"]["message"]
    )
    status = observer.rpc("coco_nodeStatus")
    assert status["role"] == "observer" and status["height"] >= number
    # the consortium's facts, as a validator tells them: the four validators, not one
    info, told = observer.rpc("coco_nodeInfo"), cluster[0].rpc("coco_nodeInfo")
    assert sorted(info["validators"]) == sorted(told["validators"]), (info, told)
    assert len(told["validators"]) == 4
    assert (info["chainId"], info["genesisHash"], info["fork"], info["privacy"]) == (
        told["chainId"], told["genesisHash"], told["fork"], told["privacy"],
    )  # fmt: skip
    leaked = [
        path
        for path in Path(observer.data_dir).rglob("*")
        if path.is_file() and MARKER in path.read_bytes()
    ]
    assert leaked == []
    # the validators' own data directories hold it sealed only: the marker is not in the clear
    for node in cluster[:4]:
        files = [p for p in Path(node.data_dir).rglob("*") if p.is_file()]
        assert not any(MARKER in p.read_bytes() for p in files), node.name


def test_an_unlisted_node_is_refused_on_both_sides(cluster: list[ClusterNode]) -> None:
    node1 = cluster[0]
    here = node1.directory.parent / "intruder"
    here.mkdir()
    identity = make_identity(here / "data")
    doc = json.loads(node1.config.read_text())
    intruder = ClusterNode("intruder", here, "validator", node_port(), node_port())
    doc.update(
        name=intruder.name,
        rpc={"host": "127.0.0.1", "port": intruder.rpc_port},
        p2p={"host": "127.0.0.1", "port": intruder.p2p_port},
        peers=[node1.p2p],
    )
    intruder.config.write_text(json.dumps(doc))
    intruder.start()
    try:
        address = identity["address"].hex()
        wait_until(
            lambda: "unlisted-node" in intruder.log() and f"0x{address}" in node1.log(),
            60,
            "both sides log the refusal",
        )
        assert "refused the link" in intruder.log()
        assert f"refused a link from 127.0.0.1: unlisted-node: node 0x{address}" in node1.log()
        assert not intruder.answers()  # it never got the secret, so it serves nothing
    finally:
        intruder.stop()


def test_a_validator_that_was_down_catches_up(
    consortium: Cluster, cluster: list[ClusterNode]
) -> None:
    node1, node4 = consortium["node1"], consortium["node4"]
    mark = node4.log_mark()
    node4.kill9()
    start = node1.height()
    # three of four validators are a quorum: the chain goes on
    consortium.wait_height(start + 12, ["node1"], timeout=90)
    consortium.start(["node4"], timeout=60)
    target = node1.height()
    consortium.wait_height(target, ["node4"], timeout=90)
    assert "catch-up:" in node4.log_since(mark)
    assert node4.block_hashes(target, target) == node1.block_hashes(target, target)
    # and it takes part again: the chain still advances with all four
    consortium.wait_height(target + 3, ["node4"], timeout=60)
