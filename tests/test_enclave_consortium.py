"""A consortium of real enclaves: identities made in the enclave, the attested join, QBFT run
inside the enclaves (the test routes their outbound messages with a fake clock), refusals.

Every enclave here is a real ``gateway.enclave.core.Enclave`` on its own data directory,
reached through ``InProcessEnclave`` (the same codec as the enclave process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from gateway.enclave import messages as m
from gateway.enclave.runtime import InProcessEnclave
from gateway.errors import RpcError

T = TypeVar("T")
CHAIN_ID = 4242
FUNDED_KEY = "0x" + "11" * 32
FUNDED = Account.from_key(FUNDED_KEY).address
RECIPIENT = "0x" + "77" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def make_identity(data_dir: Path) -> dict[str, Any]:
    enclave = InProcessEnclave()
    try:
        return await enclave.start_identity(m.MakeIdentity(str(data_dir)))
    finally:
        await enclave.close()


def make_terms(idents: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    addrs = ["0x" + i["address"].hex() for i in idents]
    terms: dict[str, Any] = {
        "version": 1,
        "chainId": CHAIN_ID,
        "fork": "osaka",
        "gasLimit": 30_000_000,
        "genesisTimestamp": 1_764_000_000,
        "alloc": {FUNDED: str(10**24)},
        "privacy": "open",
        "validation": "attested-diff",
        "blockPeriod": 1,
        "roundTimeout": 2.0,
        "maxRoundTimeout": 30.0,
        "epochPeriod": 86400,
        "validators": addrs,
        "genesisNode": addrs[0],
        "nodes": [
            {"name": f"node{n}", "address": a, "role": "validator"} for n, a in enumerate(addrs)
        ],
        "measurements": ["0x" + idents[0]["measurement"].hex()],
        "platforms": ["virtual"],
        "allowVirtual": True,
    }
    terms.update(over)
    return terms


def opening(data_dir: Path, terms: dict[str, Any]) -> m.Open:
    return m.Open(
        data_dir=str(data_dir), chain_id=terms["chainId"], consortium=terms, role="validator"
    )


async def init_node(data_dir: Path, terms: dict[str, Any]) -> dict[str, Any]:
    """What ``coco-gateway init`` does once the terms are known: MakeIdentity with the terms,
    so that the genesis node's enclave makes the consortium secret (others make nothing)."""
    enclave = InProcessEnclave()
    try:
        return await enclave.start_identity(m.MakeIdentity(str(data_dir), consortium=terms))
    finally:
        await enclave.close()


async def start(data_dir: Path, terms: dict[str, Any]) -> InProcessEnclave:
    await init_node(data_dir, terms)
    enclave = InProcessEnclave()
    await enclave.start(opening(data_dir, terms))
    return enclave


async def join(joiner: Any, admitter: Any) -> dict[str, Any]:
    request = await joiner.request(m.JoinRequest())
    admitted = await admitter.request(m.JoinAdmit(request))
    return await joiner.request(m.JoinComplete(admitted["wrapped"]))  # type: ignore[no-any-return]


async def refusal(call: Awaitable[Any]) -> RpcError:
    with pytest.raises(RpcError) as info:
        await call
    return info.value


# ------------------------------------------------------------------ identities and the join


def test_identity_is_made_in_the_enclave_and_kept(tmp_path: Path) -> None:
    first = run(make_identity(tmp_path / "n"))
    again = run(make_identity(tmp_path / "n"))
    other = run(make_identity(tmp_path / "o"))
    assert len(first["address"]) == 20 and len(first["measurement"]) == 32
    assert first["platform"] == "virtual"
    assert again == first
    assert other["address"] != first["address"]
    assert other["measurement"] == first["measurement"]


def test_process_enclave_makes_an_identity(tmp_path: Path) -> None:
    from gateway.enclave.runtime import ProcessEnclave

    async def go() -> dict[str, Any]:
        enclave = ProcessEnclave()
        try:
            return await enclave.start_identity(m.MakeIdentity(str(tmp_path / "p")))
        finally:
            await enclave.close()

    made = run(go())
    assert made == run(make_identity(tmp_path / "p"))


def test_join_hands_the_secret_only_to_an_attested_listed_enclave(tmp_path: Path) -> None:
    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(3)]
        terms = make_terms(idents)
        genesis = await start(tmp_path / "n0", terms)
        joiner = await start(tmp_path / "n1", terms)
        try:
            status = await genesis.request(m.GetStatus())
            assert status["state"] == "ready"
            waiting = await joiner.request(m.GetStatus())
            assert waiting["state"] == "awaiting-secret"
            assert waiting["validator"] == idents[1]["address"]
            # the genesis it computed without the secret is the genesis node's
            assert waiting["genesisHash"] == status["genesisHash"]
            err = await refusal(joiner.request(m.GetBlock("latest")))
            assert err.reason_code == "awaiting-secret"
            err = await refusal(joiner.request(m.ConsensusStep(now=time.time())))
            assert err.reason_code == "awaiting-secret"

            # the genesis block commits to the terms
            block = await genesis.request(m.GetBlock(0))
            canonical = json_canonical(terms)
            assert block["extraData"] == "0x" + keccak(canonical).hex()

            # a wrapped secret made for another join key does not open here
            third = await start(tmp_path / "n2", terms)
            other_request = await third.request(m.JoinRequest())
            await joiner.request(m.JoinRequest())
            for_third = await genesis.request(m.JoinAdmit(other_request))
            err = await refusal(joiner.request(m.JoinComplete(for_third["wrapped"])))
            assert err.reason_code == "bad-wrapped-secret"
            assert (await joiner.request(m.GetStatus()))["state"] == "awaiting-secret"

            joined = await join(joiner, genesis)
            assert joined["state"] == "ready"
            assert joined["genesisHash"] == status["genesisHash"]
            # the same consortium secret: the same transaction keys in both attestations
            a = await genesis.request(m.GetAttestation())
            b = await joiner.request(m.GetAttestation())
            assert a["report"]["txKeys"] == b["report"]["txKeys"]
            err = await refusal(joiner.request(m.JoinRequest()))
            assert err.reason_code == "already-joined"
            await third.close()
        finally:
            await genesis.close()
            await joiner.close()

        # restarted, the joined node opens with its sealed secret; the genesis node's too
        again = await start(tmp_path / "n1", terms)
        try:
            assert (await again.request(m.GetStatus()))["state"] == "ready"
        finally:
            await again.close()

    run(go())


def json_canonical(terms: dict[str, Any]) -> bytes:
    import json

    return json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()


def test_a_node_joins_through_the_enclave_process(tmp_path: Path) -> None:
    from gateway.enclave.runtime import ProcessEnclave

    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        terms = make_terms(idents)
        genesis = await start(tmp_path / "n0", terms)
        joiner = ProcessEnclave()
        await joiner.start(opening(tmp_path / "n1", terms))
        try:
            assert (await joiner.request(m.GetStatus()))["state"] == "awaiting-secret"
            joined = await join(joiner, genesis)
            assert joined["state"] == "ready"
            assert joined["validator"] == idents[1]["address"]
            answer = await joiner.request(m.ConsensusStep(now=time.time(), tick=True))
            assert answer["status"]["height"] == 1 and answer["timer"] is not None
        finally:
            await joiner.close()
            await genesis.close()

    run(go())


def test_join_refusals_name_their_reason(tmp_path: Path) -> None:
    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        stranger = await make_identity(tmp_path / "stranger")
        terms = make_terms(idents)

        async def admitter(name: str, **over: Any) -> InProcessEnclave:
            ident = await make_identity(tmp_path / name)
            their = make_terms([ident, *idents[1:]], **over)
            return await start(tmp_path / name, their)

        genesis = await start(tmp_path / "n0", terms)
        joiner = await start(tmp_path / "n1", terms)
        outsider = await start(tmp_path / "stranger", terms)
        other_chain = await start(tmp_path / "other", make_terms(idents, chainId=CHAIN_ID + 1))
        strict_code = await admitter("strict-code", measurements=["0x" + "ab" * 32])
        no_virtual = await admitter("no-virtual", allowVirtual=False)
        opened = [genesis, joiner, outsider, other_chain, strict_code, no_virtual]
        try:
            request = await joiner.request(m.JoinRequest())

            err = await refusal(strict_code.request(m.JoinAdmit(request)))
            assert err.reason_code == "unknown-measurement"
            assert "0x" + idents[1]["measurement"].hex() in err.message

            err = await refusal(no_virtual.request(m.JoinAdmit(request)))
            assert err.reason_code == "virtual-not-allowed"
            assert "virtual" in err.message

            unlisted = await outsider.request(m.JoinRequest())
            err = await refusal(genesis.request(m.JoinAdmit(unlisted)))
            assert err.reason_code == "unlisted-node"
            assert "0x" + stranger["address"].hex() in err.message

            wrong = await other_chain.request(m.JoinRequest())
            err = await refusal(genesis.request(m.JoinAdmit(wrong)))
            assert err.reason_code == "wrong-chain"
            assert str(CHAIN_ID + 1) in err.message

            tampered = dict(request, report=dict(request["report"], measurement="0x" + "00" * 32))
            err = await refusal(genesis.request(m.JoinAdmit(tampered)))
            assert err.reason_code == "bad-attestation"
            swapped = dict(request, joinKey=bytes(32))
            err = await refusal(genesis.request(m.JoinAdmit(swapped)))
            assert err.reason_code == "bad-attestation"
            # a report signed by another key than the one it names
            forged = dict(request, signature=unlisted["signature"])
            err = await refusal(genesis.request(m.JoinAdmit(forged)))
            assert err.reason_code == "bad-attestation"

            # none of that changed anything: the listed, attested node still joins
            assert (await join(joiner, genesis))["state"] == "ready"
        finally:
            for enclave in opened:
                await enclave.close()

    run(go())


def test_link_signature_recovers_to_the_node_address(tmp_path: Path) -> None:
    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        terms = make_terms(idents)
        # a node awaiting the secret signs links too: it joins over one
        waiting = await start(tmp_path / "n1", terms)
        try:
            transcript = b"\x01" * 32 + b"\x02" * 32 + b"\x03" * 32 + b"\x04" * 32
            transcript += idents[1]["address"]
            signature = await waiting.request(m.SignLink(transcript + b"client"))
            assert len(signature) == 65 and signature[64] in (0, 1)
            assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
            digest = keccak(b"coco-gateway/p2p/link/v2" + transcript + b"client")
            public = keys.Signature(signature).recover_public_key_from_msg_hash(digest)
            assert public.to_canonical_address() == idents[1]["address"]
            err = await refusal(waiting.request(m.SignLink(b"x" * 5000)))
            assert err.reason_code == "bad-transcript"
        finally:
            await waiting.close()

    run(go())


# ------------------------------------------------------------------ QBFT across four enclaves


class Cluster:
    """Four validators' enclaves; the test is their network: it carries each enclave's
    outbound QBFT messages (with sidecars) to the others and fires their timers on a fake
    clock. ``cut`` validators neither send nor receive."""

    def __init__(self, tmp_path: Path, enclaves: list[InProcessEnclave], terms: dict[str, Any]):
        self.tmp_path = tmp_path
        self.enclaves = enclaves
        self.terms = terms
        self.now = float(int(time.time()))
        self.inbox: list[list[list[Any]]] = [[] for _ in enclaves]
        self.timers: list[float | None] = [None] * len(enclaves)
        self.decided: list[list[dict[str, Any]]] = [[] for _ in enclaves]
        self.status: list[dict[str, Any]] = [{} for _ in enclaves]
        self.discarded: list[dict[str, Any]] = []
        self.cut: set[int] = set()
        self.ahead = [0.0] * len(enclaves)  # how far each validator's clock runs ahead
        # what the network does to a message's sidecar on its way to a validator
        self.tamper: Callable[[bytes, bytes | None, int], bytes | None] | None = None

    async def step(self, i: int, tick: bool = False) -> None:
        inbound, self.inbox[i] = self.inbox[i], []
        answer = await self.enclaves[i].request(
            m.ConsensusStep(now=self.now + self.ahead[i], inbound=inbound, tick=tick)
        )
        timer = answer["timer"]
        self.timers[i] = None if timer is None else timer - self.ahead[i]
        self.status[i] = answer["status"]
        self.decided[i].extend(answer["decided"])
        self.discarded.extend(answer["discarded"])
        if i in self.cut:
            return
        for data, sidecar in answer["outbound"]:
            for j in range(len(self.enclaves)):
                if j != i and j not in self.cut:
                    if self.tamper is not None:
                        self.inbox[j].append([data, self.tamper(data, sidecar, j)])
                    else:
                        self.inbox[j].append([data, sidecar])

    async def run_until(self, done: Callable[[], bool], *, seconds: float = 120.0) -> None:
        """Deliver messages and fire timers until ``done()`` or ``seconds`` of fake time."""
        limit = self.now + seconds
        for i in range(len(self.enclaves)):
            await self.step(i, tick=True)
        while not done():
            busy = [i for i, box in enumerate(self.inbox) if box]
            if busy:
                for i in busy:
                    await self.step(i)
                continue
            due = [t for t in self.timers if t is not None]
            assert due, "no timer and no message: the consortium stalled"
            self.now = max(self.now, min(due))
            assert self.now <= limit, f"not done after {seconds} s of fake time: {self.status}"
            for i, t in enumerate(self.timers):
                if t is not None and t <= self.now:
                    await self.step(i, tick=True)

    def heights(self) -> list[int]:
        return [s.get("finalized", 0) for s in self.status]

    async def agreed_heads(self) -> list[dict[str, Any]]:
        """Every validator's status, once it is checked that they all have the same head."""
        heads = [await e.request(m.GetStatus()) for e in self.enclaves]
        assert len({h["head"]["hash"] for h in heads}) == 1
        return heads

    async def close(self) -> None:
        for enclave in self.enclaves:
            await enclave.close()


def transfer(nonce: int, value: int = 10**15) -> bytes:
    tx = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": value,
        "gas": 21_000,
        "gasPrice": 10**10,
    }
    return bytes(Account.sign_transaction(tx, FUNDED_KEY).raw_transaction)


async def consortium_of_four(tmp_path: Path, **over: Any) -> Cluster:
    idents = [await make_identity(tmp_path / f"v{i}") for i in range(4)]
    terms = make_terms(idents, **over)
    enclaves = [await start(tmp_path / f"v{i}", terms) for i in range(4)]
    for joiner in enclaves[1:]:
        assert (await join(joiner, enclaves[0]))["state"] == "ready"
    return Cluster(tmp_path, enclaves, terms)


@pytest.mark.parametrize("rule", ["attested-diff", "re-execute"])
def test_four_enclaves_decide_blocks_with_transactions(tmp_path: Path, rule: str) -> None:
    async def go() -> None:
        cluster = await consortium_of_four(tmp_path, validation=rule)
        try:
            hashes = []
            for nonce in range(3):
                raw = transfer(nonce)
                # any node admits a transaction; here every node has it in its pool
                for enclave in cluster.enclaves:
                    hashes.append(await enclave.request(m.SubmitRawTx(raw)))
            await cluster.run_until(lambda: min(cluster.heights()) >= 3)
            for nonce in range(3, 5):
                raw = transfer(nonce)
                for enclave in cluster.enclaves:
                    await enclave.request(m.SubmitRawTx(raw))
            target = min(cluster.heights()) + 3
            await cluster.run_until(lambda: min(cluster.heights()) >= target)

            heads = await cluster.agreed_heads()
            assert heads[0]["head"]["number"] >= target
            tx_hashes = {keccak(transfer(n)) for n in range(5)}
            for enclave in cluster.enclaves:
                balance = await enclave.request(
                    m.GetAccount("balance", bytes.fromhex(RECIPIENT[2:]), "latest")
                )
                assert int(balance) == 5 * 10**15
                for tx_hash in tx_hashes:
                    receipt = await enclave.request(m.GetReceipt(tx_hash))
                    assert receipt is not None and receipt["status"] == "0x1"
            # every decided block carries a quorum of commit seals and its sealed body
            for block in cluster.decided[0]:
                assert len(block["seals"]) >= 3
                assert block["body"] and keccak(block["header"]) == block["hash"]
                assert block["summary"]["number"] == block["number"]
                assert block["summary"]["hash"] == block["hash"]
            included = [tx for b in cluster.decided[0] for tx in b["summary"]["transactions"]]
            assert set(included) == tx_hashes
            consensus = heads[0]["consensus"]
            assert consensus["finalized"] == heads[0]["head"]["number"]
            assert consensus["height"] == consensus["finalized"] + 1
            assert sorted(consensus["validators"]) == consensus["validators"]
            assert len(consensus["validators"]) == 4
            # each validator decided the same blocks
            chains = [[b["hash"] for b in d] for d in cluster.decided]
            shortest = min(len(c) for c in chains)
            assert all(c[:shortest] == chains[0][:shortest] for c in chains)
            assert cluster.discarded == []
        finally:
            await cluster.close()

    run(go())


def test_the_next_leader_builds_ahead_within_the_block_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a decision the next height's round-0 leader builds its block at once, before
    its block timer (parent timestamp + block period) expires, and proposes it at the
    expiry: each block's timestamp is its parent's + 1 and never ahead of the clock at which
    it was decided; the chain's transactions all land, on every validator alike."""
    import logging

    from gateway.enclave.consortium import header_fields

    async def go() -> None:
        cluster = await consortium_of_four(tmp_path)
        try:
            for nonce in range(6):
                raw = transfer(nonce)
                for enclave in cluster.enclaves:
                    await enclave.request(m.SubmitRawTx(raw))
            decided_at: dict[int, float] = {}
            seen = 0

            def done() -> bool:
                nonlocal seen
                for block in cluster.decided[0][seen:]:
                    decided_at[block["number"]] = cluster.now
                seen = len(cluster.decided[0])
                return min(cluster.heights()) >= 4

            with caplog.at_level(logging.INFO, logger="gateway.enclave.consortium"):
                await cluster.run_until(done)
            ahead = [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()]
            assert ahead, "no block was built ahead of its block timer"
            previous = None
            for block in cluster.decided[0]:
                _, number, timestamp = header_fields(block["header"])
                assert timestamp <= decided_at[number]
                if previous is not None:
                    assert timestamp == previous + 1
                previous = timestamp
            await cluster.agreed_heads()
            for nonce in range(6):
                receipt = await cluster.enclaves[3].request(m.GetReceipt(keccak(transfer(nonce))))
                assert receipt is not None and receipt["status"] == "0x1"
            assert cluster.discarded == []
        finally:
            await cluster.close()

    run(go())


def test_restarted_validator_resumes_its_round(tmp_path: Path) -> None:
    async def go() -> None:
        cluster = await consortium_of_four(tmp_path)
        try:
            await cluster.run_until(lambda: min(cluster.heights()) >= 2)
            height = cluster.status[0]["height"]
            # two validators out: no quorum, so the others change rounds without deciding
            # (past round 1 a validator waits for f+1 others: docs/qbft.md)
            cluster.cut = {2, 3}
            await cluster.run_until(lambda: cluster.status[1]["round"] >= 1)
            assert cluster.status[1]["height"] == height
            round_before = cluster.status[1]["round"]
            assert round_before >= 1

            await cluster.enclaves[1].close()
            cluster.enclaves[1] = await start(tmp_path / "v1", cluster.terms)
            await cluster.step(1)  # no tick, no message: just what it restored
            assert cluster.status[1]["height"] == height
            assert cluster.status[1]["round"] == round_before

            cluster.cut = set()
            await cluster.run_until(lambda: min(cluster.heights()) >= height + 1)
            await cluster.agreed_heads()
        finally:
            await cluster.close()

    run(go())


def test_a_proposal_from_a_clock_far_ahead_is_refused(tmp_path: Path) -> None:
    async def go() -> None:
        cluster = await consortium_of_four(tmp_path)
        try:
            nodes = [(await e.request(m.GetStatus()))["validator"] for e in cluster.enclaves]
            # the first block's round-0 proposer is the lowest address (round robin)
            leader = nodes.index(min(nodes))
            cluster.ahead[leader] = 40.0  # its proposals are stamped 40 s in the others' future
            await cluster.run_until(lambda: min(cluster.heights()) >= 1)
            refused = [d for d in cluster.discarded if d["reason"] == "timestamp-in-future"]
            assert len(refused) == 3  # each of the others refused it
            assert all(d["sender"] == nodes[leader] for d in refused)
            block = await cluster.enclaves[0].request(m.GetBlock(1))
            assert block["miner"].lower() != "0x" + nodes[leader].hex()
            assert int(block["timestamp"], 16) <= cluster.now + 15
            await cluster.agreed_heads()
        finally:
            await cluster.close()

    run(go())


def test_a_tampered_sidecar_and_garbage_are_refused(tmp_path: Path) -> None:
    from gateway.consensus.qbft import Proposal, decode_message

    async def go() -> None:
        cluster = await consortium_of_four(tmp_path)
        victim = 3

        def flip(data: bytes, sidecar: bytes | None, j: int) -> bytes | None:
            if j == victim and sidecar and isinstance(decode_message(data), Proposal):
                return sidecar[:-1] + bytes([sidecar[-1] ^ 1])
            return sidecar

        cluster.tamper = flip
        try:
            await cluster.run_until(lambda: min(cluster.heights()) >= 2)
            refused = [d for d in cluster.discarded if d["reason"] == "bad-body"]
            assert refused  # the victim refused every proposal's body, and voted for none
            # it still has the decided blocks (from the others' announcements, bodies intact)
            await cluster.agreed_heads()

            answer = await cluster.enclaves[0].request(
                m.ConsensusStep(now=cluster.now, inbound=[[b"\xc0garbage", None]])
            )
            assert answer["discarded"] == [{"reason": "not-rlp", "sender": None, "code": 0}]
            err = await refusal(
                cluster.enclaves[0].request(m.ConsensusStep(now=cluster.now, inbound=[[1, 2]]))
            )
            assert err.reason_code == "bad-inbound"
        finally:
            await cluster.close()

    run(go())


# ------------------------------------------------------------------ pure parts


def test_round_snapshot_round_trips() -> None:
    from gateway.consensus.qbft import (
        Block,
        PreparedCertificate,
        RoundSnapshot,
        SignedPayload,
        UnsignedPrepare,
    )
    from gateway.enclave.consortium import decode_snapshot, encode_snapshot

    key = keys.PrivateKey(b"\x01" * 32)
    block = Block(5, key.public_key.to_canonical_address(), b"header rlp")
    prepares = tuple(
        SignedPayload.sign(UnsignedPrepare(5, 2, block.digest), keys.PrivateKey(bytes([i]) * 32))
        for i in (1, 2, 3)
    )
    for snap in (
        RoundSnapshot(5, 0, None, None),
        RoundSnapshot(5, 3, block.digest, PreparedCertificate(block, 2, prepares)),
    ):
        assert decode_snapshot(encode_snapshot(snap)) == snap
    with pytest.raises(ValueError):
        decode_snapshot(b"\xc0")


def test_bad_terms_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    from gateway.enclave.consortium import parse_terms

    ident = {"address": b"\x01" * 20, "measurement": b"\x02" * 32}
    good = make_terms([ident])
    assert parse_terms(good).validators == (b"\x01" * 20,)
    for change, words in (
        ({"version": 2}, "version"),
        ({"validators": []}, "validators"),
        ({"validators": ["0x12"]}, "address"),
        ({"validation": "trust-me"}, "validation"),
        ({"fork": "frontier"}, "fork"),
        ({"roundTimeout": 60.0}, "roundTimeout"),
        ({"chainId": "1"}, "chainId"),
    ):
        with pytest.raises(RpcError) as info:
            parse_terms({**good, **change})
        assert info.value.reason_code == "bad-terms"
        assert words in info.value.message

    async def go() -> None:
        enclave = InProcessEnclave()
        with pytest.raises(RpcError) as info:
            await enclave.start(opening(tmp_path / "bad", {**good, "validators": []}))
        assert info.value.reason_code == "bad-terms"
        await enclave.close()

    run(go())


def test_join_report_is_version_2_and_carries_its_key() -> None:
    from gateway.enclave.consortium import join_report
    from gateway.protocol import attestation

    report = join_report(
        chain_id=1,
        measurement=b"\x01" * 32,
        code="c",
        node_address=b"\x02" * 20,
        epoch_period=86400,
        grace=1,
        join_key=b"\x03" * 32,
        now=1,
    )
    data = report.to_json()
    assert data["version"] == 2 and data["joinKey"] == "0x" + "03" * 32
    assert attestation.Report.from_json(data) == report
    with pytest.raises(attestation.AttestationError):
        attestation.Report.from_json({k: v for k, v in data.items() if k != "joinKey"})
    # a version-1 report never carries a join key
    with pytest.raises(attestation.AttestationError):
        attestation.Report.from_json(dict(data, version=1))
    plain = attestation.Report.from_json(
        {k: v for k, v in dict(data, version=1).items() if k != "joinKey"}
    )
    assert plain.join_key is None and "joinKey" not in plain.to_json()
    assert plain.to_json()["version"] == 1


def test_a_qbft_message_signed_for_another_chain_is_refused_as_wrong_chain(
    tmp_path: Path,
) -> None:
    """QBFT v2 (docs/qbft.md): a validator's ROUND-CHANGE signed for another chain (same key,
    same genesis hash, another chain id; or another genesis) is discarded by the enclave
    with the reason ``wrong-chain``; the same message for this chain is taken."""
    from gateway.consensus.qbft import (
        RoundChange,
        SignedPayload,
        UnsignedRoundChange,
        encode_message,
        qbft_domain,
    )

    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        terms = make_terms(idents)
        genesis = await start(tmp_path / "n0", terms)
        other = await start(tmp_path / "n1", terms)
        try:
            status = await genesis.request(m.GetStatus())
            genesis_hash = bytes(status["genesisHash"])
            key = keys.PrivateKey(other._enclave._node_key)  # the validator's key, for the test
            sender = idents[1]["address"]

            def round_change(domain: bytes) -> bytes:
                payload = UnsignedRoundChange(1, 1, None, None)
                return encode_message(RoundChange(SignedPayload.sign(payload, key, domain)))

            now = time.time()
            for domain in (
                qbft_domain(CHAIN_ID + 1, genesis_hash),
                qbft_domain(CHAIN_ID, keccak(b"another genesis")),
            ):
                answer = await genesis.request(
                    m.ConsensusStep(now=now, inbound=[[round_change(domain), None]])
                )
                assert answer["discarded"] == [
                    {"reason": "wrong-chain", "sender": sender, "code": 0x15}
                ]
            answer = await genesis.request(
                m.ConsensusStep(
                    now=now, inbound=[[round_change(qbft_domain(CHAIN_ID, genesis_hash)), None]]
                )
            )
            assert answer["discarded"] == []
        finally:
            await other.close()
            await genesis.close()

    run(go())


def test_genesis_of_the_terms_is_the_members_genesis(tmp_path: Path) -> None:
    """``GenesisOf`` (what an observer asks a short-lived enclave process): the genesis hash
    its terms make, equal to the one a member's enclave opened; other terms, another one."""
    from gateway.enclave.runtime import ProcessEnclave

    async def genesis_of(terms: dict[str, Any]) -> dict[str, Any]:
        enclave = ProcessEnclave()
        try:
            return await enclave.start_identity(m.GenesisOf(terms))
        finally:
            await enclave.close()

    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        terms = make_terms(idents)
        member = await start(tmp_path / "n0", terms)
        try:
            status = await member.request(m.GetStatus())
        finally:
            await member.close()
        answer = await genesis_of(terms)
        assert answer == {"genesisHash": status["genesisHash"], "chainId": CHAIN_ID}
        other = await genesis_of(make_terms(idents, genesisTimestamp=1_764_000_001))
        assert other["genesisHash"] != status["genesisHash"]
        err = await refusal(genesis_of({**terms, "validators": []}))
        assert err.reason_code == "bad-terms"

    run(go())
