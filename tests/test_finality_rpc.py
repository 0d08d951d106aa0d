"""coco_getFinality and coco_nodeStatus on the dev chain (a consortium of one); the consortium
cases are in tests/test_cluster_basic.py."""

from __future__ import annotations

from typing import Any

from conftest import rpc


def call(node: Any, method: str, params: list[Any] | None = None) -> Any:
    answer = rpc(node.url, method, params)
    assert "result" in answer, answer
    return answer["result"]


def test_dev_blocks_are_final_by_their_v1_seal(node: Any) -> None:
    call(node, "evm_mine")
    proof = call(node, "coco_getFinality", ["latest"])
    assert proof["scheme"] == "seal-v1" and proof["final"] is True
    assert proof["signers"] == proof["validators"] and proof["quorum"] == 1
    latest = call(node, "eth_getBlockByNumber", ["latest", False])
    assert proof["hash"] == latest["hash"]
    assert call(node, "eth_getBlockByNumber", ["finalized", False])["hash"] == latest["hash"]
    assert call(node, "coco_getFinality", ["0xffffffff"]) is None


def test_dev_node_status_is_a_consortium_of_one(node: Any) -> None:
    status = call(node, "coco_nodeStatus")
    assert status["role"] == "dev" and status["state"] == "ready"
    assert status["validators"] == [status["address"]] and status["peers"] == []
    assert status["refused"] == {}  # no peers, nothing refused
    assert status["finalized"] == status["height"] >= 0
    assert call(node, "net_peerCount") == "0x0"
