"""Catch-up from a sealed snapshot with real processes (issue 8, item 9).

Four validators run past a small snapshot threshold; a new member then joins, gets a sealed
snapshot of a validator's finalized state, then the later blocks, and ends with the same
head, state root, and a receipt and balance from before the snapshot. A second new member
reaches node1 only through a ``P2pRelay`` (tests/fault_proxy.py) that holds node1's TLS
files, as an attacker on node1's host would, and flips a byte of the first sealed snapshot
chunk on its way: the member's enclave refuses the chunk with its reason, the node asks
again, and catches up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cluster_harness import Cluster, ClusterNode
from eth_account import Account
from fault_proxy import Rule

from gateway.devaccounts import derive

# pytest-timeout bounds each test's own call: the shared cluster it may start first is made
# in its set-up, under the harness's own deadlines (init 300 s, each node answering 120 s),
# and on a loaded machine that set-up alone can take minutes
pytestmark = pytest.mark.timeout(300, func_only=True)

THRESHOLD = 12  # blocks behind from which a node starts from a snapshot
BLOCK_PERIOD = 1  # header timestamps are whole seconds: no consortium runs faster
SENDER = derive(count=1)[0]  # funded by init --dev-alloc
VALIDATORS = ["node1", "node2", "node3", "node4"]
MEMBER, SHY = "node5", "node6"  # members started late; SHY links only through the relay


def height(node: ClusterNode) -> int:
    return node.height()


def tampered_snapshot_rule(direction: str) -> Rule:
    """Flip one byte in the middle of the first sealed snapshot chunk going ``direction``."""

    def is_chunk(frame: dict[str, Any]) -> bool:
        return frame.get("t") == "snapshot" and len(frame.get("chunk") or b"") > 64

    def transform(frame: dict[str, Any]) -> dict[str, Any]:
        chunk = bytearray(frame["chunk"])
        chunk[len(chunk) // 2] ^= 0x01
        return {**frame, "chunk": bytes(chunk)}

    return Rule("tampered-snapshot-chunk", is_chunk, transform, direction, limit=1)


@pytest.fixture(scope="module")
def consortium(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cluster = Cluster(
        tmp_path_factory.mktemp("snapshot-cluster"),
        validators=4,
        members=2,
        block_period=BLOCK_PERIOD,
    )
    # nobody dials the second member, and it dials node1 only, through a relay
    shy = cluster[SHY]
    for name in cluster.names():
        cluster.set_peers(name, [p for p in cluster.peers_of(name) if p != shy.p2p])
    cluster.set_peers(SHY, [cluster["node1"].p2p])
    cluster.route_through([SHY], "relay")
    shy.edit_config(snapshotThreshold=THRESHOLD)
    cluster[MEMBER].edit_config(snapshotThreshold=THRESHOLD)
    try:
        cluster.start(VALIDATORS)
        yield cluster
    finally:
        cluster.finish(request, clean_exit=True)


def _same_block(a: ClusterNode, b: ClusterNode, number: int) -> dict[str, Any]:
    block_a = a.rpc("eth_getBlockByNumber", [hex(number), False])
    block_b = b.rpc("eth_getBlockByNumber", [hex(number), False])
    assert block_a["hash"] == block_b["hash"] and block_a["stateRoot"] == block_b["stateRoot"]
    return block_a  # type: ignore[no-any-return]


def test_a_new_member_starts_from_a_snapshot(consortium: Cluster) -> None:
    v1, member = consortium["node1"], consortium[MEMBER]
    tx = {
        "chainId": consortium.chain_id, "nonce": 0, "to": "0x" + "79" * 20, "value": 4242,
        "gas": 21_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
    }  # fmt: skip
    raw = Account.sign_transaction(tx, SENDER.private_key).raw_transaction
    tx_hash = v1.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
    receipt = consortium.wait_until(
        lambda: v1.rpc("eth_getTransactionReceipt", [tx_hash]), 90, "the receipt on node1"
    )
    mined = int(receipt["blockNumber"], 16)
    # far enough that the snapshot's block lies more than THRESHOLD blocks after the receipt's
    consortium.wait_height(mined + THRESHOLD + 3, ["node1"], timeout=180)
    consortium.start([MEMBER])
    consortium.wait_until(
        lambda: "snapshot: opened block" in member.log(), 120, "a snapshot opened"
    )
    log = member.log()
    assert "catch-up:" not in log.split("snapshot: opened block")[0]  # no replay before it
    assert "MB, " in log and "%" in log  # progress lines: "snapshot: 0.1/0.1 MB, 100%"
    opened = int(log.split("snapshot: opened block ")[1].split()[0])
    assert opened > mined + THRESHOLD
    consortium.wait_height(height(v1), [MEMBER], timeout=120)
    top = min(height(member), height(v1))
    _same_block(member, v1, top)
    _same_block(member, v1, opened)
    # from before the snapshot, read through it
    on_member = member.rpc("eth_getTransactionReceipt", [tx_hash])
    assert on_member == receipt
    assert int(member.rpc("eth_getBalance", ["0x" + "79" * 20, "latest"]), 16) == 4242
    assert member.rpc("coco_getFinality", [hex(opened)])["final"] is True
    # and it keeps following block by block
    consortium.wait_height(top + 3, [MEMBER], timeout=60)


def test_a_tampered_snapshot_chunk_is_refused_and_asked_again(consortium: Cluster) -> None:
    v1, shy = consortium["node1"], consortium[SHY]
    ((relay, direction),) = consortium.relays_into(SHY)
    assert relay.upstream == v1.p2p  # its only link: to node1, through the relay
    rule = relay.add_rule(tampered_snapshot_rule(direction))
    consortium.wait_height(2 * THRESHOLD, ["node1"], timeout=180)
    consortium.start([SHY])
    consortium.wait_until(lambda: "snapshot: opened block" in shy.log(), 120, "a snapshot opened")
    assert rule.applied == 1 and not relay.errors, relay.errors
    ((original, (changed,)),) = rule.seen
    assert original["chunk"] != changed["chunk"] and len(original["chunk"]) == len(changed["chunk"])
    log = shy.log()
    assert "refused: bad-snapshot-chunk" in log, log[-4000:]
    # asked again: the same chunk came once more, unchanged, and was taken
    assert relay.counts[f"{direction}:snapshot"] >= 2
    refused_at = log.index("refused: bad-snapshot-chunk")
    assert "snapshot: opened block" in log[refused_at:]
    consortium.wait_height(height(v1), [SHY], timeout=120)
    _same_block(shy, v1, min(height(shy), height(v1)))


def test_a_validator_with_an_emptied_data_directory_starts_from_a_snapshot(
    consortium: Cluster,
) -> None:
    """node4 loses its data directory but keeps its identity (the sealing key file and its
    sealed node key, not its sealed consortium secret): it joins again, takes a snapshot,
    and votes again."""
    v1, node4 = consortium["node1"], consortium["node4"]
    assert node4.stop() == 0
    node4.empty_data_dir_keeping_identity()
    node4.edit_config(snapshotThreshold=THRESHOLD)
    consortium.wait_height(height(v1) + THRESHOLD, ["node1"], timeout=120)  # three go on
    consortium.start(["node4"])
    consortium.wait_until(
        lambda: "snapshot: opened block" in node4.log(), 120, "node4 opened a snapshot"
    )
    target = height(v1)
    consortium.wait_height(target, ["node4"], timeout=120)
    _same_block(node4, v1, target)
    # it takes part again: a later block is proposed or sealed by it
    address = node4.status()["address"].lower()

    def node4_took_part() -> bool:
        finality = v1.rpc("coco_getFinality", [hex(height(v1))])
        names = [finality["proposer"], *finality["signers"]]
        return address in [str(n).lower() for n in names]

    consortium.wait_until(node4_took_part, 120, "a block proposed or sealed by node4")
