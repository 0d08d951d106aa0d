"""Links on a governed chain (docs/PROTOCOL.md, "Node-to-node wire"; docs/GOVERNANCE.md,
"Joins"), on loopback: an unlisted node is accepted (it comes to join) but its link carries
only join frames until the governance state trusts it; a retired node is refused, listed or
not. The endpoints are tests/test_p2p_link.py's (real Links over TLS, test keys signing)."""

from __future__ import annotations

import asyncio

import pytest
from test_p2p_link import ADDRS, Endpoint, on_loop, until

from gateway.p2p import wire
from gateway.p2p.link import LinkRefused
from gateway.p2p.refusals import NOT_TRUSTED

STRANGER = ADDRS[3]  # not in the node list


@on_loop
async def test_an_unlisted_node_links_for_its_join_and_gets_the_rest_once_trusted() -> None:
    states: dict[bytes, str] = {}
    member = Endpoint(0)
    member.config.governed = states.get
    stranger = Endpoint(3)  # its own node list names the member: it checks it as usual
    await member.start()
    await stranger.start()
    try:
        peer = await stranger.links.connect(member.endpoint)
        run = asyncio.create_task(stranger.links._run(peer))
        await until(lambda: len(member.links.live()) == 1)
        seen = member.links.live()[0]
        assert seen.address == STRANGER and seen.name == "" and not seen.trusted
        # the member sends it only what a join needs
        assert not seen.send(wire.frame("qbft", m=b"q", s=None))
        assert not seen.send(wire.frame("txs", blobs=[b"sealed"]))
        assert not seen.send(wire.frame("getBlocks", start=1, count=1, public=False))
        assert seen.send(wire.frame("status", height=5, finalized=5, state="ready"))
        await stranger.frames("status")
        # what it sends beyond its join is dropped and counted; the link stays up
        peer.send(wire.frame("txs", blobs=[b"x"]))
        peer.send(wire.frame("join", request={"report": {}}))
        await member.frames("join")
        await until(lambda: member.links.refused.snapshot().get(NOT_TRUSTED, 0) == 1)
        assert [f["t"] for _, f in member.received] == ["join"]
        assert not seen.closed
        # trusted by vote (at the member's head): the same link carries everything
        states[STRANGER] = "trusted"
        assert seen.trusted
        peer.send(wire.frame("txs", blobs=[b"y"]))
        (txs,) = await member.frames("txs")
        assert txs["blobs"] == [b"y"]
        assert seen.send(wire.frame("qbft", m=b"q", s=None))
        await stranger.frames("qbft")
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    finally:
        await member.stop()
        await stranger.stop()


@pytest.mark.parametrize("who", [3, 1], ids=["unlisted", "listed"])
@on_loop
async def test_a_retired_node_is_refused_on_both_sides(who: int) -> None:
    states = {ADDRS[who]: "retired"}
    member = Endpoint(0)
    member.config.governed = states.get
    retired = Endpoint(who)
    await member.start()
    await retired.start()
    try:
        with pytest.raises(LinkRefused) as caught:
            await retired.links.connect(member.endpoint)
        assert caught.value.reason == "refused-by-peer" and "node-retired" in caught.value.message
        with pytest.raises(LinkRefused) as caught:
            await member.links.connect(retired.endpoint)
        assert caught.value.reason == "node-retired"
        assert member.links.live() == [] and retired.links.live() == []
    finally:
        await member.stop()
        await retired.stop()


@on_loop
async def test_without_governance_an_unlisted_node_is_still_refused() -> None:
    member = await Endpoint(0).start()
    stranger = await Endpoint(3).start()
    try:
        assert member.config.governed is None
        with pytest.raises(LinkRefused) as caught:
            await stranger.links.connect(member.endpoint)
        assert "unlisted-node" in caught.value.message
    finally:
        await member.stop()
        await stranger.stop()
