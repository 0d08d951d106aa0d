"""The consortium secret is made once, at ``coco-gateway init``, in the genesis node's enclave,
and kept sealed beside each node's identity (``consortium-secret.sealed`` next to
``node-key.sealed``), never in the ledger that can be wiped; no node makes one when it starts.

* Enclaves in this process (``InProcessEnclave``, the enclave process's codec): init makes
  the secret in the genesis node's data directory only; a genesis node whose ledger is
  emptied keeps its secret; one whose secret is gone does not invent one but joins.
* Real ``coco-gateway init`` and ``coco-gateway node --config`` processes (tests/
  cluster_harness.py): the genesis validator of a running four-validator consortium restarted
  with an emptied ledger keeps the same secret and catches up; restarted with neither ledger
  nor secret, it joins through a peer and gets the same secret back; and a genesis node
  without its secret, with nobody who holds it, waits and says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cluster_harness import Cluster, consortium_secret, wait_until
from eth_account import Account
from test_enclave_consortium import make_terms

from gateway.enclave import messages as m
from gateway.enclave.keys import NODE_KEY_FILE, SEALING_KEY_FILE, SECRET_FILE
from gateway.enclave.runtime import InProcessEnclave
from gateway.ledger import LEDGER_FILE, read_meta

T = TypeVar("T")
CHAIN_ID = 4747
FUNDED = Account.from_key("0x" + "31" * 32).address


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def wipe_ledger(data_dir: Path) -> None:
    """Empty the node's ledger: the ledger file and its -wal/-shm, nothing else."""
    for suffix in ("", "-wal", "-shm"):
        (data_dir / (LEDGER_FILE + suffix)).unlink(missing_ok=True)


def no_keys_in_ledger(data_dir: Path) -> bool:
    ledger = data_dir / LEDGER_FILE
    return all(
        read_meta(ledger, n) is None for n in ("node_key.sealed", "consortium_secret.sealed")
    )


# ------------------------------------------------------------------ enclaves in this process


async def identity(data_dir: Path, terms: dict[str, Any] | None = None) -> dict[str, Any]:
    enclave = InProcessEnclave()
    try:
        return await enclave.start_identity(m.MakeIdentity(str(data_dir), consortium=terms))
    finally:
        await enclave.close()


def terms_for(addresses: list[bytes], measurement: bytes) -> dict[str, Any]:
    """test_enclave_consortium's terms for these nodes, on this file's chain and account."""
    idents = [{"address": a, "measurement": measurement} for a in addresses]
    return make_terms(idents, chainId=CHAIN_ID, alloc={FUNDED: str(10**24)})


async def opened(data_dir: Path, terms: dict[str, Any]) -> InProcessEnclave:
    enclave = InProcessEnclave()
    await enclave.start(
        m.Open(data_dir=str(data_dir), chain_id=CHAIN_ID, consortium=terms, role="validator")
    )
    return enclave


async def state_of(data_dir: Path, terms: dict[str, Any]) -> tuple[str, bytes]:
    enclave = await opened(data_dir, terms)
    try:
        status = await enclave.request(m.GetStatus())
        return str(status["state"]), bytes(status["genesisHash"])
    finally:
        await enclave.close()


def test_init_makes_the_secret_in_the_genesis_node_only_and_keeps_it(tmp_path: Path) -> None:
    genesis, other = tmp_path / "n0", tmp_path / "n1"
    made = [run(identity(d)) for d in (genesis, other)]
    assert [x["consortiumSecret"] for x in made] == [False, False]  # no terms: no secret
    terms = terms_for([x["address"] for x in made], made[0]["measurement"])
    assert run(identity(genesis, terms))["consortiumSecret"] is True
    assert run(identity(other, terms))["consortiumSecret"] is False
    assert (genesis / SECRET_FILE).exists() and not (other / SECRET_FILE).exists()
    assert (genesis / NODE_KEY_FILE).exists() and (other / NODE_KEY_FILE).exists()
    assert not (genesis / LEDGER_FILE).exists()  # nothing of it in a ledger
    secret = consortium_secret(genesis)
    # init run again (an interrupted one): the identity and the secret are kept
    again = run(identity(genesis, terms))
    assert again["address"] == made[0]["address"] and again["consortiumSecret"] is True
    assert consortium_secret(genesis) == secret
    # the secret is sealed (the file does not hold it in the clear) and bound to its chain
    assert secret.hex() not in (genesis / SECRET_FILE).read_text()
    assert secret not in (genesis / SECRET_FILE).read_bytes()


def test_an_emptied_ledger_keeps_the_secret_and_a_lost_one_is_not_remade(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis, other = tmp_path / "n0", tmp_path / "n1"
    made = [run(identity(d)) for d in (genesis, other)]
    terms = terms_for([x["address"] for x in made], made[0]["measurement"])
    run(identity(genesis, terms))
    secret = consortium_secret(genesis)

    async def go() -> None:
        first = await opened(genesis, terms)
        joiner = await opened(other, terms)
        try:
            assert (await first.request(m.GetStatus()))["state"] == "ready"
            request = await joiner.request(m.JoinRequest())
            admitted = await first.request(m.JoinAdmit(request))
            await joiner.request(m.JoinComplete(admitted["wrapped"]))
        finally:
            await first.close()
            await joiner.close()

    run(go())
    assert consortium_secret(other) == secret
    assert no_keys_in_ledger(genesis) and no_keys_in_ledger(other)
    state, genesis_hash = run(state_of(genesis, terms))
    assert state == "ready"

    # the ledger emptied, the identity kept: the same secret, the same chain
    wipe_ledger(genesis)
    assert run(state_of(genesis, terms)) == ("ready", genesis_hash)
    assert consortium_secret(genesis) == secret

    # the secret lost too: the genesis node does not make one; it waits to join
    wipe_ledger(genesis)
    (genesis / SECRET_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="gateway.enclave"):
        assert run(state_of(genesis, terms)) == ("awaiting-secret", genesis_hash)
    assert not (genesis / SECRET_FILE).exists()
    assert "does not make a new one" in caplog.text

    async def rejoin() -> None:
        back = await opened(genesis, terms)
        member = await opened(other, terms)
        try:
            request = await back.request(m.JoinRequest())
            admitted = await member.request(m.JoinAdmit(request))
            joined = await back.request(m.JoinComplete(admitted["wrapped"]))
            assert joined["state"] == "ready"
        finally:
            await back.close()
            await member.close()

    run(rejoin())
    assert consortium_secret(genesis) == secret


def test_a_data_directory_from_before_moves_its_keys_out_of_the_ledger(tmp_path: Path) -> None:
    """Node keys and secrets that older releases kept in the ledger's meta are moved beside
    it, and then survive the ledger's loss."""
    from gateway.enclave.keys import LocalSealer
    from gateway.ledger import Ledger

    data = tmp_path / "old"
    data.mkdir()
    sealer = LocalSealer.from_data_dir(data)
    node_key, secret = os.urandom(32), os.urandom(32)
    ledger = Ledger(data / LEDGER_FILE)
    ledger.put_meta("node_key.sealed", sealer.seal("node_key", node_key))
    ledger.put_meta("consortium_secret.sealed", sealer.seal("consortium_secret", secret))
    ledger.close()
    address = bytes.fromhex(Account.from_key(node_key).address[2:])
    made = run(identity(data))
    assert made["address"] == address
    terms = terms_for([address], made["measurement"])
    assert run(state_of(data, terms))[0] == "ready"
    assert no_keys_in_ledger(data)
    assert consortium_secret(data) == secret
    wipe_ledger(data)
    assert run(identity(data))["address"] == address
    assert run(state_of(data, terms))[0] == "ready"
    assert consortium_secret(data) == secret


# ------------------------------------------------------------------ real processes


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "c", validators=4)
    yield made
    report = getattr(request.node, "rep_call", None)
    failed = report is None or report.failed
    if failed:
        print(f"\n===== cluster {made.root}\n{made.report()}")
    made.close()
    if not failed and not os.environ.get("COCO_KEEP_CLUSTERS"):
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_genesis_node_keeps_its_secret_across_an_emptied_ledger_and_rejoins_without_it(
    cluster: Cluster,
) -> None:
    node1 = cluster["node1"]
    assert cluster.terms()["genesisNode"] == node1.address
    # init made the secret in node1's data directory only, and no ledger holds a key
    assert (node1.data_dir / SECRET_FILE).exists()
    secret = consortium_secret(node1.data_dir)
    for name in ("node2", "node3", "node4"):
        assert not (cluster[name].data_dir / SECRET_FILE).exists()
    cluster.start()
    cluster.wait_height(3, timeout=120)
    for node in cluster.validators():
        assert consortium_secret(node.data_dir) == secret  # the others got it by joining
        assert no_keys_in_ledger(node.data_dir)
        assert "made the consortium secret" not in node.log()

    # 1. node1's ledger emptied, its identity and secret kept: it catches up, same secret
    assert node1.stop() == 0
    wipe_ledger(node1.data_dir)
    others = ["node2", "node3", "node4"]
    target = cluster.wait_progress(3, others, timeout=120)
    mark = node1.log_mark()
    cluster.start(["node1"])
    cluster.wait_height(target, ["node1"], timeout=120)
    log = node1.log_since(mark)
    assert "joined the consortium" not in log and "does not make a new one" not in log, log
    assert consortium_secret(node1.data_dir) == secret
    cluster.check_agreement()

    # 2. its ledger and its secret gone, its identity kept: it makes none, it joins
    assert node1.stop() == 0
    wipe_ledger(node1.data_dir)
    (node1.data_dir / SECRET_FILE).unlink()
    target = cluster.wait_progress(2, others, timeout=120)
    mark = node1.log_mark()
    cluster.start(["node1"])
    cluster.wait_height(target, ["node1"], timeout=120)
    log = node1.log_since(mark)
    assert "does not make a new one" in log, log
    assert "joined the consortium through" in log, log
    assert consortium_secret(node1.data_dir) == secret
    assert node1.status()["state"] == "ready"
    cluster.wait_progress(2, timeout=120)
    cluster.check_agreement()


def test_a_genesis_node_without_its_secret_and_nobody_to_admit_it_waits_and_says_so(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "c", validators=2)
    try:
        node1, node2 = cluster["node1"], cluster["node2"]
        (node1.data_dir / SECRET_FILE).unlink()  # the init's secret lost before any start
        cluster.start(wait=False)
        wait_until(
            lambda: (
                "no node that holds the consortium secret is reachable" in node1.log()
                and "no node that holds the consortium secret is reachable" in node2.log()
            ),
            120,
            "both nodes to say that nobody can admit them",
        )
        assert "does not make a new one" in node1.log()
        for node in (node1, node2):
            assert node.running and not node.answers()  # no RPC before the secret
            assert not (node.data_dir / SECRET_FILE).exists()
            assert (node.data_dir / NODE_KEY_FILE).exists()
            assert (node.data_dir / SEALING_KEY_FILE).exists()
            assert node.stop() == 0
    except BaseException:
        print(cluster.report())
        raise
    finally:
        cluster.close()


def test_a_secret_file_of_another_chain_is_refused_with_its_reason(tmp_path: Path) -> None:
    """A data directory whose sealed secret belongs to another chain (reused under other
    terms) does not open: ``bad-key-file``, naming both chains; nothing is replaced."""
    from gateway.errors import RpcError

    data = tmp_path / "n0"
    made = run(identity(data))
    terms = terms_for([made["address"]], made["measurement"])
    assert run(identity(data, terms))["consortiumSecret"] is True
    before = (data / SECRET_FILE).read_bytes()
    other = {**terms, "chainId": CHAIN_ID + 1}

    async def open_other() -> None:
        enclave = InProcessEnclave()
        await enclave.start(
            m.Open(data_dir=str(data), chain_id=CHAIN_ID + 1, consortium=other, role="validator")
        )
        await enclave.close()

    with pytest.raises(RpcError) as info:
        run(open_other())
    assert info.value.reason_code == "bad-key-file"
    assert str(CHAIN_ID) in info.value.message and str(CHAIN_ID + 1) in info.value.message
    assert (data / SECRET_FILE).read_bytes() == before
