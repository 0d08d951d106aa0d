"""Governance on a real four-validator consortium (docs/GOVERNANCE.md, "In the node").

Three genesis members (dev accounts 0-2, ``init --dev-members 3 --opening``) sign proposals and
ballots with eth-account; records go to different nodes over ``coco_govSubmit``, are ordered
by QBFT in blocks and applied by every node at one block: every node reports the same
outcome at the same height and the same state digest there. A rejected and an expired
proposal change nothing; refused records (forged, another chain, duplicate, stale, not a
member, removed member) are refused over RPC with their reason; removing a validator by
vote changes the QBFT validator set two blocks later and the chain goes on with the rest.
The service starts ``opening``: a transaction is refused (``network-not-open``) until the
members vote ``open_network``; a ``set_node_policy`` vote (``requireEncryption``) proposed at
one node is in force on every node from the block that decides it, and so is ``privacy``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_harness import Cluster, RpcFailure, governed

from gateway.devaccounts import derive
from gateway.governance import typed

ACCOUNTS = derive()
MEMBERS = ACCOUNTS[:3]
OUTSIDER = ACCOUNTS[5]
OPEN_FOR = 60  # the constitution's shortest: the expiry test waits this long
LONG = 3600  # the other proposals: closed by their ballots, however slow the machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # set_node_policy proposals stay open OPEN_FOR seconds, the others LONG
    yield from governed(
        tmp_path_factory.mktemp("gov"),
        {
            "version": 1,
            "default": {"threshold": "majority", "openFor": LONG},
            "actions": {
                "remove_member": {"threshold": "two-thirds"},
                "remove_validator": {"threshold": "two-thirds"},
                "set_node_policy": {"openFor": OPEN_FOR},  # the expiry test's action
            },
        },
        observers=1,
        init_args=["--opening"],
    )


def domain(node: Any) -> typed.Domain:
    info = node.rpc("coco_nodeInfo")
    return typed.Domain(int(info["chainId"], 16), bytes.fromhex(info["genesisHash"][2:]))


def submit(node: Any, record: typed.SignedRecord) -> dict[str, Any]:
    answer: dict[str, Any] = node.rpc("coco_govSubmit", [typed.encode_record(record).decode()])
    return answer


def refused(node: Any, params: list[Any]) -> str | None:
    with pytest.raises(RpcFailure) as info:
        node.rpc("coco_govSubmit", params)
    return info.value.reason


def propose(node: Any, key: bytes, *actions: typed.Action) -> str:
    proposer = bytes.fromhex(derive_address(key)[2:])
    message = typed.Proposal(proposer, int(time.time()), tuple(actions))
    answer = submit(node, typed.sign(key, domain(node), message))
    assert answer["type"] == "proposal"
    return str(answer["proposal"])


def proposed(cluster: Cluster, name: str, key: bytes, *actions: typed.Action) -> str:
    """Propose at one node; wait until every validator's state has it (a ballot names a
    recorded proposal: one sent to a node that has not seen it yet is unknown-proposal)."""
    pid = propose(cluster[name], key, *actions)
    recorded(cluster, pid)
    return pid


def recorded(cluster: Cluster, pid: str) -> None:
    def known() -> bool:
        for node in cluster.validators():
            try:
                node.rpc("coco_govProposal", [pid])
            except RpcFailure:
                return False
        return True

    cluster.wait_until(known, 60, f"proposal {pid[:12]} recorded everywhere")


def derive_address(key: bytes) -> str:
    from eth_account import Account

    return str(Account.from_key(key).address.lower())


def vote(node: Any, key: bytes, pid: str, approve: bool, revision: int = 0) -> dict[str, Any]:
    ballot = typed.Ballot(bytes.fromhex(pid[2:]), approve, revision)
    return submit(node, typed.sign(key, domain(node), ballot))


def closed_everywhere(cluster: Cluster, pid: str, nodes: list[str] | None = None) -> dict:
    """Wait until every node shows the proposal closed; they must agree on how and where."""
    names = nodes or cluster.names("validator")

    def views() -> list[dict[str, Any]] | None:
        got = [cluster[n].rpc("coco_govProposal", [pid]) for n in names]
        return got if all(v["status"] != "open" for v in got) else None

    seen = cluster.wait_until(views, 90, f"proposal {pid[:12]} closed on {names}")
    first = seen[0]
    for view in seen[1:]:
        assert (view["status"], view["closedHeight"]) == (first["status"], first["closedHeight"])
    digests = {
        cluster[n].rpc("coco_govBlock", [hex(first["closedHeight"])])["stateDigest"] for n in names
    }
    assert len(digests) == 1, digests
    return dict(first)


def test_genesis_governance_state(cluster: Cluster) -> None:
    assert [m["address"] for m in cluster.terms()["members"]] == [
        a.address.lower() for a in MEMBERS
    ]
    state = cluster["node1"].rpc("coco_govState")
    assert sorted(state["members"]) == sorted(a.address.lower() for a in MEMBERS)
    assert len(state["validatorsNext"]) == 4
    assert cluster["node2"].rpc("coco_govConstitution")["default"]["openFor"] == LONG


# runtime: SLOAD(0) returned; init: SSTORE(0, 42) then return the runtime
INIT = "602a600055600b6011600039600b6000f3" + "60005460005260206000f3"
SENDER = ACCOUNTS[4]  # funded by --dev-alloc; not a member


def signed_tx(node: Any, nonce: int, data: str = "", to: str | None = None) -> str:
    from eth_account import Account

    tx: dict[str, Any] = {
        "chainId": int(node.rpc("eth_chainId"), 16),
        "nonce": nonce,
        "gas": 200_000,
        "gasPrice": 2 * int(node.rpc("eth_gasPrice"), 16),
        "value": 1 if to else 0,
        "data": data,
    }
    if to:
        tx["to"] = to
    return "0x" + bytes(Account.sign_transaction(tx, SENDER.private_key).raw_transaction).hex()


def send_refused(node: Any, raw: str) -> RpcFailure:
    with pytest.raises(RpcFailure) as info:
        node.rpc("eth_sendRawTransaction", [raw])
    return info.value


def test_the_network_opens_by_vote(cluster: Cluster) -> None:
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    for node in cluster.validators():
        assert node.rpc("coco_govState")["service"] == "opening"
    deploy = signed_tx(cluster["node2"], 0, "0x" + INIT)
    # every node refuses it, with the reason (a consortium node unlocks no account: no
    # eth_sendTransaction); reads and governance go on
    for name in cluster.names("validator"):
        failure = send_refused(cluster[name], deploy)
        assert failure.reason == "network-not-open", failure.error
        assert failure.error["code"] == -32000 and "open_network" in failure.error["message"]
        assert failure.error["data"]["service"] == "opening"
    assert int(cluster["node3"].rpc("eth_getBalance", [SENDER.address, "latest"]), 16) > 0
    pid = proposed(cluster, "node1", a, typed.Action.make("open_network"))
    vote(cluster["node3"], a, pid, True)
    vote(cluster["node4"], b, pid, True)
    view = closed_everywhere(cluster, pid)
    assert view["status"] == "accepted"
    for name in cluster.names("validator"):
        cluster.wait_until(
            lambda n=name: cluster[n].rpc("coco_govState")["service"] == "open",
            60,
            f"{name} open",
        )
    # the same transaction now goes in
    tx_hash = cluster["node2"].rpc("eth_sendRawTransaction", [deploy])
    receipt = cluster.wait_until(
        lambda: cluster["node4"].rpc("eth_getTransactionReceipt", [tx_hash]), 60, "the deploy"
    )
    assert receipt["status"] == "0x1"
    # a second vote to open it is refused when proposed
    again = typed.Proposal(
        bytes.fromhex(MEMBERS[0].address[2:]),
        int(time.time()),
        (typed.Action.make("open_network"),),
    )
    assert (
        refused(
            cluster["node1"],
            [typed.encode_record(typed.sign(a, domain(cluster["node1"]), again)).decode()],
        )
        == "already-open"
    )


def test_a_policy_vote_is_in_force_on_every_node(cluster: Cluster) -> None:
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    node3 = cluster["node3"]  # neither the proposer's node nor a voter's
    nonce = int(node3.rpc("eth_getTransactionCount", [SENDER.address, "pending"]), 16)
    assert node3.rpc("coco_whoami")["privacy"] == "open"
    strict = (
        typed.Action.make("set_node_policy", {"name": "requireEncryption", "value": True}),
        typed.Action.make("set_node_policy", {"name": "privacy", "value": "strict"}),
    )
    pid = proposed(cluster, "node1", a, *strict)
    vote(cluster["node1"], a, pid, True)
    vote(cluster["node2"], b, pid, True)
    view = closed_everywhere(cluster, pid)
    assert view["status"] == "accepted"
    plain = signed_tx(node3, nonce, "0x" + INIT)
    for name in cluster.names("validator"):
        node = cluster[name]
        policies = node.rpc("coco_govState")["policies"]
        assert (policies["requireEncryption"], policies["privacy"]) == (True, "strict"), name
        # plain init code is refused on every node (each node.json says neither policy)
        failure = send_refused(node, plain)
        assert failure.reason == "encryption-required", (name, failure.error)
        # another account's balance is no longer told to an anonymous caller
        with pytest.raises(RpcFailure) as hidden:
            node.rpc("eth_getBalance", [SENDER.address, "latest"])
        assert hidden.value.reason == "private-account", (name, hidden.value.error)
        # and the host knows (pending-transaction filters are refused on a strict node)
        cluster.wait_until(
            lambda n=node: n.rpc("coco_whoami")["privacy"] == "strict", 30, f"{name} strict"
        )
        with pytest.raises(RpcFailure):
            node.rpc("eth_newPendingTransactionFilter")
    # the observer follows the vote too (it reads the policy from the public sections)
    observer = cluster["observer1"]
    cluster.wait_until(
        lambda: observer.rpc("coco_nodeInfo")["privacy"] == "strict", 30, "observer strict"
    )
    # a plain value transfer still goes in
    transfer = signed_tx(node3, nonce, to=OUTSIDER.address)
    tx_hash = node3.rpc("eth_sendRawTransaction", [transfer])
    # and a vote turns both off again, on every node
    relaxed = (
        typed.Action.make("set_node_policy", {"name": "requireEncryption", "value": False}),
        typed.Action.make("set_node_policy", {"name": "privacy", "value": "open"}),
    )
    pid = proposed(cluster, "node2", b, *relaxed)
    vote(cluster["node4"], a, pid, True)
    vote(cluster["node4"], b, pid, True)
    assert closed_everywhere(cluster, pid)["status"] == "accepted"
    cluster.wait_until(
        lambda: cluster["node1"].rpc("eth_getTransactionReceipt", [tx_hash]), 60, "the transfer"
    )
    assert int(node3.rpc("eth_getBalance", [SENDER.address, "latest"]), 16) > 0
    again = signed_tx(node3, nonce + 1, "0x" + INIT)
    tx_hash = cluster["node4"].rpc("eth_sendRawTransaction", [again])
    receipt = cluster.wait_until(
        lambda: node3.rpc("eth_getTransactionReceipt", [tx_hash]), 60, "the plain deploy"
    )
    assert receipt["status"] == "0x1"
    cluster.wait_until(
        lambda: node3.rpc("coco_whoami")["privacy"] == "open", 30, "node3 open again"
    )
    cluster.wait_until(
        lambda: observer.rpc("coco_nodeInfo")["privacy"] == "open", 30, "observer open again"
    )


def test_refused_records_name_their_reason(cluster: Cluster) -> None:
    node = cluster["node1"]
    dom = domain(node)
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    pid = propose(
        node,
        a,
        typed.Action.make(
            "set_member_data", {"address": MEMBERS[0].address.lower(), "data": {"n": 1}}
        ),
    )
    ballot = typed.Ballot(bytes.fromhex(pid[2:]), True, 5)
    # forged: signed by b, presented as a's
    forged = typed.sign(b, dom, ballot)
    as_a = typed.SignedRecord(
        forged.domain, bytes.fromhex(MEMBERS[0].address[2:]), ballot, forged.signature
    )
    assert refused(node, [typed.encode_record(as_a).decode()]) == "bad-signature"
    # replayed from another chain
    other = typed.sign(a, typed.Domain(dom.chain_id + 1, dom.genesis_hash), ballot)
    assert refused(node, [typed.encode_record(other).decode()]) == "wrong-chain"
    other = typed.sign(a, typed.Domain(dom.chain_id, b"\x01" * 32), ballot)
    assert refused(node, [typed.encode_record(other).decode()]) == "wrong-consortium"
    # not a member
    assert (
        refused(node, [typed.encode_record(typed.sign(OUTSIDER.private_key, dom, ballot)).decode()])
        == "not-a-member"
    )
    # the typed data a wallet signed, and its signature: accepted once, then a duplicate
    record = typed.sign(a, dom, ballot)
    data = typed.typed_data(dom, ballot)
    answer = node.rpc("coco_govSubmit", [data, "0x" + record.signature.hex()])
    assert answer["signer"] == MEMBERS[0].address.lower()
    assert refused(cluster["node1"], [typed.encode_record(record).decode()]) == "duplicate"
    # a lower revision, at another node once the first is in a block: stale
    cluster.wait_until(
        lambda: (
            cluster["node3"]
            .rpc("coco_govProposal", [pid])["ballots"]
            .get(MEMBERS[0].address.lower())
        ),
        60,
        "the ballot in a block",
    )
    lower = typed.sign(a, dom, typed.Ballot(bytes.fromhex(pid[2:]), True, 4))
    assert refused(cluster["node3"], [typed.encode_record(lower).decode()]) == "stale-ballot"
    assert refused(cluster["node3"], [typed.encode_record(record).decode()]) == "duplicate"
    # malformed
    assert refused(node, ["{}"]) == "record-version"
    assert refused(node, ['{"version":1}']) == "bad-record"
    # close it (member 1 agrees), so later tests count open proposals cleanly
    vote(cluster["node2"], b, pid, True)
    assert closed_everywhere(cluster, pid)["status"] == "accepted"


def test_accepted_at_one_block_on_every_node(cluster: Cluster) -> None:
    a, b, c = (m.private_key for m in MEMBERS)
    target = MEMBERS[2].address.lower()
    pid = proposed(
        cluster,
        "node1",
        a,
        typed.Action.make("set_member_data", {"address": target, "data": {"org": "C"}}),
    )
    # ballots at different nodes, concurrently
    vote(cluster["node2"], b, pid, True)
    vote(cluster["node3"], c, pid, True)
    view = closed_everywhere(cluster, pid)
    assert view["status"] == "accepted"
    for name in cluster.names("validator"):
        assert cluster[name].rpc("coco_govMembers")[target]["data"] == {"org": "C"}


def test_rejected_changes_nothing(cluster: Cluster) -> None:
    a, b, c = (m.private_key for m in MEMBERS)
    target = MEMBERS[1].address.lower()
    before = cluster["node1"].rpc("coco_govMembers")[target]
    # recorded everywhere first: a ballot at a node that has not seen it is unknown-proposal
    pid = proposed(
        cluster,
        "node2",
        a,
        typed.Action.make("set_member_data", {"address": target, "data": {"x": 1}}),
    )
    vote(cluster["node3"], b, pid, False)
    vote(cluster["node4"], c, pid, False)
    assert closed_everywhere(cluster, pid)["status"] == "rejected"
    for name in cluster.names("validator"):
        assert cluster[name].rpc("coco_govMembers")[target] == before


def test_expired_changes_nothing(cluster: Cluster) -> None:
    a = MEMBERS[0].private_key
    before = cluster["node1"].rpc("coco_govState")["policies"]
    action = typed.Action.make("set_node_policy", {"name": "requireEncryption", "value": True})
    pid = proposed(cluster, "node1", a, action)
    vote(cluster["node1"], a, pid, True)  # one of three: not enough
    view = cluster.wait_until(
        lambda: (v := cluster["node2"].rpc("coco_govProposal", [pid]))["status"] != "open" and v,
        OPEN_FOR + 60,
        "the proposal expired",
    )
    assert view["status"] == "expired"
    assert closed_everywhere(cluster, pid)["status"] == "expired"
    for name in cluster.names("validator"):
        assert cluster[name].rpc("coco_govState")["policies"] == before
    late = typed.sign(
        MEMBERS[1].private_key,
        domain(cluster["node3"]),
        typed.Ballot(bytes.fromhex(pid[2:]), True, 0),
    )
    assert refused(cluster["node3"], [typed.encode_record(late).decode()]) == "proposal-not-open"


def gov_cli(node: Any, key: bytes, *args: str) -> Any:
    """``coco-gateway gov ...`` as a member runs it (key from $COCO_GOV_KEY); its JSON."""
    env = {**os.environ, "COCO_GOV_KEY": "0x" + key.hex()}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gov", *args, "--rpc", node.url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_gov_cli_proposes_votes_and_shows(cluster: Cluster) -> None:
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    target = MEMBERS[0].address.lower()
    action = "set_member_data=" + json.dumps({"address": target, "data": {"cli": True}})
    pid = gov_cli(cluster["node2"], a, "propose", "--action", action)["proposal"]
    recorded(cluster, pid)
    gov_cli(cluster["node3"], a, "vote", pid, "--approve")
    gov_cli(cluster["node1"], b, "vote", pid, "--approve")
    assert closed_everywhere(cluster, pid)["status"] == "accepted"
    shown = gov_cli(cluster["node4"], a, "show", pid)
    assert shown["status"] == "accepted" and shown["tally"]["approve"] == 2
    listed = gov_cli(cluster["node4"], a, "list", "--status", "accepted")
    assert pid in [p["id"] for p in listed]
    assert cluster["node1"].rpc("coco_govMembers")[target]["data"] == {"cli": True}


def test_remove_a_validator_by_vote(cluster: Cluster) -> None:
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    gone = cluster["node4"].rpc("coco_nodeStatus")["address"].lower()
    pid = proposed(cluster, "node1", a, typed.Action.make("remove_validator", {"address": gone}))
    vote(cluster["node2"], a, pid, True)
    vote(cluster["node3"], b, pid, True)
    view = closed_everywhere(cluster, pid)
    assert view["status"] == "accepted"
    effective = view["closedHeight"] + 2
    rest = ["node1", "node2", "node3"]
    cluster.wait_until(
        lambda: min(cluster[n].height() for n in rest) >= effective + 4, 90, "the chain goes on"
    )
    for name in rest:
        proof = cluster[name].rpc("coco_getFinality", [hex(effective + 1)])
        assert (
            gone not in [v.lower() for v in proof["validators"]] and len(proof["validators"]) == 3
        )
        assert proof["final"]
        # the removed validator no longer votes or proposes: every seal of a later block is a
        # remaining validator's (its QBFT instance moved to the new set, as the others' did)
        for number in range(effective, effective + 4):
            later = cluster[name].rpc("coco_getFinality", [hex(number)])
            assert len(later["seals"]) == len(later["signers"]), (number, later)
            assert later["proposer"].lower() != gone, number
        before = cluster[name].rpc("coco_getFinality", [hex(effective - 1)])
        assert len(before["validators"]) == 4 and before["final"]
    # the removed validator's node follows the chain
    cluster.wait_until(lambda: cluster["node4"].height() >= effective + 3, 90, "node4 follows")
    # and every node's status tells the set as the vote left it; node4 runs no round
    for name in cluster.names():
        status = cluster[name].rpc("coco_nodeStatus")
        told = [v.lower() for v in status["validators"]]
        assert len(told) == 3 and gone not in told, (name, status["validators"])
    assert cluster["node4"].rpc("coco_nodeStatus")["round"] is None
    # so does the observer, which has no secret: it checks each block's seals against the
    # validator set of the governance state it follows from the public sections
    observer = cluster[cluster.names("observer")[0]]
    cluster.wait_until(lambda: observer.height() >= effective + 3, 90, "the observer follows")
    seen = observer.rpc("coco_getFinality", [hex(effective + 1)])
    assert seen["final"] and gone not in [v.lower() for v in seen["validators"]]
    assert len(seen["validators"]) == 3
    assert observer.rpc("coco_govProposal", [pid])["status"] == "accepted"
    number = observer.rpc("coco_govState")["height"]
    assert (
        observer.rpc("coco_govBlock", [hex(number)])["stateDigest"]
        == cluster["node1"].rpc("coco_govBlock", [hex(number)])["stateDigest"]
    )
    hashes = {
        cluster[n].rpc("eth_getBlockByNumber", [hex(effective + 2), False])["hash"]
        for n in cluster.names()
    }
    assert len(hashes) == 1


def test_a_removed_member_can_no_longer_vote(cluster: Cluster) -> None:
    a, b, c = (m.private_key for m in MEMBERS)
    removed = MEMBERS[2].address.lower()
    pid = proposed(cluster, "node1", a, typed.Action.make("remove_member", {"address": removed}))
    other = propose(
        cluster["node1"],
        b,
        typed.Action.make(
            "set_member_data", {"address": MEMBERS[0].address.lower(), "data": {"z": 3}}
        ),
    )
    vote(cluster["node2"], a, pid, True)
    vote(cluster["node3"], b, pid, True)
    assert closed_everywhere(cluster, pid)["status"] == "accepted"
    for name in cluster.names("validator"):
        assert cluster[name].rpc("coco_govMembers")[removed]["active"] is False
    assert (
        refused(
            cluster["node2"],
            [
                typed.encode_record(
                    typed.sign(
                        c, domain(cluster["node2"]), typed.Ballot(bytes.fromhex(other[2:]), True, 0)
                    )
                ).decode()
            ],
        )
        == "removed-member"
    )


def test_a_follower_with_an_emptied_data_directory_starts_from_a_snapshot(
    cluster: Cluster,
) -> None:
    """A sealed snapshot of a governed chain: node4 (a follower since its removal as a
    validator) loses its data directory but keeps its identity, starts from a peer's
    snapshot, and has the same governance state and history as the validators (replayed from
    the snapshot's sealed bodies, each section checked against its header)."""
    node4, node1 = cluster["node4"], cluster["node1"]
    assert node4.stop() == 0
    node4.empty_data_dir_keeping_identity()
    node4.edit_config(snapshotThreshold=8)
    cluster.wait_until(lambda: node1.height() >= 10, 120, "ten blocks")
    cluster.start(["node4"])
    cluster.wait_until(
        lambda: "snapshot: opened block" in node4.log(), 120, "node4 opened a snapshot"
    )
    cluster.wait_until(lambda: node4.height() >= node1.height() - 1, 120, "node4 caught up")
    number = min(node4.height(), node1.height())
    ours, theirs = (n.rpc("coco_govBlock", [hex(number)])["stateDigest"] for n in (node4, node1))
    assert ours == theirs
    # the blocks that carried records read the same on both
    with_records = [
        n for n in range(1, number + 1) if node1.rpc("coco_govBlock", [hex(n)])["records"]
    ]
    assert with_records
    for n in with_records:
        assert node4.rpc("coco_govBlock", [hex(n)]) == node1.rpc("coco_govBlock", [hex(n)])
    assert node4.rpc("coco_govState")["validators"] == node1.rpc("coco_govState")["validators"]


def test_a_withdrawn_proposal_changes_nothing_and_takes_no_ballot(cluster: Cluster) -> None:
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    target = MEMBERS[1].address.lower()
    before = cluster["node1"].rpc("coco_govMembers")[target]["data"]
    action = typed.Action.make("set_member_data", {"address": target, "data": {"w": 1}})
    pid = proposed(cluster, "node2", a, action)
    vote(cluster["node1"], a, pid, True)
    # only the proposer may withdraw it
    other = typed.sign(b, domain(cluster["node3"]), typed.Withdraw(bytes.fromhex(pid[2:])))
    assert refused(cluster["node3"], [typed.encode_record(other).decode()]) == "not-proposer"
    mine = typed.sign(a, domain(cluster["node3"]), typed.Withdraw(bytes.fromhex(pid[2:])))
    submit(cluster["node3"], mine)
    view = closed_everywhere(cluster, pid)
    assert view["status"] == "withdrawn"
    late = typed.sign(b, domain(cluster["node1"]), typed.Ballot(bytes.fromhex(pid[2:]), True, 0))
    assert refused(cluster["node1"], [typed.encode_record(late).decode()]) == "proposal-not-open"
    for name in cluster.names("validator"):
        assert cluster[name].rpc("coco_govMembers")[target]["data"] == before


def test_remove_a_validator_that_is_down_while_rounds_change(cluster: Cluster) -> None:
    """node3, one of the three validators left, is killed: at each height it would propose
    the others wait out round 0 and change round. The members vote it out meanwhile (two of
    the two active members: remove_validator needs two thirds); from the effective height the
    two left decide every block at round 0, and node3, restarted, follows as a non-validator."""
    a, b = MEMBERS[0].private_key, MEMBERS[1].private_key
    node1, node2, node3 = cluster["node1"], cluster["node2"], cluster["node3"]
    assert len(node1.rpc("coco_govState")["validators"][-1][1]) == 3
    gone = node3.rpc("coco_nodeStatus")["address"].lower()
    node3.kill9()
    start = node1.height()

    def round_changed() -> bool:
        top = node1.height()
        return any(
            int(node1.rpc("coco_getFinality", [hex(n)])["round"]) > 0
            for n in range(start + 1, top + 1)
        )

    cluster.wait_until(round_changed, 120, "a round change while node3 is down")
    pid = propose(node1, a, typed.Action.make("remove_validator", {"address": gone}))
    for node in (node1, node2):
        cluster.wait_until(
            lambda node=node: _known(node, pid), 60, f"proposal recorded on {node.name}"
        )
    vote(node2, a, pid, True)
    vote(node1, b, pid, True)
    view = closed_everywhere(cluster, pid, ["node1", "node2"])
    assert view["status"] == "accepted"
    effective = view["closedHeight"] + 2
    cluster.wait_until(
        lambda: min(node1.height(), node2.height()) >= effective + 6, 120, "the two go on"
    )
    for number in range(effective, effective + 6):
        proof = node1.rpc("coco_getFinality", [hex(number)])
        assert proof["final"] and int(proof["round"]) == 0, (number, proof)
        assert sorted(v.lower() for v in proof["validators"]) == sorted(
            n.rpc("coco_nodeStatus")["address"].lower() for n in (node1, node2)
        )
        assert gone not in [s.lower() for s in proof["signers"]]
    cluster.start(["node3"])
    cluster.wait_until(lambda: node3.height() >= effective + 6, 120, "node3 follows")
    assert (
        node3.rpc("eth_getBlockByNumber", [hex(effective + 5), False])["hash"]
        == (node1.rpc("eth_getBlockByNumber", [hex(effective + 5), False])["hash"])
    )


def _known(node: Any, pid: str) -> bool:
    try:
        node.rpc("coco_govProposal", [pid])
    except RpcFailure:
        return False
    return True
