"""The sign-in page's governance view in a real browser, on a governed consortium.

A one-validator consortium with three genesis members (dev accounts 0-2, ``init
--validators 1 --dev-members 3``). In Debian's headless Chromium (playwright-core, as
tests/test_signin_page.py), with a test EIP-1193 wallet injected per key
(tests/clients/browser/governance.mjs): member 0 reads the members, nodes and validators,
proposes an action, approves it, proposes a second one and withdraws it; an account that is
no member approves the first and the page shows the node's refusal (``not-a-member``);
member 1 rejects it, changes its mind (revision 1) and the page shows it accepted. The
outcome is then read over RPC: the same proposal, status, closing height, ballots, the
member data the action set, and the records in the block that closed it.

Also over RPC: ``coco_govTypedData`` (the exact typed data a wallet signs, as
``gateway.governance.typed`` makes it; its refusals with reason codes) and
``coco_govActions``; on a node without governance both answer ``no-governance``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients_support import ensure_npm_packages
from cluster_harness import Cluster, RpcFailure
from conftest import NodeProcess
from eth_account import Account
from test_signin_page import BROWSER_DIR, CHROMIUM, chromium_problem

from gateway.devaccounts import derive
from gateway.governance import typed
from gateway.governance.actions import KINDS

ACCOUNTS = derive()
MEMBERS = [a.address.lower() for a in ACCOUNTS[:3]]
OUTSIDER = ACCOUNTS[5]


def key_hex(index: int) -> str:
    return "0x" + ACCOUNTS[index].private_key.hex()


@pytest.fixture(scope="module")
def consortium(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path_factory.mktemp("govpage"),
        validators=1,
        observers=1,
        init_args=["--dev-members", "3"],
    )
    try:
        c.start()
        c.wait_height(1, timeout=120)
        yield c
    finally:
        c.finish(request)


def domain(node: Any) -> typed.Domain:
    info = node.rpc("coco_nodeInfo")
    return typed.Domain(int(info["chainId"], 16), bytes.fromhex(info["genesisHash"][2:]))


def refusal(node: Any, method: str, params: list[Any]) -> dict[str, Any]:
    with pytest.raises(RpcFailure) as info:
        node.rpc(method, params)
    return info.value.error


def test_governance_page_in_chromium(consortium: Cluster, tmp_path: Path) -> None:
    problem = chromium_problem()
    if problem is not None:
        pytest.skip(problem)
    ensure_npm_packages(BROWSER_DIR)
    node = consortium["node1"]
    assert node.address is not None
    validator = node.address.lower()
    dom = domain(node)
    plan = {
        "proposer": key_hex(0),
        "outsider": key_hex(5),
        "second": key_hex(1),
        "propose": {
            "kind": "set_member_data",
            "args": {"address": MEMBERS[0], "data": {"org": "Coco page test", "n": 7}},
        },
        # any action the state takes now (the service is open: open_network would be refused)
        "withdraw": {"kind": "refresh_recovery_shares", "args": {}},
        "observer": consortium["observer1"].url,
    }
    screenshot = tmp_path / "governance.png"
    done = subprocess.run(
        ["node", str(BROWSER_DIR / "governance.mjs")],
        env={
            **os.environ,
            "NODE_URL": node.url,
            "PLAN": json.dumps(plan),
            "CHROMIUM": CHROMIUM,
            "SCREENSHOT": str(screenshot),
        },
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BROWSER_DIR,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert done.returncode == 0 and report.get("ok"), (report, done.stderr[-3000:])
    assert not [line for line in report["console"] if line.startswith(("error", "pageerror"))]

    # what the page showed before anything was proposed: the state over RPC
    state = node.rpc("coco_govState")
    members = node.rpc("coco_govMembers")
    assert [m["address"] for m in report["members"]] == MEMBERS == list(members)
    for shown in report["members"]:
        assert shown["cells"][1] == "yes"  # active
        assert shown["cells"][2] == "no"  # no recovery key: the dev members have none
    assert [(n["address"], n["cells"][1], n["cells"][2]) for n in report["nodes"]] == [
        (validator, "trusted", "yes")
    ]
    assert validator in report["validatorsNow"]
    assert [(r["first"], r["cells"][1], r["cells"][2]) for r in report["schedule"]] == [
        ("0", validator, "now")
    ]
    assert state["validators"] == [[0, [validator]]]
    assert report["kinds"] == list(KINDS) == list(node.rpc("coco_govActions")["actions"])
    assert "active member" in report["proposerYou"] and "active member" in report["secondYou"]
    assert "not a member" in report["outsiderYou"]

    # what the wallets were asked to sign: this consortium's domain, the page's actions
    signed = [
        json.loads(c["params"][1])
        for c in report["proposerCalls"]
        if c["method"] == "eth_signTypedData_v4"
    ]
    assert [s["primaryType"] for s in signed] == ["Proposal", "Ballot", "Proposal", "Withdraw"]
    for data in signed:
        assert data["domain"] == dom.to_json()
    proposal = typed.parse_message("proposal", signed[0]["message"])
    assert isinstance(proposal, typed.Proposal)
    assert proposal.actions == (typed.Action.make("set_member_data", plan["propose"]["args"]),)
    assert "0x" + typed.proposal_id(proposal).hex() == report["proposalId"]

    # the outsider's ballot: signed, and refused by the node with its reason shown
    pid = report["proposalId"]
    assert "not-a-member" in report["outsiderError"]
    assert OUTSIDER.address.lower() in report["outsiderError"]
    assert report["proposerError"] is None and report["secondError"] is None

    # the outcome over RPC is the one the page showed
    view = node.rpc("coco_govProposal", [pid])
    assert view["status"] == "accepted" == report["acceptedRow"]["status"]
    assert str(view["closedHeight"]) == report["acceptedRow"]["cells"][5]
    assert view["ballots"] == {
        MEMBERS[0]: {"approve": True, "revision": 0},
        MEMBERS[1]: {"approve": True, "revision": 1},  # it rejected first (revision 0)
    }
    rejected = report["rejectedRow"]
    assert rejected["status"] == "open"
    assert "1 of 2 approvals needed · 1 reject" in rejected["cells"][3]
    assert view["tally"] == {"approve": 2, "reject": 0, "members": 3, "needed": 2}
    assert view["actions"] == [plan["propose"]]
    assert node.rpc("coco_govMembers")[MEMBERS[0]]["data"] == plan["propose"]["args"]["data"]
    after = {m["address"]: m["cells"][3] for m in report["membersAfter"]}
    assert json.loads(after[MEMBERS[0]]) == plan["propose"]["args"]["data"]
    closing = node.rpc("coco_govBlock", [hex(view["closedHeight"])])
    ballots = [r for r in closing["records"] if r["type"] == "ballot"]
    assert [(r["signer"], r["message"]) for r in ballots] == [
        (MEMBERS[1], {"proposal": pid, "approve": True, "revision": 1})
    ]
    assert "accepted" in report["secondMessage"]

    withdrawn = node.rpc("coco_govProposal", [report["withdrawnId"]])
    assert withdrawn["status"] == "withdrawn" == report["withdrawnRow"]["status"]
    assert withdrawn["proposer"] == MEMBERS[0]
    assert withdrawn["actions"] == [plan["withdraw"]]
    assert str(withdrawn["closedHeight"]) == report["withdrawnRow"]["cells"][5]
    assert screenshot.stat().st_size > 0

    # an observer's page shows the same outcome, and offers no proposing or voting
    assert report["observerRow"]["cells"][4:6] == report["acceptedRow"]["cells"][4:6]
    assert report["observerMembers"] == report["membersAfter"]
    assert not report["observerFormShown"] and report["observerButtons"] == 0
    assert "takes no proposals or ballots" in report["observerOff"]
    assert "observer" in report["observerOff"]


def test_typed_data_is_what_the_core_signs(consortium: Cluster) -> None:
    """coco_govTypedData describes exactly typed.typed_data's message in this consortium's
    domain; a wallet's signature over it is accepted by coco_govSubmit."""
    node = consortium["node1"]
    dom = domain(node)
    member = ACCOUNTS[2]
    args = {"data": {"z": ["é", None, True], "a": 1}, "address": MEMBERS[2]}
    before = int(time.time())
    answer = node.rpc(
        "coco_govTypedData",
        [
            {
                "type": "proposal",
                "proposer": member.address,
                "actions": [{"kind": "set_member_data", "args": args}],
            }
        ],
    )
    created = answer["typedData"]["message"]["created"]
    assert before - 5 <= created <= int(time.time()) + 5  # the node's clock
    message = typed.Proposal(
        bytes.fromhex(MEMBERS[2][2:]), created, (typed.Action.make("set_member_data", args),)
    )
    assert answer["typedData"] == typed.typed_data(dom, message)
    assert answer["proposal"] == "0x" + typed.proposal_id(message).hex()

    signature = Account.sign_typed_data(member.private_key, full_message=answer["typedData"])
    submitted = node.rpc("coco_govSubmit", [answer["typedData"], "0x" + signature.signature.hex()])
    assert (submitted["proposal"], submitted["signer"]) == (answer["proposal"], MEMBERS[2])

    pid = bytes.fromhex(answer["proposal"][2:])
    two = (typed.Action.make("open_network"), typed.Action.make("rotate_ledger_secret"))
    cases: list[tuple[dict[str, Any], typed.Message]] = [
        (
            {"type": "ballot", "proposal": answer["proposal"], "approve": False, "revision": 3},
            typed.Ballot(pid, False, 3),
        ),
        (
            {"type": "ballot", "proposal": answer["proposal"], "approve": True},
            typed.Ballot(pid, True, 0),
        ),
        ({"type": "withdraw", "proposal": answer["proposal"]}, typed.Withdraw(pid)),
        (
            {
                "type": "proposal",
                "proposer": MEMBERS[0],
                "created": 5,
                "actions": [{"kind": "open_network"}, {"kind": "rotate_ledger_secret", "args": {}}],
            },
            typed.Proposal(bytes.fromhex(MEMBERS[0][2:]), 5, two),
        ),
    ]
    for description, want in cases:
        got = node.rpc("coco_govTypedData", [description])
        assert got["typedData"] == typed.typed_data(dom, want)
        wanted_id = typed.proposal_id(want) if isinstance(want, typed.Proposal) else pid
        assert got["proposal"] == "0x" + wanted_id.hex()


ADDR = "0x" + "ab" * 20
PID = "0x" + "cd" * 32


def prop(*actions: Any, **fields: Any) -> dict[str, Any]:
    return {"type": "proposal", "proposer": ADDR, "actions": list(actions), **fields}


def act(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, **fields}


def ballot(**fields: Any) -> dict[str, Any]:
    return {"type": "ballot", "proposal": PID, "approve": True, **fields}


TOO_LONG = {"address": ADDR, "data": "x" * 9000}  # args longer than 8 KiB


@pytest.mark.parametrize(
    ("description", "reason", "field"),
    [
        ("proposal", "bad-params", "message"),
        ({"type": "vote"}, "bad-params", "type"),
        ({"type": "ballot", "approve": True}, "bad-params", "proposal"),
        (ballot(approve="yes"), "bad-params", "approve"),
        (ballot(revision=-1), "bad-params", "revision"),
        (ballot(revision=2**64), "bad-params", "revision"),
        ({"type": "withdraw", "proposal": "0x12"}, "bad-params", "proposal"),
        ({"type": "withdraw", "proposal": PID, "extra": 1}, "bad-params", "extra"),
        (prop(act("open_network"), proposer="0xzz"), "bad-params", "proposer"),
        (prop(act("open_network"), created=True), "bad-params", "created"),
        (prop(), "bad-params", "actions"),
        (prop(*[act("open_network")] * 17), "bad-params", "actions"),
        (prop("open_network"), "bad-params", "actions[0]"),
        (prop(act("open_network", args=[])), "bad-params", "actions[0].args"),
        (prop(act("open_network", x=1)), "bad-params", "actions[0].x"),
        (prop(act("fly_to_moon")), "unknown-action", None),
        (prop(act("Open-Network")), "bad-action", None),
        (prop(act("trust_node", args={})), "bad-args", None),
        (prop(act("trust_node", args={"address": 1.5})), "bad-action", None),
        (prop(act("set_member_data", args=TOO_LONG)), "bad-action", None),
    ],
)
def test_typed_data_refusals(
    consortium: Cluster, description: Any, reason: str, field: str | None
) -> None:
    error = refusal(consortium["node1"], "coco_govTypedData", [description])
    assert error["code"] == -32602, error
    assert error["data"]["reason"] == reason, error
    if field is not None:
        assert error["data"]["field"] == field, error
        assert field.split(".")[-1].split("[")[0] in error["message"], error


def test_typed_data_arity(consortium: Cluster) -> None:
    node = consortium["node1"]
    assert refusal(node, "coco_govTypedData", [])["code"] == -32602
    assert (
        refusal(node, "coco_govTypedData", [{"type": "withdraw", "proposal": PID}, 1])["code"]
        == -32602
    )
    assert refusal(node, "coco_govActions", [1])["code"] == -32602


def test_actions_follow_the_constitution(consortium: Cluster) -> None:
    node = consortium["node1"]
    answer = node.rpc("coco_govActions")
    rules = node.rpc("coco_govConstitution")
    assert list(answer["actions"]) == list(KINDS)
    for kind, spec in answer["actions"].items():
        rule = {**rules["default"], **rules["actions"].get(kind, {})}
        assert (spec["threshold"], spec["openFor"]) == (rule["threshold"], rule["openFor"])
        assert spec["args"] == {
            name: {"type": typ, "required": needed} for name, (typ, needed) in KINDS[kind].items()
        }
    assert answer["actions"]["add_member"]["threshold"] == "two-thirds"
    assert answer["policies"]["privacy"] == ["open", "strict"]


def test_an_observer_reads_but_describes_nothing_to_sign(consortium: Cluster) -> None:
    """An observer serves the governance reads the page shows, and refuses the methods that
    serve only for submitting (docs/GOVERNANCE.md, "Over RPC")."""
    observer = consortium["observer1"]

    def same_members() -> bool:
        return bool(observer.rpc("coco_govMembers") == consortium["node1"].rpc("coco_govMembers"))

    consortium.wait_until(same_members, 60, "the observer's members, as node1's")
    for method, params in (
        ("coco_govActions", []),
        ("coco_govTypedData", [{"type": "withdraw", "proposal": PID}]),
        ("coco_govSubmit", ["{}"]),
    ):
        assert refusal(observer, method, params)["data"]["reason"] == "observer-node", method


def test_no_governance_on_the_dev_node(node: NodeProcess) -> None:
    from conftest import rpc

    for method, params in (
        ("coco_govActions", []),
        ("coco_govTypedData", [{"type": "withdraw", "proposal": PID}]),
    ):
        error = rpc(node.url, method, params)["error"]
        assert (error["code"], error["data"]["reason"]) == (-32000, "no-governance"), error
