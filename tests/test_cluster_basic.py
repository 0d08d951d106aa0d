"""Four validators and an observer as real `coco-gateway node --config` processes.

The chain advances by QBFT inside the enclaves; a transaction sent to one node has its
receipt on another; every node returns the same block hashes; the observer checks finality
from headers and seals itself and its data directory holds no plaintext of the calldata.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    CHAIN_ID,
    FUNDED_KEY,
    ClusterNode,
    make_consortium,
    make_identity,
    wait_for,
)
from conftest import free_port, rpc
from eth_account import Account

MARKER = b"coco-p2p-plaintext-marker-7f3a"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ClusterNode]]:
    root = tmp_path_factory.mktemp("cluster")
    nodes = [ClusterNode(config) for config in make_consortium(root)]
    try:
        for node in nodes:
            node.start()
        wait_for(lambda: all(n.ready() for n in nodes), 120, "every node answers RPC", nodes)
        yield nodes
    finally:
        codes = [node.stop(signal.SIGTERM) for node in nodes]
        assert codes == [0] * len(nodes), [n.log()[-3000:] for n in nodes]


def height(node: ClusterNode) -> int:
    return int(node.call("eth_blockNumber"), 16)


def test_the_chain_advances_and_every_node_agrees(cluster: list[ClusterNode]) -> None:
    validators = cluster[:4]
    wait_for(lambda: min(height(n) for n in validators) >= 3, 90, "height 3 everywhere", cluster)
    top = min(height(n) for n in validators)
    for number in range(0, top + 1):
        hashes = {n.call("eth_getBlockByNumber", [hex(number), False])["hash"] for n in validators}
        assert len(hashes) == 1, f"block {number}: {hashes}"
    status = validators[1].call("coco_nodeStatus")
    assert status["role"] == "validator" and status["state"] == "ready"
    assert len(status["validators"]) == 4 and len(status["peers"]) >= 3
    assert validators[0].call("eth_getBlockByNumber", ["finalized", False]) is not None


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
        == node.call("eth_getBlockByNumber", [hex(seen[1]), False])["hash"]
    )


def test_net_peer_count_counts_links(cluster: list[ClusterNode]) -> None:
    assert int(cluster[0].call("net_peerCount"), 16) >= 3


def test_a_transaction_sent_to_one_node_has_its_receipt_on_another(
    cluster: list[ClusterNode],
) -> None:
    a, b = cluster[0], cluster[2]
    tx = {
        "chainId": CHAIN_ID,
        "nonce": int(a.call("eth_getTransactionCount", [Account.from_key(FUNDED_KEY).address,
                                                         "latest"]), 16),
        "to": "0x" + "77" * 20,
        "value": 12345,
        "gas": 100_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "data": "0x" + MARKER.hex(),
    }  # fmt: skip
    raw = Account.sign_transaction(tx, FUNDED_KEY).raw_transaction
    tx_hash = a.call("eth_sendRawTransaction", ["0x" + raw.hex()])

    def receipt_on_b() -> Any:
        return rpc(b.url, "eth_getTransactionReceipt", [tx_hash]).get("result")

    receipt = wait_for(receipt_on_b, 90, "the receipt on node3", cluster)
    assert receipt["status"] == "0x1"
    number = int(receipt["blockNumber"], 16)
    hashes = {
        n.call("eth_getBlockByNumber", [hex(number), False])["hash"]
        for n in cluster[:4]
        if height(n) >= number or wait_for(lambda n=n: height(n) >= number, 60, "height", cluster)
    }
    assert hashes == {receipt["blockHash"]}
    balance = int(b.call("eth_getBalance", ["0x" + "77" * 20, "latest"]), 16)
    assert balance >= 12345

    # the observer follows, checks the block's seals itself, and holds no plaintext
    observer = cluster[4]
    wait_for(lambda: height(observer) >= number, 90, "the observer reaches the block", cluster)
    header = observer.call("eth_getBlockByNumber", [hex(number), False])
    assert header["hash"] == receipt["blockHash"] and header["transactions"] == []
    finality = observer.call("coco_getFinality", [hex(number)])
    assert finality["final"] is True and len(finality["signers"]) >= finality["quorum"] == 3
    refused = rpc(observer.url, "eth_getBalance", ["0x" + "77" * 20, "latest"])
    assert "observer" in refused["error"]["message"]
    assert refused["error"]["data"]["reason"] == "observer-node"
    assert (
        "observer" in rpc(observer.url, "eth_getTransactionReceipt", [tx_hash])["error"]["message"]
    )
    status = observer.call("coco_nodeStatus")
    assert status["role"] == "observer" and status["height"] >= number
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
    root = node1.config.parent.parent
    here = root / "intruder"
    here.mkdir()
    identity = make_identity(here / "data")
    doc = json.loads(node1.config.read_text())
    doc.update(
        name="intruder",
        rpc={"host": "127.0.0.1", "port": free_port()},
        p2p={"host": "127.0.0.1", "port": free_port()},
        peers=[json.loads(n.config.read_text())["peers"][0] for n in cluster[1:2]],
    )
    (here / "node.json").write_text(json.dumps(doc))
    intruder = ClusterNode(here / "node.json").start()
    try:
        address = identity["address"].hex()
        wait_for(
            lambda: "unlisted-node" in intruder.log() and f"0x{address}" in cluster[0].log(),
            60,
            "both sides log the refusal",
            [intruder, cluster[0]],
        )
        assert "refused the link" in intruder.log()
        assert f"refused a link from 127.0.0.1: unlisted-node: node 0x{address}" in node1.log()
        assert not intruder.ready()  # it never got the secret, so it serves nothing
    finally:
        intruder.stop()


def test_a_validator_that_was_down_catches_up(cluster: list[ClusterNode]) -> None:
    node4 = cluster[3]
    node4.stop(signal.SIGKILL)
    start = height(cluster[0])
    # three of four validators are a quorum: the chain goes on
    wait_for(lambda: height(cluster[0]) >= start + 12, 90, "12 blocks without node4", cluster)
    node4.start()
    wait_for(node4.ready, 60, "node4 back", cluster)
    target = height(cluster[0])
    wait_for(lambda: height(node4) >= target, 90, "node4 caught up", cluster)
    assert "catch-up:" in node4.log()
    number = target
    assert (
        node4.call("eth_getBlockByNumber", [hex(number), False])["hash"]
        == cluster[0].call("eth_getBlockByNumber", [hex(number), False])["hash"]
    )
    # and it takes part again: the chain still advances with all four
    wait_for(lambda: height(node4) >= target + 3, 60, "node4 follows the chain", cluster)


def test_a_member_forwards_and_follows(tmp_path: Path) -> None:
    """One validator and one member: a transaction sent to the member is forwarded sealed to
    the validator, decided there, pushed back, and its receipt read on the member."""
    configs = make_consortium(tmp_path, validators=1, members=1, observers=0)
    nodes = [ClusterNode(config) for config in configs]
    try:
        for node in nodes:
            node.start()
        wait_for(lambda: all(n.ready() for n in nodes), 120, "both nodes answer RPC", nodes)
        validator, member = nodes
        assert member.call("coco_nodeStatus")["role"] == "member"
        sender = Account.from_key(FUNDED_KEY).address
        tx = {
            "chainId": CHAIN_ID, "nonce": 0, "to": "0x" + "78" * 20, "value": 7, "gas": 21_000,
            "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
        }  # fmt: skip
        raw = Account.sign_transaction(tx, FUNDED_KEY).raw_transaction
        tx_hash = member.call("eth_sendRawTransaction", ["0x" + raw.hex()])

        def receipt(node: ClusterNode) -> Any:
            return rpc(node.url, "eth_getTransactionReceipt", [tx_hash]).get("result")

        on_member = wait_for(lambda: receipt(member), 90, "the receipt on the member", nodes)
        assert on_member == receipt(validator)
        assert member.call("eth_getTransactionCount", [sender, "latest"]) == "0x1"
        number = int(on_member["blockNumber"], 16)
        finality = member.call("coco_getFinality", [hex(number)])
        assert finality["final"] is True and finality["signers"] == finality["validators"]
    finally:
        codes = [node.stop() for node in nodes]
    assert codes == [0, 0], [n.log()[-3000:] for n in nodes]
