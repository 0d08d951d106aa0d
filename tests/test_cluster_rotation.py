"""Ledger secret rotation on a real four-validator consortium, under load
(docs/GOVERNANCE.md, "Ledger secret rotation").

Three members with encryption keys (recovery threshold 2) vote ``rotate_ledger_secret``
while value transfers flow (an observer follows). The block that accepts the proposal
(height h) ends its governance section with the ledger secret record (a share for every
validator); every validator then holds two generations and seals the blocks after h under
generation 1 (sealed body v2, read from the ledger file), blocks up to h stay v1; the
recovery shares are issued anew and name ledger generation 1. A validator killed with
SIGKILL comes back with both generations; one that loses its data directory joins again
(the join wrap carries both generations) and re-imports the whole chain across the
rotation; another starts from a sealed snapshot made after the rotation. Every transaction
accepted before, during and after has its receipt on every node.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import Cluster, RpcFailure, serve
from governance_support import ADDRS, member_args, vote_through

from gateway.governance import typed as t

ROTATED = {"generations": 2, "sealing": 1}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from serve(Cluster(tmp_path / "c", observers=1, init_args=member_args()))


def vote_rotation(node: Any) -> str:
    """Members 0 and 1 (two of three: a majority) propose and accept ``rotate_ledger_secret``
    at ``node``; returns the proposal id."""
    info = node.rpc("coco_nodeInfo")
    domain = t.Domain(int(info["chainId"], 16), bytes.fromhex(info["genesisHash"][2:]))
    return "0x" + vote_through(node, domain, t.Action.make("rotate_ledger_secret")).hex()


def ledger_secret(node: Any) -> dict[str, int] | None:
    try:
        held: dict[str, int] | None = node.rpc("coco_nodeStatus", timeout=5)["ledgerSecret"]
    except (OSError, RpcFailure):
        return None
    return held


def bodies(node: Any) -> dict[int, bytes]:
    """Each canonical block's sealed body as the node's ledger file keeps it."""
    db = sqlite3.connect(f"file:{node.data_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT c.number, b.body FROM canonical c JOIN blocks b ON b.hash = c.hash"
        ).fetchall()
    finally:
        db.close()
    return {int(n): bytes(body) for n, body in rows if body is not None}


def test_rotate_the_ledger_secret_under_load(cluster: Cluster) -> None:
    node1, node2, node4 = cluster["node1"], cluster["node2"], cluster["node4"]
    assert all(ledger_secret(n) == {"generations": 1, "sealing": 0} for n in cluster.validators())
    # sent to node1 and node2 (the nodes that lose their data directory later hold no
    # client transaction only they had: an emptied pool loses its transactions)
    traffic = cluster.flow(senders=2, only=["node1", "node2"])
    traffic.wait_confirmed(4, timeout=120)
    before = node1.rpc("coco_govRecoveryShare", ["0x" + ADDRS[0].hex()])
    # the members vote the rotation while the transfers flow
    pid = vote_rotation(node1)
    cluster.wait_until(
        lambda: all(ledger_secret(n) == ROTATED for n in cluster.validators()),
        120,
        "every validator holds generation 1 and seals under it",
    )
    view = node1.rpc("coco_govProposal", [pid])
    assert view["status"] == "accepted", view
    h = int(view["closedHeight"])
    assert node1.rpc("coco_govState")["ledgerGeneration"] == 1
    # block h ends its section with the ledger secret record: a share for every validator
    records = node1.rpc("coco_govBlock", [hex(h)])["records"]
    assert records[-1]["type"] == "ledger_secret" and records[-1]["generation"] == 1
    assert {s["node"] for s in records[-1]["shares"]} == {
        n.address.lower() for n in cluster.validators()
    }
    for n in cluster.validators():  # the same section (so the same record) everywhere
        assert n.rpc("coco_govBlock", [hex(h)]) == node1.rpc("coco_govBlock", [hex(h)])
    # an observer checks the record in the clear and follows the state past it
    observer = cluster["observer1"]
    cluster.wait_until(lambda: observer.height() > h, 120, "the observer past block h")
    assert observer.rpc("coco_govBlock", [hex(h)]) == node1.rpc("coco_govBlock", [hex(h)])
    assert observer.rpc("coco_govState")["ledgerGeneration"] == 1
    # the flow goes on after the rotation
    traffic.wait_confirmed(4, timeout=120)
    cluster.wait_height(h + 4, timeout=120)
    # sealed bodies: v1 (generation 0) up to h, v2 of generation 1 after
    sealed = bodies(node1)
    assert max(sealed) >= h + 4
    for number, body in sealed.items():
        if 1 <= number <= h:
            assert body[0] == 1, number
        elif number > h:
            assert (body[0], int.from_bytes(body[1:5], "big")) == (2, 1), number
    # new recovery shares, wrapping every generation
    after = node1.rpc("coco_govRecoveryShare", ["0x" + ADDRS[0].hex()])
    assert after["generation"] == before["generation"] + 1
    assert after["ledgerGeneration"] == 1
    # a validator killed with SIGKILL comes back with both generations
    node2.kill9()
    cluster.start(["node2"])
    cluster.wait_until(lambda: ledger_secret(node2) == ROTATED, 120, "node2 back, rotated")
    # every validator (node2 too) past the head: the next one may stop without losing quorum
    cluster.wait_progress(2, cluster.names("validator"), timeout=180)
    # a validator that lost its data directory joins again and re-imports every block
    assert node4.stop() == 0
    node4.empty_data_dir_keeping_identity()
    cluster.start(["node4"])
    cluster.wait_until(lambda: ledger_secret(node4) == ROTATED, 180, "node4 joined, rotated")
    cluster.wait_progress(2, cluster.names("validator"), timeout=180)
    # another starts from a sealed snapshot (chunks sealed under generation 1, the governance
    # replayed through the bodies of both generations)
    node3 = cluster["node3"]
    assert node3.stop() == 0
    node3.empty_data_dir_keeping_identity()
    node3.edit_config(snapshotThreshold=8)
    cluster.start(["node3"])
    cluster.wait_until(
        lambda: "snapshot: opened block" in node3.log(), 180, "node3 opened a snapshot"
    )
    cluster.wait_until(lambda: ledger_secret(node3) == ROTATED, 180, "node3 rotated")
    cluster.wait_progress(2, cluster.names("validator"), timeout=180)
    confirmed = traffic.confirmed()
    traffic.wait_confirmed(3, timeout=120)
    traffic.stop()
    assert traffic.confirmed() > confirmed
    # every receipt, before and after the rotation, on every node (node4 re-executed none:
    # it opened the bodies of both generations)
    cluster.check_nothing_lost(traffic, nodes=cluster.names("validator"), timeout=120)
    cluster.check_agreement()
    assert bodies(node4).keys() >= set(range(1, h + 3))


def test_recovery_after_a_rotation_brings_back_every_generation(tmp_path: Path) -> None:
    """Two validators rotate under load, then both lose every sealed secret (generation 0
    and 1); two members' shares recover the node: it holds both generations again (the
    shares wrapped both), serves every receipt from before and after the rotation, and the
    other node joins through it and gets both; the chain goes on under generation 1."""
    from cluster_harness import wait_until
    from test_governance_recovery import _cli, _member_files

    from gateway.enclave.keys import GENERATIONS_FILE, SECRET_FILE

    cluster = Cluster(tmp_path / "c", validators=2, init_args=member_args())
    try:
        cluster.start()
        cluster.wait_height(1, timeout=180)
        node1, node2 = cluster["node1"], cluster["node2"]
        traffic = cluster.flow(senders=1)
        traffic.wait_confirmed(2, timeout=120)
        vote_rotation(node1)
        cluster.wait_until(
            lambda: ledger_secret(node1) == ROTATED and ledger_secret(node2) == ROTATED,
            120,
            "both nodes rotated",
        )
        shares = node1.rpc("coco_govRecoveryShare", ["0x" + ADDRS[0].hex()])
        assert shares["ledgerGeneration"] == 1
        traffic.wait_confirmed(2, timeout=120)
        traffic.stop()
        cluster.check_nothing_lost(traffic)
        top = node1.height()
        # every node loses every sealed secret
        cluster.stop_all()
        for n in (node1, node2):
            (n.data_dir / SECRET_FILE).unlink()
            (n.data_dir / GENERATIONS_FILE).unlink()
        for n in (node1, node2):
            n.start(args=["--recover"])

        def recovering() -> bool:
            try:
                return bool(node1.rpc("coco_govRecoveryStatus", timeout=3)["recovering"])
            except (OSError, RpcFailure):
                return False

        wait_until(recovering, 120, "node1 in recovery mode")
        for i in (0, 1):
            key, enc = _member_files(tmp_path, i)
            done = _cli("gov", "recovery-share", "--rpc", node1.url, "--key-file", key,
                        "--encryption-key-file", enc)  # fmt: skip
            assert done.returncode == 0, done.stderr
        assert "the node recovered the consortium secret" in done.stderr
        wait_until(lambda: ledger_secret(node1) == ROTATED, 60, "node1 holds both generations")
        assert (node1.data_dir / GENERATIONS_FILE).exists()
        wait_until(lambda: ledger_secret(node2) == ROTATED, 180, "node2 joined with both")
        cluster.wait_height(top + 3, timeout=180)
        cluster.check_nothing_lost(traffic, timeout=120)
        newest = bodies(node2)
        assert (newest[top + 2][0], newest[top + 2][1:5]) == (2, b"\x00\x00\x00\x01")
    except BaseException:
        print(cluster.report())
        raise
    finally:
        cluster.close()
