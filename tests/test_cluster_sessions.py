"""Sessions and signed queries across a real consortium of four validator processes.

* A sign-out at one node ends the session at every node, promptly: the sealed revocation
  travels in a ``revoked`` frame (docs/PROTOCOL.md, "Session revocation, version 1"), and no
  copy of it on disk names the session.
* A node that was down during the sign-out refuses the token once it is back (a peer sends
  it every live revocation when its link comes up).
* A signed query (version 3) is bound to the node it was signed for: answered there once,
  and refused by every other node as ``wrong-node`` (captured from the SDK and replayed
  elsewhere); the SDK behind a URL that reaches another node than the one it attested signs
  again for that node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_harness import Cluster, ClusterNode, ClusterPool, lend_open, wait_until
from conftest import RecordingProvider, rpc
from eth_account import Account
from web3.providers.rpc import HTTPProvider

from gateway.client.session import sign_in, sign_out
from gateway.client.web3 import confidential_web3

# the shared open consortium may be made in a test's set-up, under the harness's deadlines
pytestmark = pytest.mark.timeout(600, func_only=True)

UNAUTHORIZED = -32002
PROMPTLY = 10.0  # seconds a sign-out may take to reach the other nodes (typically < 0.1)


@pytest.fixture
def consortium(cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The session's shared open consortium (four validators, a member, an observer),
    restored after each test."""
    yield from lend_open(cluster_pool, request)


@pytest.fixture
def cluster(consortium: Cluster) -> list[ClusterNode]:
    return [consortium[f"node{i}"] for i in range(1, 5)]


def wait_for(condition: Any, timeout: float, what: str, nodes: list[ClusterNode]) -> Any:
    return wait_until(condition, timeout, what)


def height(node: ClusterNode) -> int:
    return int(node.rpc("eth_blockNumber"), 16)


def personal(node: ClusterNode, token: str) -> str:
    return f"{node.url}/rpc/{token}"


def whoami(node: ClusterNode, token: str) -> tuple[str, Any]:
    """("ok", address) while the node takes the token, ("refused", message) once not."""
    answer = rpc(personal(node, token), "coco_whoami")
    if "result" in answer:
        return ("ok", answer["result"]["address"])
    assert answer["error"]["code"] == UNAUTHORIZED, answer
    return ("refused", answer["error"]["message"])


def signed_out(node: ClusterNode, token: str) -> bool:
    state, message = whoami(node, token)
    return state == "refused" and "signed out" in message


def test_a_sign_out_at_one_node_ends_the_session_at_every_node(
    cluster: list[ClusterNode],
) -> None:
    node1, node2, node3, node4 = cluster
    account = Account.create()
    session = sign_in(node1.url, account.key)
    token = session["token"]
    for node in cluster:  # the token key is the consortium's: one session everywhere
        assert whoami(node, token) == ("ok", account.address)

    assert sign_out(personal(node1, token)) is True
    started = time.monotonic()
    assert signed_out(node1, token)  # at once where it was signed out
    wait_for(lambda: signed_out(node3, token), PROMPTLY, "node3 refuses the token", cluster)
    took = time.monotonic() - started
    for node in (node2, node4):
        wait_for(lambda n=node: signed_out(n, token), PROMPTLY, f"{node.name} refuses", cluster)
    # signing out again anywhere: already over
    again = rpc(personal(node3, token), "coco_signOut")
    assert again["error"]["code"] == UNAUTHORIZED and "signed out" in again["error"]["message"]
    # a new sign-in of the same account is a new session, good everywhere
    fresh = sign_in(node2.url, account.key)["token"]
    assert all(whoami(n, fresh) == ("ok", account.address) for n in cluster)
    print(f"sign-out at node1 reached node3 within {took:.2f} s")

    # what the nodes keep on disk names no session: a blinded id, never the session id
    session_id = _session_id(token)
    for node in cluster:
        for path in node.data_dir.glob("ledger.sqlite*"):
            assert session_id not in path.read_bytes(), path
            assert session_id.hex().encode() not in path.read_bytes(), path


def test_a_node_down_during_the_sign_out_refuses_the_token_when_it_is_back(
    cluster: list[ClusterNode],
) -> None:
    node1, node2, node3, node4 = cluster
    account = Account.create()
    token = sign_in(node1.url, account.key)["token"]
    assert whoami(node4, token) == ("ok", account.address)
    # another session of another account, not signed out: it must keep working on node4
    other = Account.create()
    kept = sign_in(node3.url, other.key)["token"]

    assert node4.stop() == 0
    try:
        assert sign_out(personal(node2, token)) is True
        for node in (node1, node2, node3):
            wait_for(lambda n=node: signed_out(n, token), PROMPTLY, f"{node.name} refuses", cluster)
        # the chain goes on with three of four validators
        target = height(node1) + 2
        wait_for(lambda: height(node1) >= target, 60, "blocks without node4", cluster)
    finally:
        logged = len(node4.log())
        node4.start()
    wait_for(node4.answers, 120, "node4 answers again", cluster)
    wait_for(lambda: signed_out(node4, token), 60, "node4 refuses the token", cluster)
    assert whoami(node4, kept) == ("ok", other.address)
    # it learnt it from a peer when their link came up
    assert "session(s) signed out at another node" in node4.log()[logged:]


def test_a_signed_query_answers_only_at_the_node_it_was_signed_for(
    cluster: list[ClusterNode],
) -> None:
    node1, node2, node3, node4 = cluster
    reader = Account.create()
    wire = RecordingProvider(node1.url)
    w3 = confidential_web3(wire, reader, allow_virtual=True)
    call = {"from": reader.address, "to": reader.address, "data": "0x"}
    assert w3.eth.call(call) == b""  # a signed query (the SDK holds the reader's key)
    ((params, response),) = wire.sent("eth_call")
    assert "result" in response, response
    signed, block = params
    node1_address = identity(node1)
    assert signed["signedQuery"]["version"] == 3
    assert signed["signedQuery"]["leash"]["node"].lower() == node1_address

    # captured and replayed: the node it was for answered it already; every other refuses
    # (once it has the block the query names: node4 may still be catching up after its
    # restart in the test before)
    wait_for(lambda: all(height(n) >= int(block, 16) for n in cluster), 90, block, cluster)
    again = rpc(node1.url, "eth_call", [signed, block])
    assert again["error"]["data"]["reason"] == "replayed"
    for node in (node2, node3, node4):
        refused = rpc(node.url, "eth_call", [signed, block])
        assert refused["error"]["code"] == UNAUTHORIZED, refused
        assert refused["error"]["data"]["reason"] == "wrong-node", refused
        assert node1_address in refused["error"]["message"]
        assert identity(node) in refused["error"]["message"]
    # an older SDK's version 2 query: refused everywhere with a reason to upgrade
    v2_leash = {k: v for k, v in signed["signedQuery"]["leash"].items() if k != "node"}
    v2 = {**signed, "signedQuery": {**signed["signedQuery"], "version": 2, "leash": v2_leash}}
    for node in cluster:
        old = rpc(node.url, "eth_call", [v2, block])
        assert old["error"]["data"]["reason"] == "query-version", old
        assert "upgrade" in old["error"]["message"]


def test_the_sdk_signs_again_for_the_node_a_url_reaches_now(cluster: list[ClusterNode]) -> None:
    """Behind one URL that reaches node1 first and node2 afterwards (a load balancer), the
    SDK's first query is signed for node1, refused by node2 as wrong-node, and signed again
    for node2 after the SDK verified node2's attestation."""
    node1, node2 = cluster[0], cluster[1]
    reader = Account.create()
    wire = Switching(node1.url, node2.url)
    w3 = confidential_web3(wire, reader, allow_virtual=True)
    assert w3.eth.call({"from": reader.address, "to": reader.address, "data": "0x"}) == b""
    calls = wire.sent("eth_call")
    assert [c[1].get("error", {}).get("data", {}).get("reason") for c in calls] == [
        "wrong-node",
        None,
    ]
    nodes = [c[0][0]["signedQuery"]["leash"]["node"].lower() for c in calls]
    assert nodes == [identity(node1), identity(node2)]
    assert [m for m, _ in wire.routed if m == "coco_getAttestation"] == ["coco_getAttestation"] * 2


# ------------------------------------------------------------------ helpers


def identity(node: ClusterNode) -> str:
    """The attested identity address of ``node`` (lower-case 0x hex)."""
    return str(node.rpc("coco_getAttestation")["report"]["nodeAddress"]).lower()


def _session_id(token: str) -> bytes:
    import base64

    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return raw[29:45]


class Switching(RecordingProvider):
    """One URL in front of two nodes: the first attestation comes from ``first``, every
    other request goes to ``then`` (so a query signed for ``first`` reaches ``then``)."""

    def __init__(self, first: str, then: str) -> None:
        super().__init__(then)
        self.first = HTTPProvider(first, request_kwargs={"timeout": 60})
        self.routed: list[tuple[str, str]] = []

    def make_request(self, method: Any, params: Any) -> Any:
        if str(method) == "coco_getAttestation" and not self.routed:
            self.routed.append((str(method), "first"))
            response = self.first.make_request(method, params)
            self.log.append((str(method), params, response))
            return response
        self.routed.append((str(method), "then"))
        return super().make_request(method, params)
