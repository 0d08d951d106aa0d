"""An observer knows its consortium's genesis before it meets any peer: it has it computed
from consortium.json by the enclave's code in a short-lived process (``GenesisOf``; no key,
no secret). Pointed at a node of another consortium (same chain id, another genesis), it is
refused, and refuses, as ``wrong-genesis``, the real cause, rather than ``unlisted-node``.
Real ``coco-gateway init`` and ``coco-gateway node`` processes (tests/cluster_harness.py).
"""

from __future__ import annotations

from pathlib import Path

from cluster_harness import Cluster, wait_until


def test_an_observer_pointed_at_another_consortium_is_refused_as_wrong_genesis(
    tmp_path: Path,
) -> None:
    ours = Cluster(tmp_path / "ours", validators=1, observers=1)
    theirs = Cluster(tmp_path / "theirs", validators=1)
    try:
        assert ours.chain_id == theirs.chain_id  # the genesis tells them apart, not the chain
        node = theirs["node1"]
        observer = ours["observer1"]
        ours.set_peers("observer1", [node.p2p])
        theirs.start(["node1"])
        ours.start(["observer1"])
        wait_until(
            lambda: "wrong-genesis" in observer.log() and "wrong-genesis" in node.log(),
            120,
            "the observer and the other consortium's node to log wrong-genesis",
        )
        assert "computed from consortium.json" in observer.log()
        for log in (observer.log(), node.log()):
            assert "unlisted-node" not in log, log[-3000:]
        assert observer.status()["peers"] == []
        genesis = node.rpc("eth_getBlockByNumber", ["0x0", False])["hash"]
        assert f"genesis 0x{genesis[2:]}" not in observer.log()
        for cluster in (ours, theirs):
            for member in cluster.running():
                assert member.stop() == 0
    except BaseException:
        print(ours.report())
        print(theirs.report())
        raise
    finally:
        ours.close()
        theirs.close()
