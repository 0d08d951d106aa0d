"""Joins decided by governance on a real four-validator consortium (docs/GOVERNANCE.md,
"Joins").

Three genesis members (dev accounts 0-2) vote. A fifth node made by ``coco-gateway
add-node`` (outside consortium.json) links to the members, is recorded as pending by a join
record in a block, waits (its log says so, once a minute at most), is trusted by a
``trust_node`` vote, joins, catches up and serves the same chain; ``add_validator`` then makes
it seal blocks. A node running other code (a copy of the package with one changed file: another
measurement) is refused ``measurement-not-allowed`` on both sides until an
``allow_measurement`` vote, then waits pending like any new node; ``retire_node`` then makes
the members refuse its links.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_harness import Cluster, ClusterNode, RpcFailure, governed
from conftest import REPO
from test_cluster_governance import domain, submit

from gateway.devaccounts import derive
from gateway.governance import typed

MEMBERS = derive()[:3]
LONG = 3600  # proposals are closed by their ballots, however slow the machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from governed(
        tmp_path_factory.mktemp("joins"),
        {"version": 1, "default": {"threshold": "majority", "openFor": LONG}},
        observers=1,
    )


def passed(cluster: Cluster, *actions: typed.Action, at: str = "node1") -> dict[str, Any]:
    """Propose ``actions`` (member 0) and approve with members 0 and 1 (a majority and two
    thirds of three); wait until every genesis validator shows it closed, at one height."""
    node = cluster[at]
    proposer = MEMBERS[0]
    message = typed.Proposal(bytes.fromhex(proposer.address[2:]), int(time.time()), tuple(actions))
    pid = str(submit(node, typed.sign(proposer.private_key, domain(node), message))["proposal"])
    genesis = ["node1", "node2", "node3", "node4"]

    def known() -> bool:
        for name in genesis:
            try:
                cluster[name].rpc("coco_govProposal", [pid])
            except RpcFailure:
                return False
        return True

    cluster.wait_until(known, 60, f"proposal {pid[:12]} recorded")
    for member in MEMBERS[:2]:
        ballot = typed.Ballot(bytes.fromhex(pid[2:]), True, 0)
        submit(node, typed.sign(member.private_key, domain(node), ballot))

    def views() -> list[dict[str, Any]] | None:
        got = [cluster[n].rpc("coco_govProposal", [pid]) for n in genesis]
        return got if all(v["status"] != "open" for v in got) else None

    seen = cluster.wait_until(views, 90, f"proposal {pid[:12]} closed")
    assert {(v["status"], v["closedHeight"]) for v in seen} == {
        ("accepted", seen[0]["closedHeight"])
    }, seen
    return dict(seen[0])


def action(kind: str, **args: Any) -> typed.Action:
    return typed.Action(kind, typed.canonical_json(args))


def node_state(cluster: Cluster, address: str) -> list[dict[str, Any] | None]:
    """The node's entry in each genesis validator's governance state."""
    return [
        cluster[n].rpc("coco_govNodes").get(address.lower())
        for n in ("node1", "node2", "node3", "node4")
    ]


def wait_state(cluster: Cluster, address: str, state: str) -> dict[str, Any]:
    def all_agree() -> dict[str, Any] | None:
        views = node_state(cluster, address)
        if all(v is not None and v["state"] == state for v in views):
            assert all(v == views[0] for v in views), views  # the same record everywhere
            return views[0]
        return None

    return cluster.wait_until(all_agree, 90, f"{address[:10]} {state} on every validator")


def log_count(node: ClusterNode, text: str) -> int:
    return node.log().count(text)


def measure(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "attest", "measure"],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()[0]


def test_a_new_node_waits_pending_then_joins_by_vote_and_serves(cluster: Cluster) -> None:
    node5 = cluster.add_node("node5", role="validator")
    assert node5.address is not None
    terms = cluster.terms()
    assert node5.address not in [n["address"] for n in terms["nodes"]]
    node5.start()  # it answers RPC only once it has joined
    pending = wait_state(cluster, node5.address, "pending")
    assert pending["measurement"] == terms["measurements"][0]
    assert pending["platform"] == "virtual"
    # both sides name the refusal; the joiner says it waits for a vote, once a minute at most
    cluster.wait_until(
        lambda: log_count(node5, "waits for a trust vote") >= 1, 60, "node5 to log its wait"
    )
    assert "node-pending" in node5.log()
    assert any("node-pending" in cluster[n].log() for n in ("node1", "node2", "node3", "node4"))

    def refusals() -> int:  # the members count the pending joins they refused
        return sum(
            int(cluster[n].status()["refused"].get("node-pending", 0))
            for n in ("node1", "node2", "node3", "node4")
        )

    asked = refusals()
    cluster.wait_until(lambda: refusals() >= asked + 3, 60, "node5 to ask again")
    # it asked again and again meanwhile, and said it waits once
    assert log_count(node5, "waits for a trust vote") == 1
    assert not node5.answers()

    closed = passed(cluster, action("trust_node", address=node5.address))
    assert wait_state(cluster, node5.address, "trusted")["since"] == closed["closedHeight"]
    cluster.wait_answers("node5", timeout=120)
    target = cluster["node1"].height()
    cluster.wait_until(lambda: node5.height() >= target, 120, "node5 to catch up")
    common = min(node5.height(), cluster["node1"].height())
    assert node5.block_hashes(0, common) == cluster["node1"].block_hashes(0, common)
    assert "joined the consortium" in node5.log()
    # it serves: a transfer sent to it is mined, and its state agrees
    assert node5.rpc("coco_govNodes")[node5.address]["state"] == "trusted"
    head = node5.rpc("eth_getBlockByNumber", ["latest", False])
    assert head is not None


def test_add_validator_makes_the_new_node_seal(cluster: Cluster) -> None:
    node5 = cluster["node5"]
    assert node5.address is not None and node5.answers()
    closed = passed(cluster, action("add_validator", address=node5.address))
    effective = int(closed["closedHeight"]) + 2

    def sealed_by_node5() -> int | None:
        head = cluster["node1"].finalized()
        for number in range(max(effective, head - 8), head + 1):
            proof = cluster["node1"].rpc("coco_getFinality", [hex(number)])
            if node5.address in [s.lower() for s in proof["signers"]]:
                assert node5.address in [v.lower() for v in proof["validators"]]
                assert len(proof["validators"]) == 5 and proof["final"]
                return number
        return None

    number = cluster.wait_until(sealed_by_node5, 90, "a block sealed by node5")
    before = cluster["node1"].rpc("coco_getFinality", [hex(effective - 1)])
    assert node5.address not in [v.lower() for v in before["validators"]]
    # the five go on, node5 among them
    cluster.wait_until(
        lambda: node5.height() >= number + 3 and cluster["node2"].height() >= number + 3,
        60,
        "the chain to go on with five validators",
    )
    cluster.check_agreement()
    # the observer (no secret) applied the join record and the vote from the public
    # sections: it checks node5's seals against the five
    observer = cluster[cluster.names("observer")[0]]
    cluster.wait_until(lambda: observer.height() >= number + 3, 90, "the observer follows")
    seen = observer.rpc("coco_getFinality", [hex(number)])
    assert seen["final"] and node5.address in [s.lower() for s in seen["signers"]]
    assert len(seen["validators"]) == 5
    assert observer.rpc("coco_govNodes")[node5.address]["state"] == "trusted"


def test_the_new_validator_and_a_genesis_one_restart_and_the_five_go_on(cluster: Cluster) -> None:
    """A node outside consortium.json reopens with its sealed secret (no join again), and a
    restarted genesis node links to it at once, by the state it reads at its head."""
    node5 = cluster["node5"]
    assert node5.address is not None
    for name in ("node5", "node1"):
        mark = cluster[name].log_mark()
        cluster.restart(name)
        assert "awaits the consortium secret" not in cluster[name].log_since(mark)
        start = cluster["node2"].finalized()

        def sealed_by_node5_again(start: int = start) -> bool:
            head = cluster["node2"].finalized()
            for number in range(start + 1, head + 1):
                proof = cluster["node2"].rpc("coco_getFinality", [hex(number)])
                if node5.address in [x.lower() for x in proof["signers"]]:
                    return True
            return False

        cluster.wait_until(sealed_by_node5_again, 90, f"node5 to seal after {name} restarted")
    cluster.wait_until(
        lambda: cluster["node1"].height() >= cluster["node2"].finalized(), 60, "node1 catches up"
    )
    cluster.check_agreement()


@pytest.fixture(scope="module")
def other_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with one enclave file changed: another measurement."""
    root: Path = tmp_path_factory.mktemp("other-code")
    shutil.copytree(
        REPO / "gateway", root / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    init = root / "gateway" / "governance" / "__init__.py"
    init.write_text(init.read_text() + "\n# another build of the enclave code\n")
    return root


def test_other_code_is_refused_until_its_measurement_is_allowed(
    cluster: Cluster, other_code: Path
) -> None:
    other = measure(other_code)
    assert other != cluster.terms()["measurements"][0]
    node6 = cluster.add_node("node6", role="member", cwd=other_code)
    assert node6.address is not None
    node6.start()
    cluster.wait_until(
        lambda: (
            "measurement-not-allowed" in node6.log()
            and any("measurement-not-allowed" in cluster[n].log() for n in ("node1", "node2"))
        ),
        90,
        "both sides to name measurement-not-allowed",
    )
    assert other in node6.log()  # the refusal names the measurement
    assert all(v is None for v in node_state(cluster, node6.address))  # not even pending

    passed(cluster, action("allow_measurement", measurement=other))
    pending = wait_state(cluster, node6.address, "pending")
    assert pending["measurement"] == other
    passed(cluster, action("trust_node", address=node6.address))
    cluster.wait_answers("node6", timeout=120)
    target = cluster["node1"].height()
    cluster.wait_until(lambda: node6.height() >= target, 120, "node6 to catch up")


def test_retire_node_refuses_its_links(cluster: Cluster) -> None:
    node6 = cluster["node6"]
    assert node6.address is not None and node6.answers()
    marks = {n: cluster[n].log_mark() for n in ("node1", "node2", "node3", "node4")}
    closed = passed(cluster, action("retire_node", address=node6.address))
    wait_state(cluster, node6.address, "retired")
    # the members drop its links and refuse new ones, naming why
    cluster.wait_until(
        lambda: all("node-retired" in cluster[n].log_since(m) for n, m in marks.items()),
        60,
        "every member to refuse node6's links as node-retired",
    )
    # it no longer follows the chain
    stuck = node6.height()
    assert stuck <= int(closed["closedHeight"]) + 5
    target = cluster["node1"].height() + 5
    cluster.wait_height(target, nodes=["node1"], timeout=60)
    assert node6.height() == stuck


def test_add_node_refuses_a_listed_name_and_an_existing_node(cluster: Cluster) -> None:
    for name in ("node1", "node5"):  # in the terms; made by the first test
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "add-node", "--dir", str(cluster.root),
             "--name", name],
            cwd=str(REPO), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert "coco-gateway add-node:" in done.stderr and name in done.stderr
        assert "Traceback" not in done.stderr
    # consortium.json is as init wrote it: the new nodes joined without changing the terms
    assert [n["name"] for n in cluster.terms()["nodes"]] == ["node1", "node2", "node3", "node4"]
