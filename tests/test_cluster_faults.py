"""Faults a real consortium survives: four validator processes on loopback (issue 8, item 12).

The tests share two consortia (the session's ``cluster_pool``) made with ``coco-gateway
init`` (the dev mnemonic's accounts funded, one block a second), one running at a time:
node4's links through fault proxies, or through p2p relays. Each node runs as ``coco-gateway
node --config`` (host and enclave processes), through ``tests/cluster_harness.py``; each test
gets its consortium whole and it is restored after the test (nodes started again, links
healed, rules dropped, all caught up).
Transactions flow from dev accounts while validators are killed (``kill -9`` of the node and
its enclave), stopped, partitioned through a fault proxy, fed changed frames through a p2p
relay, or run with a clock 30 s ahead.
Every test ends with the two checks that matter: every transaction a node accepted has a
receipt on every node and every receipt a client saw is unchanged (``check_nothing_lost``),
and all nodes hold the same block hashes up to the common finalized height
(``check_agreement``). The design's numbers: quorum 3 of 4; a proposal timestamped more
than 15 s ahead of a validator's clock is refused ("timestamp-in-future").
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import (
    CLOCK_OFFSET_ENV,
    Cluster,
    ClusterNode,
    ClusterPool,
    Traffic,
    consortium_secret,
    failed_in,
    open_body,
    proposal_block_hash,
    seal_body,
    wait_until,
)
from fault_proxy import (
    COMMIT,
    DOWNSTREAM,
    NEW_BLOCK,
    PREPARE,
    PROPOSAL,
    UPSTREAM,
    Rule,
    bad_body_rule,
    bad_seals_rule,
    drop_rule,
    qbft_code,
    sidecar_rule,
)

pytestmark = [
    # see tests/test_cluster_basic.py: the timeout bounds each test's own call
    pytest.mark.timeout(300, func_only=True),
]


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(**Cluster options)``: a consortium in the test's temp dir, closed after
    the test; when the test failed, each node's status and last log lines are printed. Its
    files and logs are removed after a pass unless COCO_KEEP_CLUSTERS is set."""
    made: list[Cluster] = []

    def make(**options: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"c{len(made)}", **options)
        made.append(cluster)
        return cluster

    yield make
    failed = failed_in(request)
    for cluster in made:
        cluster.finish(request)
    if not failed and not os.environ.get("COCO_KEEP_CLUSTERS"):
        shutil.rmtree(tmp_path, ignore_errors=True)


def _route_node4(kind: str) -> Callable[[Cluster], None]:
    return lambda cluster: cluster.route_through(["node4"], kind)


@pytest.fixture
def proxied(cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared consortium of four validators with node4's links through fault proxies."""
    yield from cluster_pool.lend(request, "faults-proxy", setup=_route_node4("proxy"), validators=4)


@pytest.fixture
def relayed(cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared consortium of four validators with node4's links through p2p relays."""
    yield from cluster_pool.lend(request, "faults-relay", setup=_route_node4("relay"), validators=4)


def finish(cluster: Cluster, traffic: Traffic) -> None:
    """Stop the traffic; then every node is caught up, nothing is lost, all agree."""
    traffic.stop()
    names = cluster.names()
    top = max(cluster[n].height() for n in names)
    cluster.wait_height(top, names, timeout=120)
    cluster.check_nothing_lost(traffic, names, timeout=120)
    common = cluster.check_agreement(names)
    assert common >= top - 1, f"finalized {common}, head {top}"
    assert traffic.confirmed() > 0
    hard = [e for e in traffic.errors if "nonce too low" not in e.lower()]
    assert not hard, f"clients got errors: {hard[:5]}"


def proposer_names(cluster: Cluster, start: int, end: int) -> dict[int, str]:
    """Who proposed blocks ``start`` .. ``end``: the proposer in each block's proof of
    finality (``coco_getFinality``), by node name."""
    by_address = {(n.address or "").lower(): n.name for n in cluster.nodes.values()}
    node = cluster.running()[0]
    out = {}
    for number in range(start, end + 1):
        proof = node.rpc("coco_getFinality", [hex(number)])
        out[number] = by_address.get(str(proof["proposer"]).lower(), str(proof["proposer"]))
    return out


def next_proposer(cluster: Cluster) -> str:
    """The validator that proposes in the current round (coco_nodeStatus "proposer")."""
    proposer = str(cluster.running()[0].status().get("proposer", "")).lower()
    by_address = {(n.address or "").lower(): n.name for n in cluster.validators()}
    return by_address.get(proposer, cluster.validators()[-1].name)


def log_has(node: ClusterNode, *needles: str, since: int = 0) -> bool:
    text = node.log_since(since)
    return any(n in text for n in needles)


# --------------------------------------------------------------------------- crashes


def test_kill9_a_validator_while_transactions_flow(proxied: Cluster) -> None:
    cluster = proxied
    traffic = cluster.flow()
    traffic.wait_confirmed(8)

    victim = cluster[next_proposer(cluster)]  # the hardest one to lose
    victim.kill9()
    others = [n for n in cluster.names() if n != victim.name]
    cluster.wait_progress(3, others, timeout=90)  # three of four are a quorum
    traffic.wait_confirmed(8, timeout=90)

    cluster.start([victim.name])
    head = cluster["node1" if victim.name != "node1" else "node2"].height()
    cluster.wait_height(head, [victim.name], timeout=120)  # it caught up
    finish(cluster, traffic)


@pytest.mark.slow
def test_two_validators_down_the_chain_stops_then_resumes(proxied: Cluster) -> None:
    cluster = proxied
    traffic = cluster.flow(only=["node1", "node2"])
    traffic.wait_confirmed(6)
    pids = {n: cluster[n].proc.pid for n in ("node1", "node2")}  # type: ignore[union-attr]

    cluster["node3"].kill9()
    cluster["node4"].kill9()
    # a block already committed by three may still land; then nothing more can
    stalled = wait_until(
        lambda: (h := cluster.heights()) and len(set(h.values())) == 1 and h,
        30,
        "the two survivors to stop at one height",
    )
    height = max(stalled.values())
    with pytest.raises(AssertionError, match="timed out"):
        cluster.wait_height(height + 1, ["node1", "node2"], timeout=8)  # 8 block periods
    seen = traffic.receipts_seen()
    pending = [h for h in traffic.accepted_hashes() if h not in seen]
    assert pending, "no transaction was accepted while the chain stood still"

    cluster.start(["node3"])  # one returns: a quorum again, nobody else restarted
    cluster.wait_progress(3, ["node1", "node2", "node3"], timeout=120)
    assert {n: cluster[n].proc.pid for n in pids} == pids  # type: ignore[union-attr]
    for tx_hash in pending:  # what was accepted while it stood still is in the chain now
        wait_until(
            lambda tx_hash=tx_hash: cluster["node3"].rpc("eth_getTransactionReceipt", [tx_hash]),
            60,
            f"receipt of {tx_hash} accepted during the outage",
        )
    traffic.wait_confirmed(4, timeout=90)
    cluster.start(["node4"])
    finish(cluster, traffic)


# --------------------------------------------------------------------------- the network


def test_partition_one_validator_and_heal(proxied: Cluster) -> None:
    cluster = proxied
    traffic = cluster.flow(only=["node1", "node2", "node3"])
    traffic.wait_confirmed(4)

    for how in ("refuse", "blackhole"):
        cluster.partition("node4", how)
        cut_at = cluster["node4"].height()
        cluster.wait_progress(4, ["node1", "node2", "node3"], timeout=90)
        assert cluster["node4"].height() <= cut_at + 1, f"node4 moved on behind a {how} partition"
        cluster.heal("node4")
        head = cluster["node1"].height()
        cluster.wait_height(head, ["node4"], timeout=120)
        assert cluster["node4"].block_hashes(head, head) == cluster["node1"].block_hashes(
            head, head
        )
    finish(cluster, traffic)


def unasked_decisions_dropped(cluster: Cluster, name: str) -> list[Rule]:
    """On each relay of ``name``'s links: drop every COMMIT and every decided block sent to
    ``name`` unasked (QBFT NEW_BLOCK, pushed ``blocks``), so that it never decides a height
    itself; the answer to each of its own catch-up requests (``getBlocks``) still passes.
    Returns the dropping rules."""
    rules = []
    for relay, toward in cluster.relays_into(name):
        asked = [0]  # this link's getBlocks requests not answered yet

        def count(frame: dict[str, Any], asked: list[int] = asked) -> dict[str, Any]:
            asked[0] += 1
            return frame  # passed on unchanged

        def unasked(frame: dict[str, Any], asked: list[int] = asked) -> bool:
            if frame.get("t") == "blocks" and asked[0] > 0:
                asked[0] -= 1
                return False
            return frame.get("t") == "blocks" or qbft_code(frame) in (COMMIT, NEW_BLOCK)

        away = DOWNSTREAM if toward == UPSTREAM else UPSTREAM
        relay.add_rule(
            Rule("count-requests", lambda f: f.get("t") == "getBlocks", count, away, None)
        )
        rules.append(relay.add_rule(drop_rule(unasked, toward)))
    return rules


def test_a_validator_that_decides_nothing_itself_keeps_the_chain_going(relayed: Cluster) -> None:
    """node4 gets neither COMMITs nor decided blocks it did not ask for: it never decides a
    height itself, and is one block behind each time the others have decided. With node3
    down, node1 and node2 need node4 for every quorum: it must fetch each decided block when
    the next height's messages arrive, not wait for what will not come (it used to wait: its
    status check fetches only when two blocks behind, and the chain stood still)."""
    cluster = relayed
    traffic = cluster.flow(only=["node1", "node2"])
    traffic.wait_confirmed(2)
    rules = unasked_decisions_dropped(cluster, "node4")
    try:
        cluster["node3"].kill9()
        cluster.wait_progress(4, ["node1", "node2", "node4"], timeout=120)
        traffic.wait_confirmed(4, timeout=90)
        assert sum(r.applied for r in rules) > 0, "nothing to node4 was dropped"
    finally:
        cluster.clear_rules("node4")
    cluster.start(["node3"])
    finish(cluster, traffic)


def test_a_validator_with_its_clock_30s_ahead(proxied: Cluster) -> None:
    cluster = proxied
    ahead = cluster["node2"]
    ahead.stop()
    marks = {n.name: n.log_mark() for n in cluster.nodes.values()}
    cluster.start(["node2"], env={"node2": {CLOCK_OFFSET_ENV: "30"}})
    traffic = cluster.flow(only=["node1", "node3", "node4"])
    start = cluster["node1"].height()
    end = cluster.wait_progress(8, timeout=150)  # two full turns of the four proposers

    others = [cluster[n] for n in ("node1", "node3", "node4")]
    wait_until(
        lambda: all(log_has(n, "timestamp-in-future", since=marks[n.name]) for n in others),
        30,
        "every other validator to log that it refused node2's proposal (timestamp-in-future)",
    )
    proposers = proposer_names(cluster, start + 1, end)
    assert set(proposers.values()) <= {"node1", "node3", "node4"}, (
        f"a proposal 30 s ahead was accepted (15 s allowed): {proposers}"
    )
    assert len(set(proposers.values())) >= 2, proposers  # round-robin went on without node2
    assert ahead.height() >= end - 1  # it follows the chain the others make
    finish(cluster, traffic)


# --------------------------------------------------------------------------- hostile frames


@pytest.mark.slow
def test_a_validator_fed_bad_frames_refuses_each_and_keeps_going(relayed: Cluster) -> None:
    cluster = relayed
    target = cluster["node4"]
    traffic = cluster.flow(only=["node1", "node2", "node3"])
    traffic.wait_confirmed(4)

    def applied(rules: list[Any]) -> int:
        return sum(r.applied for r in rules)

    def keeps_up(what: str) -> None:
        head = cluster["node1"].height() + 2
        cluster.wait_height(head, ["node4"], timeout=120)
        assert target.running, f"node4 stopped after {what}"

    # 1. a proposal whose sealed body has flipped bytes: the AEAD refuses it
    mark = target.log_mark()
    rules = cluster.rules_into("node4", lambda d: bad_body_rule(d, limit=1))
    wait_until(lambda: applied(rules) >= 1, 60, "a proposal to node4 with a sidecar to spoil")
    wait_until(lambda: log_has(target, "bad-body", since=mark), 30, "node4 to log bad-body")
    cluster.clear_rules("node4")
    keeps_up("a bad body")

    # 2. a sealed body that opens (a host holding a software enclave's keys can seal one) but
    #    carries another block's state diff: refused by the diff checks
    secret = consortium_secret(cluster["node1"].data_dir)
    earlier: dict[str, Any] = {}

    def substitute(frame: dict[str, Any], sidecar: bytes) -> bytes:
        _height, block_hash = proposal_block_hash(frame)
        body = open_body(secret, cluster.chain_id, block_hash, sidecar)
        if not earlier:
            earlier.update(body)  # the first one passes as it is, and lends its diff
            raise LookupError("kept the first proposal's diff")  # relayed unchanged
        forged = {"txs": body["txs"], "diff": earlier["diff"]}
        return seal_body(secret, cluster.chain_id, block_hash, forged)

    mark = target.log_mark()
    rules = cluster.rules_into("node4", lambda d: sidecar_rule(substitute, d, limit=1))
    wait_until(lambda: applied(rules) >= 1, 60, "a proposal to node4 to give another diff")
    wait_until(
        lambda: log_has(target, "header-mismatch", "bad-diff", "state-root-mismatch", since=mark),
        30,
        "node4 to refuse the substituted state diff (header-mismatch, bad-diff or "
        "state-root-mismatch)",
    )
    cluster.clear_rules("node4")
    keeps_up("a wrong state diff")

    # 3. finalized blocks with forged commit seals (catch-up after a short stop). Every
    #    blocks frame to node4 is forged until it has refused one: a validator ignores blocks
    #    pushed to it unasked, so only its own catch-up request's answer is sure to be checked
    mark = target.log_mark()
    rules = cluster.rules_into("node4", lambda d: bad_seals_rule("outsider", d, limit=None))
    target.stop()
    cluster.wait_progress(3, ["node1", "node2", "node3"], timeout=60)
    cluster.start(["node4"])
    wait_until(lambda: applied(rules) >= 1, 60, "finalized blocks to node4 to forge seals on")
    wait_until(lambda: log_has(target, "bad-seals", since=mark), 30, "node4 to log bad-seals")
    cluster.clear_rules("node4")
    keeps_up("forged commit seals")
    assert "Traceback" not in target.log()
    finish(cluster, traffic)


def test_replayed_messages_change_nothing(relayed: Cluster) -> None:
    cluster = relayed
    target = cluster["node4"]
    traffic = cluster.flow(only=["node1", "node2", "node3"])
    traffic.wait_confirmed(4)
    cluster.wait_progress(3)

    def replay_all() -> int:
        sent = 0
        for relay, direction in cluster.relays_into("node4"):
            sent += relay.replay(
                direction, lambda f: qbft_code(f) in (PROPOSAL, PREPARE, COMMIT), limit=128
            )
        return sent

    def refused(reason: str) -> int:
        return int(target.status().get("refused", {}).get(reason, 0))

    # earlier heights' messages, while node4 has seen them: its links refuse the duplicates
    mark = target.log_mark()
    counted = refused("replayed-message")  # the shared cluster may have seen some already
    assert replay_all() > 0, "no earlier QBFT frames to replay"
    cluster.wait_until(
        lambda: refused("replayed-message") > counted, 60, "node4 to count the replays"
    )
    wait_until(
        lambda: log_has(target, "refused (replayed-message)", since=mark),
        30,
        "node4 to log the replays with their reason",
    )
    cluster.wait_progress(2, timeout=60)
    # ... and after a restart, when they are new to it: messages of heights their senders
    # have decided (their status says so) are refused as stale, not taken for a peer behind
    target.stop()
    cluster.start(["node4"])
    cluster.wait_height(cluster["node1"].height(), ["node4"], timeout=120)
    restarted = target.log_mark()
    assert replay_all() > 0
    cluster.wait_until(lambda: refused("stale-height") > 0, 60, "node4 to count stale messages")
    wait_until(
        lambda: log_has(target, "refused (stale-height)", since=restarted),
        30,
        "node4 to log the stale messages with their reason",
    )
    cluster.wait_progress(3, timeout=90)
    finish(cluster, traffic)
    log = target.log_since(mark)
    assert "Traceback" not in log
    # rate-limited: fewer lines than refusals (tests/test_p2p_refusals.py checks the bucket)
    stale_lines = target.log_since(restarted).count("refused (stale-height)")
    assert 0 < stale_lines <= refused("stale-height"), stale_lines


# --------------------------------------------------------------------------- the join


def test_a_node_with_an_unknown_measurement_is_refused(
    make_cluster: Callable[..., Cluster],
) -> None:
    other = "0x" + "ab" * 32  # the only measurement the terms allow: not this code's
    cluster = make_cluster(validators=1, members=1, init_args=["--measurement", other])
    genesis, member = cluster.validators()[0], cluster[cluster.names("member")[0]]
    cluster.start([genesis.name])
    cluster.start([member.name], wait=False)
    wait_until(
        lambda: log_has(member, "unknown-measurement") and log_has(genesis, "unknown-measurement"),
        90,
        "both sides to log the refusal reason unknown-measurement",
    )
    if member.answers():  # it may serve its status; it must not have the secret
        assert member.status().get("state") == "awaiting-secret"
    assert genesis.height() >= 0
