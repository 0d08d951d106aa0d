"""Recovery shares: k-of-n split and combine, commitments that name a wrong share, each share
sealed to one member, and fewer than k shares telling nothing; the deterministic issue from
the secret, shares sealed to a recovering enclave, the signed RecoveryShare record and its
worked example in docs/GOVERNANCE.md; ``gov keygen``.

On real processes (tests/cluster_harness.py, two validators, three members with X25519 keys,
threshold 2): both nodes record the same share set, again after a vote for new shares; a
contract is committed; every node loses ``consortium-secret.sealed`` and starts with
``--recover``; one share (``gov recovery-share``) is not enough; a repeated, wrong (named),
non-holder's or old-generation share is refused; a kill -9 keeps the accepted share; the
second share recovers the secret, the history is readable again, the other node joins
through the recovered one and new blocks follow; the recovery record in a block takes the
service back to ``opening`` with a new share generation on both nodes: a transaction is
refused (``network-not-open``) until the members vote ``open_network``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import RpcFailure
from Crypto.Protocol.SecretSharing import Shamir, _Element
from governance_support import (
    ADDRS,
    CHAIN_ID,
    DOMAIN,
    GENESIS,
    KEYS,
    OTHER_GENESIS,
    enc_key,
    enc_pub,
    member_args,
    refused,
    vote_through,
)

from gateway.governance import recovery as r
from gateway.governance import share_record as sr
from gateway.governance import typed as t

CTX = r.ShareContext(CHAIN_ID, GENESIS, 3)
KEY = bytes(range(100, 132))


def _holders(n: int) -> list[tuple[bytes, bytes]]:
    return [(ADDRS[i], enc_pub(i)) for i in range(n)]


@pytest.mark.parametrize(("k", "n"), [(1, 1), (1, 3), (2, 3), (3, 5), (5, 5)])
def test_any_k_of_n_shares_rebuild_the_key(k: int, n: int) -> None:
    shares = r.split_key(KEY, k, n)
    assert [i for i, _ in shares] == list(range(1, n + 1))
    assert all(len(v) == 32 for _, v in shares)
    for subset in itertools.combinations(shares, k):
        assert r.combine_key(list(subset)) == KEY


def test_fewer_than_k_shares_reveal_nothing() -> None:
    k, n = 3, 5
    shares = r.split_key(KEY, k, n)
    short = shares[: k - 1]
    # interpolating k-1 shares gives some other value, not the key
    assert r.combine_key(short) != KEY
    # and every key is equally consistent with them: for any target, a k-th share exists
    # that completes the k-1 shares to exactly that target (shown for the first half)
    for target in (bytes(16), os.urandom(16), KEY[:16]):
        x_k = 4
        base = Shamir.combine([(i, v[:16]) for i, v in short] + [(x_k, bytes(16))])
        unit = Shamir.combine([(i, bytes(16)) for i, _ in short] + [(x_k, (1).to_bytes(16, "big"))])
        y_k = (_Element(target) + _Element(base)) * _Element(unit).inverse()
        completed = [(i, v[:16]) for i, v in short] + [(x_k, y_k.encode())]
        assert Shamir.combine(completed) == target
    # two splits of the same key give unrelated shares
    again = r.split_key(KEY, k, n)
    assert all(a != b for (_, a), (_, b) in zip(shares, again, strict=True))


def test_issue_decrypt_and_recover() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    assert [s.member for s in share_set.shares] == ADDRS[:3]
    opened = {
        ADDRS[i]: r.decrypt_share(share_set.for_member(ADDRS[i]), enc_key(i), CTX) for i in range(3)
    }
    for member, share in opened.items():
        r.check_share(share_set, member, share)
    for pair in itertools.combinations(opened, 2):
        assert r.recover(share_set, {m: opened[m] for m in pair}) == KEY
    assert r.recover(share_set, opened) == KEY  # more than the threshold: any 2 are used
    # the ledger form round-trips
    again = r.ShareSet.from_json(share_set.to_json())
    assert again == share_set
    assert r.Share.decode(opened[ADDRS[0]].encode()) == opened[ADDRS[0]]


def test_too_few_shares_are_refused() -> None:
    share_set = r.issue(KEY, threshold=3, holders=_holders(4), context=CTX)
    opened = {
        ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i).private_bytes_raw(), CTX)
        for i in range(2)
    }
    err = refused("too-few-shares", r.recover, share_set, opened)
    assert err.fields == {"submitted": 2, "threshold": 3}


def test_a_wrong_share_is_named_and_refused() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    good = {ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i), CTX) for i in range(3)}
    # a tampered value
    bad = r.Share(good[ADDRS[1]].index, bytes(32), good[ADDRS[1]].blind)
    err = refused("wrong-share", r.recover, share_set, {ADDRS[0]: good[ADDRS[0]], ADDRS[1]: bad})
    assert err.fields == {"member": "0x" + ADDRS[1].hex()}
    # member 2 submits member 1's share as its own
    err = refused("wrong-share", r.check_share, share_set, ADDRS[2], good[ADDRS[1]])
    assert err.fields == {"member": "0x" + ADDRS[2].hex()}
    # a share of an earlier generation
    old = r.issue(
        KEY, threshold=2, holders=_holders(3), context=r.ShareContext(CHAIN_ID, GENESIS, 2)
    )
    stale = r.decrypt_share(old.shares[0], enc_key(0), old.context)
    refused("wrong-share", r.check_share, share_set, ADDRS[0], stale)
    refused("unknown-holder", r.check_share, share_set, ADDRS[4], good[ADDRS[0]])
    refused("bad-share", r.Share.decode, b"\x00" * 65)


def test_a_share_opens_only_for_its_member_consortium_and_generation() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(3), context=CTX)
    mine = share_set.shares[0]
    refused("wrong-share", r.decrypt_share, mine, enc_key(1), CTX)  # another member's key
    refused("wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(CHAIN_ID, GENESIS, 4))
    refused(
        "wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(CHAIN_ID, OTHER_GENESIS, 3)
    )
    refused("wrong-share", r.decrypt_share, mine, enc_key(0), r.ShareContext(1, GENESIS, 3))
    # the ciphertext relabelled as member 1's
    moved = r.IssuedShare(ADDRS[1], mine.index, mine.commitment, mine.ciphertext)
    refused("wrong-share", r.decrypt_share, moved, enc_key(0), CTX)
    flipped = bytearray(mine.ciphertext)
    flipped[-1] ^= 1
    refused(
        "wrong-share",
        r.decrypt_share,
        r.IssuedShare(mine.member, mine.index, mine.commitment, bytes(flipped)),
        enc_key(0),
        CTX,
    )
    refused(
        "bad-share",
        r.decrypt_share,
        r.IssuedShare(mine.member, mine.index, mine.commitment, mine.ciphertext[:-1]),
        enc_key(0),
        CTX,
    )
    # nothing of the key or the share in what the ledger records
    blob = str(share_set.to_json()).encode()
    opened = r.decrypt_share(mine, enc_key(0), CTX)
    assert KEY.hex().encode() not in blob and opened.value.hex().encode() not in blob


def test_wrap_and_unwrap_the_ledger_secret() -> None:
    secret = os.urandom(32)
    wrapped = r.wrap_secret(KEY, secret, CTX)
    assert secret not in wrapped
    assert r.unwrap_secret(KEY, wrapped, CTX) == secret
    refused("wrong-share", r.unwrap_secret, bytes(32), wrapped, CTX)
    refused("wrong-share", r.unwrap_secret, KEY, wrapped, r.ShareContext(CHAIN_ID, GENESIS, 4))
    # end to end: shares -> key -> secret
    share_set = r.issue(KEY, threshold=2, holders=_holders(2), context=CTX)
    opened = {ADDRS[i]: r.decrypt_share(share_set.shares[i], enc_key(i), CTX) for i in range(2)}
    assert r.unwrap_secret(r.recover(share_set, opened), wrapped, CTX) == secret


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        r.split_key(KEY[:16], 1, 1)
    with pytest.raises(ValueError):
        r.split_key(KEY, 3, 2)
    with pytest.raises(ValueError):
        r.split_key(KEY, 0, 2)
    with pytest.raises(ValueError):
        r.issue(KEY, threshold=1, holders=[], context=CTX)
    with pytest.raises(ValueError):
        r.issue(KEY, threshold=1, holders=_holders(1) * 2, context=CTX)
    refused("bad-share", r.ShareSet.from_json, {"version": 1})


# ------------------------------------------------------------------ issuing, deterministically


def test_issue_from_the_secret_is_the_same_everywhere_and_recovers_it() -> None:
    secret = os.urandom(32)
    holders = _holders(3)
    one = r.issue_from_secret(
        secret, context=CTX, threshold=2, holders=holders, ledger_generation=0
    )
    two = r.issue_from_secret(
        secret, context=CTX, threshold=2, holders=holders, ledger_generation=0
    )
    assert one == two  # every node that holds the secret records the same bytes
    assert r.Issued.from_json(one.to_json()) == one
    other = r.issue_from_secret(
        secret,
        context=r.ShareContext(CHAIN_ID, GENESIS, 4),
        threshold=2,
        holders=holders,
        ledger_generation=0,
    )
    assert other.wrapped != one.wrapped  # a new generation: a new wrapping key
    assert all(
        a.ciphertext != b.ciphertext
        for a, b in zip(one.share_set.shares, other.share_set.shares, strict=True)
    )
    opened = {ADDRS[i]: r.decrypt_share(one.share_set.shares[i], enc_key(i), CTX) for i in range(3)}
    for pair in itertools.combinations(opened, 2):
        key = r.recover(one.share_set, {m: opened[m] for m in pair})
        assert r.unwrap_secret(key, one.wrapped, CTX) == secret
    # one share alone: not the key, and the secret unwraps with nothing it gives
    alone = r.combine_key([(opened[ADDRS[0]].index, opened[ADDRS[0]].value)])
    refused("wrong-share", r.unwrap_secret, alone, one.wrapped, CTX)
    assert secret.hex() not in json.dumps(one.to_json())


def test_a_share_sealed_to_the_recovering_enclave_opens_only_there() -> None:
    share_set = r.issue(KEY, threshold=2, holders=_holders(2), context=CTX)
    share = r.decrypt_share(share_set.shares[0], enc_key(0), CTX)
    node, other_node = bytes([0xA0]) * 20, bytes([0xA1]) * 20
    key = r.enclave_key(bytes(range(32)), CTX)
    assert r.public_bytes(r.enclave_key(bytes(range(32)), CTX)) == r.public_bytes(key)  # stable
    sealed = r.seal_for_enclave(share, r.public_bytes(key), CTX, ADDRS[0], node)
    assert r.open_submission(sealed, key, CTX, ADDRS[0], node) == share
    assert share.value not in sealed
    refused("bad-share", r.open_submission, sealed, key, CTX, ADDRS[0], other_node)
    refused("bad-share", r.open_submission, sealed, key, CTX, ADDRS[1], node)
    refused(
        "bad-share", r.open_submission, sealed, r.enclave_key(bytes(32), CTX), CTX, ADDRS[0], node
    )
    refused("bad-share", r.open_submission, sealed[:-1], key, CTX, ADDRS[0], node)


# ------------------------------------------------------------------ the signed submission

WORKED_SHARE = bytes([0x01]) + bytes(range(32)) + bytes(range(12)) + bytes(range(0x40, 0x40 + 81))
WORKED_NODE = bytes([0xA0]) * 20


def worked_example() -> dict[str, str]:
    """The values of docs/GOVERNANCE.md's recovery share example, from the code."""
    from eth_account import Account

    message = sr.RecoveryShare(ADDRS[0], 3, WORKED_NODE, WORKED_SHARE)
    record = sr.sign(KEYS[0], DOMAIN, message)
    signable_types = sr.typed_data(DOMAIN, message)
    assert (
        Account.recover_message(
            __import__("eth_account.messages", fromlist=["encode_typed_data"]).encode_typed_data(
                full_message=signable_types
            ),
            signature=record.signature,
        ).lower()
        == "0x" + ADDRS[0].hex()
    )
    return {
        "share-struct": sr.struct_hash(message).hex(),
        "share-digest": sr.digest(DOMAIN, message).hex(),
        "share-signature": record.signature.hex(),
        "record": sr.encode(record).decode(),
    }


def test_the_signed_share_record_round_trips_and_is_checked() -> None:
    message = sr.RecoveryShare(ADDRS[0], 3, WORKED_NODE, WORKED_SHARE)
    record = sr.sign(KEYS[0], DOMAIN, message)
    raw = sr.encode(record)
    assert sr.decode(raw) == record
    assert sr.verify(sr.decode(raw), DOMAIN) == ADDRS[0]
    refused("wrong-chain", sr.verify, record, t.Domain(1, GENESIS))
    refused("wrong-consortium", sr.verify, record, t.Domain(CHAIN_ID, OTHER_GENESIS))
    # signed by another account for member 0
    forged = sr.sign(KEYS[1], DOMAIN, message)
    refused("share-signer", sr.verify, forged, DOMAIN)
    moved = sr.ShareRecord(
        DOMAIN, ADDRS[0], sr.RecoveryShare(ADDRS[0], 4, WORKED_NODE, WORKED_SHARE), record.signature
    )
    refused("bad-signature", sr.verify, moved, DOMAIN)
    refused("bad-record", sr.decode, raw.replace(b'"version":1', b'"version":1 '))
    refused("bad-record", sr.decode, raw.replace(b"recovery-share", b"ballot"))
    refused("bad-record", sr.decode, b"[]")
    refused("record-version", sr.decode, raw.replace(b'"version":1', b'"version":2'))


def test_the_worked_example_in_the_docs_is_what_the_code_computes() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "GOVERNANCE.md").read_text()
    values = worked_example()
    section = doc.split("### A recovery share, worked", 1)[1]
    for name in ("share-struct", "share-digest"):
        assert f"{name:<18} {values[name]}" in section, name
    sig = values["share-signature"]
    assert f"{'share-signature':<18} {sig[:64]}" in section and sig[64:] in section
    assert values["record"] in section


# ------------------------------------------------------------------ on real processes

# runtime: SLOAD(0) returned; init: SSTORE(0, 42) then return the runtime
RUNTIME = "60005460005260206000f3"
INIT = "602a600055600b6011600039600b6000f3" + RUNTIME


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _member_files(root: Path, i: int) -> tuple[str, str]:
    key_file, enc_file = root / f"member{i}.key", root / f"member{i}.x25519"
    if not key_file.exists():
        key_file.write_text("0x" + KEYS[i].hex() + "\n")
        enc_file.write_text("0x" + enc_key(i).private_bytes_raw().hex() + "\n")
    return str(key_file), str(enc_file)


def _submit_share(
    node: Any,
    i: int,
    *,
    tamper: bool = False,
    signer: int | None = None,
    old: dict[str, Any] | None = None,
) -> str:
    """Member ``i``'s share, as gov recovery-share makes it, optionally altered (``tamper``),
    signed by another account (``signer``: a non-holder submitting as itself) or of an
    earlier generation (``old``: what coco_govRecoveryShare said then); its refusal."""
    who = i if signer is None else signer
    me = ADDRS[who]
    info = node.rpc("coco_govRecoveryShare", ["0x" + ADDRS[i].hex()])
    source = old if old is not None else info
    context = r.ShareContext(
        int(info["chainId"]), bytes.fromhex(info["genesis"][2:]), int(source["generation"])
    )
    issued = r.IssuedShare(
        ADDRS[i], source["share"]["index"], bytes.fromhex(source["share"]["commitment"][2:]),
        bytes.fromhex(source["share"]["ciphertext"][2:]),
    )  # fmt: skip
    share = r.decrypt_share(issued, enc_key(i), context)
    if tamper:
        share = r.Share(share.index, bytes(32), share.blind)
    node_address = bytes.fromhex(info["node"][2:])
    sealed = r.seal_for_enclave(
        share, bytes.fromhex(info["recoveryKey"][2:]), context, me, node_address
    )
    record = sr.sign(
        KEYS[who], t.Domain(context.chain_id, context.genesis_hash),
        sr.RecoveryShare(me, context.generation, node_address, sealed),
    )  # fmt: skip
    with pytest.raises(RpcFailure) as info_err:
        node.rpc("coco_govRecoverySubmit", [sr.encode(record).decode()])
    assert info_err.value.error.get("data", {}).get("member", "0x" + me.hex()) == "0x" + me.hex()
    return str(info_err.value.reason)


def _locked(node: Any, tx: str) -> bool:
    try:
        node.rpc("eth_getTransactionReceipt", [tx])
    except RpcFailure as exc:
        return exc.reason == "awaiting-secret"
    return False


def test_the_secret_comes_back_from_the_members_shares_after_every_node_lost_it(
    tmp_path: Path,
) -> None:
    from cluster_harness import Cluster, wait_until
    from eth_account import Account

    from gateway.devaccounts import derive
    from gateway.enclave.keys import SECRET_FILE

    cluster = Cluster(tmp_path / "c", validators=2, init_args=member_args())
    try:
        cluster.start()
        cluster.wait_height(1, timeout=120)
        node1, node2 = cluster["node1"], cluster["node2"]
        # the share set of generation 0: the same bytes on both nodes, public
        shown = [n.rpc("coco_govRecoveryShare", ["0x" + ADDRS[0].hex()]) for n in (node1, node2)]
        assert shown[0]["share"] == shown[1]["share"]
        assert (shown[0]["generation"], shown[0]["threshold"], shown[0]["recovering"]) == (
            0,
            2,
            False,
        )
        assert shown[0]["holders"] == ["0x" + a.hex() for a in sorted(ADDRS[:3])]
        with pytest.raises(RpcFailure) as nobody:
            node1.rpc("coco_govRecoveryShare", ["0x" + ADDRS[3].hex()])
        assert nobody.value.reason == "unknown-holder"
        with pytest.raises(RpcFailure) as ready:  # a node that holds the secret takes none
            node1.rpc(
                "coco_govRecoverySubmit",
                [
                    sr.encode(
                        sr.sign(
                            KEYS[0],
                            DOMAIN,
                            sr.RecoveryShare(ADDRS[0], 0, WORKED_NODE, WORKED_SHARE),
                        )
                    ).decode()
                ],
            )
        assert ready.value.reason == "not-recovering"
        with pytest.raises(RpcFailure) as garbled:
            node1.rpc("coco_govRecoverySubmit", ["{}"])
        assert garbled.value.reason == "bad-record"
        # a contract whose state is confidential, committed
        sender = derive()[0]
        chain_id = int(node1.rpc("eth_chainId"), 16)

        def price() -> int:
            return 2 * int(node1.rpc("eth_gasPrice"), 16)

        tx = Account.sign_transaction(
            {"chainId": chain_id, "nonce": 0, "gas": 200_000, "gasPrice": price(),
             "data": "0x" + INIT, "value": 0},
            sender.private_key,
        )  # fmt: skip
        tx_hash = node1.rpc("eth_sendRawTransaction", ["0x" + bytes(tx.raw_transaction).hex()])
        receipt = wait_until(
            lambda: node1.rpc("eth_getTransactionReceipt", [tx_hash]), 60, "receipt"
        )
        contract = receipt["contractAddress"]
        assert receipt["status"] == "0x1", receipt
        assert node1.rpc("eth_getCode", [contract, "latest"]) == "0x" + RUNTIME
        assert int(node1.rpc("eth_getStorageAt", [contract, "0x0", "latest"]), 16) == 42
        cluster.wait_height(int(receipt["blockNumber"], 16) + 1, timeout=60)
        # the members vote new shares: both nodes record generation 1, the same bytes
        domain = t.Domain(chain_id, bytes.fromhex(shown[0]["genesis"][2:]))
        vote_through(node1, domain, t.Action.make("refresh_recovery_shares"))

        def shares_of(generation: int) -> list[dict[str, Any]] | None:
            """Member 0's share on both nodes, once both are at ``generation``."""
            now = [n.rpc("coco_govRecoveryShare", ["0x" + ADDRS[0].hex()]) for n in (node1, node2)]
            return now if all(x["generation"] == generation for x in now) else None

        fresh = wait_until(lambda: shares_of(1), 60, "shares of generation 1 on both nodes")
        assert fresh[0]["share"] == fresh[1]["share"]
        assert fresh[0]["share"]["ciphertext"] != shown[0]["share"]["ciphertext"]
        assert "recovery shares of generation 1 recorded" in node2.log()
        # every node loses its sealed secret
        cluster.stop_all()
        for n in (node1, node2):
            (n.data_dir / SECRET_FILE).unlink()
        for n in (node1, node2):
            n.start(args=["--recover"])

        def recovering(n: Any) -> dict[str, Any] | None:
            try:
                status: dict[str, Any] = n.rpc("coco_govRecoveryStatus", timeout=3)
            except (OSError, RpcFailure):
                return None
            return status if status["recovering"] else None

        status = wait_until(lambda: recovering(node1), 120, "node1 in recovery mode")
        wait_until(lambda: recovering(node2), 120, "node2 in recovery mode")
        assert (status["threshold"], status["submitted"]) == (2, [])
        assert status["trustedNodes"] == sorted([node1.address.lower(), node2.address.lower()])
        assert status["allowVirtual"] is True and len(status["measurements"]) == 1
        assert "waits for 2 of the 3 members' recovery shares" in node1.log()
        assert _locked(node1, tx_hash)
        # one share: accepted, not enough
        key0, enc0 = _member_files(tmp_path, 0)
        done = _cli("gov", "recovery-share", "--rpc", node1.url, "--key-file", key0,
                    "--encryption-key-file", enc0)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "1 of 2 shares; waiting" in done.stderr
        assert json.loads(done.stdout)["recovered"] is False
        assert _locked(node1, tx_hash)
        assert recovering(node1)["submitted"] == ["0x" + ADDRS[0].hex()]  # type: ignore[index]
        # the same member again, a wrong share (named), a non-holder: refused
        assert _submit_share(node1, 0) == "duplicate"
        assert _submit_share(node1, 1, tamper=True) == "wrong-share"
        assert _submit_share(node1, 1, signer=3) == "unknown-holder"
        assert _submit_share(node1, 0, old=shown[0]) == "wrong-generation"  # before the refresh
        assert _locked(node1, tx_hash)
        # kill -9 in the middle of the submissions: the accepted share survives
        node1.kill9()
        node1.start(args=["--recover"])
        again = wait_until(lambda: recovering(node1), 120, "node1 back in recovery mode")
        assert again["submitted"] == ["0x" + ADDRS[0].hex()]
        assert _locked(node1, tx_hash)
        key1, enc1 = _member_files(tmp_path, 1)
        done = _cli("gov", "recovery-share", "--rpc", node1.url, "--key-file", key1,
                    "--encryption-key-file", enc1)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "2 of 2 shares; the node recovered the consortium secret" in done.stderr
        # the whole history is readable again, and node2 joins through node1
        wait_until(lambda: not _locked(node1, tx_hash), 60, "node1 serving again")
        assert node1.rpc("eth_getTransactionReceipt", [tx_hash]) == receipt
        assert int(node1.rpc("eth_getStorageAt", [contract, "0x0", "latest"]), 16) == 42
        assert node1.rpc("eth_getCode", [contract, "latest"]) == "0x" + RUNTIME
        assert (node1.data_dir / SECRET_FILE).exists()
        wait_until(lambda: (node2.data_dir / SECRET_FILE).exists(), 120, "node2 joined")
        top = int(receipt["blockNumber"], 16)
        cluster.wait_height(top + 3, timeout=120)

        # the recovery record went into a block: on both nodes the service is "opening"
        # again, and the members hold new shares (generation 2, the same bytes everywhere)
        def reopened(n: Any) -> dict[str, Any] | None:
            state: dict[str, Any] = n.rpc("coco_govState")
            return (
                state if (state["service"], state["sharesGeneration"]) == ("opening", 2) else None
            )

        for n in (node1, node2):
            wait_until(lambda n=n: reopened(n), 120, f"{n.name} opening after the recovery")

        renewed = wait_until(lambda: shares_of(2), 60, "shares of generation 2 on both nodes")
        assert renewed[0]["share"] == renewed[1]["share"]
        assert renewed[0]["share"]["ciphertext"] != fresh[0]["share"]["ciphertext"]
        assert not renewed[0]["recovering"]
        recorded = [
            b
            for b in range(top, node1.height() + 1)
            if any(
                r.get("type") == "recovered"
                for r in node1.rpc("coco_govBlock", [hex(b)])["records"]
            )
        ]
        assert len(recorded) == 1, recorded  # one recovery record, applied once
        # users cannot transact until the members vote open_network again
        tx2 = Account.sign_transaction(
            {"chainId": chain_id, "nonce": 1, "gas": 21_000, "gasPrice": price(),
             "to": Account.from_key(KEYS[5]).address, "value": 1},
            sender.private_key,
        )  # fmt: skip
        raw2 = "0x" + bytes(tx2.raw_transaction).hex()
        for n in (node1, node2):
            with pytest.raises(RpcFailure) as closed:
                n.rpc("eth_sendRawTransaction", [raw2])
            assert closed.value.reason == "network-not-open", closed.value.error
        assert node2.rpc("eth_getTransactionReceipt", [tx_hash]) == receipt  # reads go on
        vote_through(node1, domain, t.Action.make("open_network"))
        for n in (node1, node2):
            wait_until(
                lambda n=n: n.rpc("coco_govState")["service"] == "open", 60, f"{n.name} open"
            )
        tx2_hash = node2.rpc("eth_sendRawTransaction", [raw2])
        wait_until(lambda: node1.rpc("eth_getTransactionReceipt", [tx2_hash]), 60, "a new block")
        assert node2.rpc("eth_getTransactionReceipt", [tx_hash]) == receipt
    except BaseException:
        print(cluster.report())
        raise
    finally:
        cluster.close()


def test_gov_keygen_makes_a_key_pair_and_never_overwrites(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    out = tmp_path / "member.x25519"
    done = _cli("gov", "keygen", "--out", str(out))
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    private = bytes.fromhex(out.read_text().strip()[2:])
    assert out.stat().st_mode & 0o777 == 0o600
    public = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert shown == {"encryptionKey": "0x" + public.hex(), "privateKeyFile": str(out)}
    again = _cli("gov", "keygen", "--out", str(out))
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert bytes.fromhex(out.read_text().strip()[2:]) == private
    # recovery-share with a malformed encryption key: a clear error, no traceback
    bad = _cli("gov", "recovery-share", "--rpc", "http://127.0.0.1:1", "--encryption-key-file",
               str(out) + ".none", env={"COCO_GOV_KEY": "0x" + KEYS[0].hex()})  # fmt: skip
    assert bad.returncode == 1 and "cannot read the encryption key file" in bad.stderr
    assert "Traceback" not in bad.stderr
