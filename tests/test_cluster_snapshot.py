"""Catch-up from a sealed snapshot with real processes (issue 8, item 9).

Four validators run past a small snapshot threshold; a new member then joins, gets a sealed
snapshot of a validator's finalized state, then the later blocks, and ends with the same
head, state root, and a receipt and balance from before the snapshot. A second new member
reaches its peer only through a proxy that alters one bit of the first snapshot frame on
the way: its enclave refuses the chunk with a reason, the node asks again, and catches up.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import CHAIN_ID, FUNDED_KEY, ClusterNode, make_consortium, wait_for
from conftest import free_port, rpc
from eth_account import Account

from gateway.enclave.keys import NODE_KEY_FILE, SEALING_KEY_FILE

THRESHOLD = 12  # blocks behind from which a node starts from a snapshot
BLOCK_PERIOD = 1  # header timestamps are whole seconds: no consortium runs faster


def height(node: ClusterNode) -> int:
    return int(node.call("eth_blockNumber"), 16)


class TamperingProxy:
    """A TCP relay in front of one node's p2p port. WebSocket frames from the server to the
    client are not masked, so the relay can parse them; it flips one bit in the middle of the
    first ``snapshot`` frame it sees, and passes everything else as it is."""

    def __init__(self, upstream_port: int, taken: set[int]) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        while self.port in taken:  # a port a node is configured with, not bound yet
            self.port = free_port()
        self.tampered = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:  # the node is stopping
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._frames, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _frames(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()

        def need(n: int) -> bool:
            while len(buf) < n:
                data = src.recv(1 << 20)
                if not data:
                    return False
                buf.extend(data)
            return True

        try:
            # the HTTP upgrade answer, as it is
            while b"\r\n\r\n" not in buf:
                if not need(len(buf) + 1):
                    return
            end = buf.index(b"\r\n\r\n") + 4
            dst.sendall(bytes(buf[:end]))
            del buf[:end]
            while need(2):
                length, head = buf[1] & 0x7F, 2
                if length == 126:
                    if not need(4):
                        return
                    length, head = int.from_bytes(buf[2:4], "big"), 4
                elif length == 127:
                    if not need(10):
                        return
                    length, head = int.from_bytes(buf[2:10], "big"), 10
                if not need(head + length):
                    return
                frame = bytearray(buf[: head + length])
                del buf[: head + length]
                payload = frame[head:]
                if not self.tampered and b"\xa8snapshot" in payload[:16] and length > 1024:
                    frame[head + length // 2] ^= 0x01
                    self.tampered += 1
                dst.sendall(bytes(frame))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _below_ephemeral_port(taken: set[int]) -> int:
    """A free port below Linux's ephemeral range (32768..): a node started minutes after
    the others must not find its port taken by some client connection's local end."""
    for _ in range(1000):
        port = random.randint(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port below 32000")


def _move_ports(root: Path, node: ClusterNode, taken: set[int]) -> None:
    """Give ``node`` other RPC and p2p ports, in every file that names them."""
    doc = json.loads(node.config.read_text())
    moves = {doc[k]["port"]: _below_ephemeral_port(taken) for k in ("rpc", "p2p")}
    for path in root.rglob("*.json"):
        text = path.read_text()
        for old, new in moves.items():
            text = re.sub(rf"\b{old}\b", str(new), text)
        path.write_text(text)
    node.url = f"http://127.0.0.1:{moves[doc['rpc']['port']]}"


def _edit(config: Path, **fields: Any) -> None:
    doc = json.loads(config.read_text())
    doc.update(fields)
    config.write_text(json.dumps(doc, indent=2))


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("snapshot-cluster")
    configs = make_consortium(root, validators=4, members=2, observers=0, block_period=BLOCK_PERIOD)
    nodes = [ClusterNode(c) for c in configs]
    validators, (member, shy) = nodes[:4], nodes[4:]
    taken = set()
    for node in nodes:
        doc = json.loads(node.config.read_text())
        taken |= {doc["rpc"]["port"], doc["p2p"]["port"]}
    for late in (member, shy):
        _move_ports(root, late, taken)
    # the second member reaches node1 only through the tampering proxy: nobody dials it
    shy_p2p = json.loads(shy.config.read_text())["p2p"]["port"]
    for node in nodes:
        doc = json.loads(node.config.read_text())
        _edit(node.config, peers=[p for p in doc["peers"] if not p.endswith(f":{shy_p2p}")])
    node1_p2p = json.loads(validators[0].config.read_text())["p2p"]["port"]
    proxy = TamperingProxy(node1_p2p, taken)
    _edit(shy.config, peers=[f"127.0.0.1:{proxy.port}"], snapshotThreshold=THRESHOLD)
    _edit(member.config, snapshotThreshold=THRESHOLD)
    try:
        for node in validators:
            node.start()
        wait_for(lambda: all(n.ready() for n in validators), 120, "validators answer", nodes)
        yield {"validators": validators, "member": member, "shy": shy, "proxy": proxy,
               "nodes": nodes}  # fmt: skip
    finally:
        proxy.close()
        codes = [node.stop(signal.SIGTERM) for node in nodes]
        assert all(c in (0, None) for c in codes), [n.log()[-3000:] for n in nodes]


def _same_block(a: ClusterNode, b: ClusterNode, number: int) -> dict[str, Any]:
    block_a = a.call("eth_getBlockByNumber", [hex(number), False])
    block_b = b.call("eth_getBlockByNumber", [hex(number), False])
    assert block_a["hash"] == block_b["hash"] and block_a["stateRoot"] == block_b["stateRoot"]
    return block_a  # type: ignore[no-any-return]


def test_a_new_member_starts_from_a_snapshot(consortium: dict[str, Any]) -> None:
    validators, member = consortium["validators"], consortium["member"]
    nodes = consortium["nodes"]
    v1 = validators[0]
    tx = {
        "chainId": CHAIN_ID, "nonce": 0, "to": "0x" + "79" * 20, "value": 4242, "gas": 21_000,
        "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
    }  # fmt: skip
    raw = Account.sign_transaction(tx, FUNDED_KEY).raw_transaction
    tx_hash = v1.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    receipt = wait_for(
        lambda: rpc(v1.url, "eth_getTransactionReceipt", [tx_hash]).get("result"),
        90,
        "the receipt on node1",
        nodes,
    )
    mined = int(receipt["blockNumber"], 16)
    wait_for(
        lambda: height(v1) >= mined + 3 * THRESHOLD, 180, "the chain past the threshold", nodes
    )
    member.start()
    wait_for(member.ready, 120, "the member answers", nodes)
    wait_for(lambda: "snapshot: opened block" in member.log(), 120, "a snapshot opened", nodes)
    log = member.log()
    assert "catch-up:" not in log.split("snapshot: opened block")[0]  # no replay before it
    assert "MB, " in log and "%" in log  # progress lines: "snapshot: 0.1/0.1 MB, 100%"
    opened = int(log.split("snapshot: opened block ")[1].split()[0])
    assert opened > mined + THRESHOLD
    target = height(v1)
    wait_for(lambda: height(member) >= target, 120, "the member catches up after it", nodes)
    top = min(height(member), height(v1))
    _same_block(member, v1, top)
    _same_block(member, v1, opened)
    # from before the snapshot, read through it
    on_member = member.call("eth_getTransactionReceipt", [tx_hash])
    assert on_member == receipt
    assert int(member.call("eth_getBalance", ["0x" + "79" * 20, "latest"]), 16) == 4242
    assert member.call("coco_getFinality", [hex(opened)])["final"] is True
    # and it keeps following block by block
    wait_for(lambda: height(member) >= top + 3, 60, "the member follows", nodes)


@pytest.mark.xfail(
    run=False,
    reason="its TamperingProxy flips a bit of a snapshot frame at the TCP level, which node "
    "links no longer carry in the clear since they run over TLS (wss, /p2p/v2): the member "
    "behind it never links; the check must move onto tests/fault_proxy.py's P2pRelay. A "
    "tampered chunk's refusal is tested in-process by tests/test_snapshot.py",
)
def test_a_tampered_snapshot_chunk_is_refused_and_asked_again(consortium: dict[str, Any]) -> None:
    validators, shy, proxy = consortium["validators"], consortium["shy"], consortium["proxy"]
    nodes = consortium["nodes"]
    v1 = validators[0]
    wait_for(lambda: height(v1) >= 2 * THRESHOLD, 180, "the chain past the threshold", nodes)
    shy.start()
    wait_for(shy.ready, 120, "the second member answers", nodes)
    wait_for(lambda: "snapshot: opened block" in shy.log(), 120, "a snapshot opened", nodes)
    assert proxy.tampered == 1
    log = shy.log()
    assert "refused: bad-snapshot-chunk" in log, log[-4000:]
    target = height(v1)
    wait_for(lambda: height(shy) >= target, 120, "the second member catches up", nodes)
    _same_block(shy, v1, min(height(shy), height(v1)))


def test_a_validator_with_an_emptied_data_directory_starts_from_a_snapshot(
    consortium: dict[str, Any],
) -> None:
    """node4 loses its data directory but keeps its identity (the sealing key file and its
    sealed node key, not its sealed consortium secret): it joins again, takes a snapshot,
    and votes again."""
    validators, nodes = consortium["validators"], consortium["nodes"]
    v1, node4 = validators[0], validators[3]
    assert node4.stop(signal.SIGTERM) == 0
    kept = node4.data_dir.parent / "kept"
    kept.mkdir()
    for name in (SEALING_KEY_FILE, NODE_KEY_FILE):
        shutil.copyfile(node4.data_dir / name, kept / name)
    shutil.rmtree(node4.data_dir)
    kept.rename(node4.data_dir)
    _edit(node4.config, snapshotThreshold=THRESHOLD)
    start = height(v1)
    wait_for(lambda: height(v1) >= start + THRESHOLD, 120, "three validators go on", nodes)
    node4.start()
    wait_for(node4.ready, 120, "node4 answers again", nodes)
    wait_for(lambda: "snapshot: opened block" in node4.log(), 120, "node4 opened a snapshot", nodes)
    target = height(v1)
    wait_for(lambda: height(node4) >= target, 120, "node4 catches up", nodes)
    _same_block(node4, v1, target)
    # it takes part again: a later block is proposed or sealed by it
    address = node4.call("coco_nodeStatus")["address"].lower()

    def node4_took_part() -> bool:
        finality = v1.call("coco_getFinality", [hex(height(v1))])
        names = [finality["proposer"], *finality["signers"]]
        return address in [str(n).lower() for n in names]

    wait_for(node4_took_part, 120, "a block proposed or sealed by node4", nodes)
