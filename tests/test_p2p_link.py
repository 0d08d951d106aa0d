"""The node-to-node wire (v2 frames) and links (TLS, channel binding, handshake, refusals,
queues) on loopback.

Two or three ``Links`` endpoints in one event loop, each with an aiohttp server over TLS on a
free 127.0.0.1 port, its own TLS certificate, and a test key standing in for the enclave's
SignLink.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import web
from conftest import TerminalProgress
from eth_keys import keys
from eth_utils import keccak

from gateway.consensus.qbft.messages import sign_digest
from gateway.p2p import tls, wire
from gateway.p2p.link import LinkConfig, LinkRefused, Links, Peer

GENESIS = keccak(b"test genesis")
CHAIN = 1337
KEYS = [keys.PrivateKey(keccak(b"p2p test key %d" % i)) for i in range(4)]
ADDRS = [k.public_key.to_canonical_address() for k in KEYS]
NODES = {ADDRS[i]: {"name": f"node{i + 1}", "role": "validator"} for i in range(3)}
_TLS_DIR = tempfile.TemporaryDirectory(prefix="p2p-tls-test-")


@functools.cache
def tls_identity(name: str) -> tls.TlsIdentity:
    """A TLS certificate per test node (made once per test run)."""
    return tls.make_identity(Path(_TLS_DIR.name) / name, name)


def signer(key: keys.PrivateKey) -> Any:
    async def sign(transcript: bytes) -> bytes:
        return sign_digest(key, wire.link_digest(transcript))

    return sign


class Endpoint:
    """One node's links, served on a loopback port; frames received are collected."""

    def __init__(
        self,
        index: int | None,
        *,
        nodes: dict[bytes, dict[str, Any]] | None = None,
        chain: int = CHAIN,
        queue_frames: int = 4096,
    ) -> None:
        role = "observer" if index is None else "validator"
        self.config = LinkConfig(
            chain_id=chain,
            genesis=GENESIS,
            role=role,
            address=None if index is None else ADDRS[index],
            sign=None if index is None else signer(KEYS[index]),
            tls=tls_identity(f"node{index}"),
            nodes=NODES if nodes is None else nodes,
            queue_frames=queue_frames,
        )
        self.received: list[tuple[Peer, dict[str, Any]]] = []
        self.arrived = asyncio.Event()
        self.links = Links(self.config, self.on_frame)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def on_frame(self, peer: Peer, frame: dict[str, Any]) -> None:
        self.received.append((peer, frame))
        self.arrived.set()

    async def start(self) -> Endpoint:
        app = web.Application()
        self.links.add_routes(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.links.server_ssl())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def frames(self, kind: str, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        async def wait() -> list[dict[str, Any]]:
            while True:
                got = [f for _, f in self.received if f["t"] == kind]
                if len(got) >= count:
                    return got
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def stop(self) -> None:
        await self.links.close()
        if self.runner is not None:
            await self.runner.cleanup()


async def until(condition: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def on_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own event loop (no pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return run


@contextlib.asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    a, b = await Endpoint(0).start(), await Endpoint(1).start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


# ------------------------------------------------------------------ wire


def test_frames_round_trip_and_schema() -> None:
    hello = wire.frame(
        "hello",
        v=2,
        chainId=CHAIN,
        genesis=GENESIS,
        role="validator",
        address=ADDRS[0],
        nonce=b"\x01" * 32,
    )
    assert wire.decode(wire.encode(hello)) == hello
    block = {
        "number": 3,
        "hash": b"\x02" * 32,
        "header": b"\xc0",
        "body": None,
        "round": 0,
        "proposer": ADDRS[0],
        "seals": [b"\x03" * 65],
        "gov": b'[{"version":1}]',
    }
    assert wire.decode(wire.encode(wire.frame("blocks", items=[block])))["items"] == [block]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1\xff\x00", "not-msgpack"),
        (msgpack.packb([1, 2]), "not-a-map"),
        (msgpack.packb({"t": "gossip"}), "unknown-type"),
        (msgpack.packb({"x": 1}), "unknown-type"),
        (msgpack.packb({"t": "auth"}), "missing-field"),
        (msgpack.packb({"t": "auth", "sig": b"\x00" * 64}), "bad-field"),
        (msgpack.packb({"t": "auth", "sig": "00" * 65}), "bad-field"),
        (msgpack.packb({"t": "auth", "sig": b"\x00" * 65, "more": 1}), "extra-field"),
        (msgpack.packb({"t": "getBlocks", "start": -1, "count": 1, "public": True}), "bad-field"),
        (msgpack.packb({"t": "getBlocks", "start": 0, "count": 65, "public": True}), "bad-field"),
        (msgpack.packb({"t": "getBlocks", "start": 0, "count": 1, "public": 1}), "bad-field"),
        (msgpack.packb({"t": "status", "height": True, "finalized": 0, "state": "x"}), "bad-field"),
        (msgpack.packb({"t": "txs", "blobs": [b"x"] * (wire.MAX_TXS + 1)}), "bad-field"),
        (msgpack.packb({"t": "blocks", "items": [{"number": 1}]}), "missing-field"),
        (msgpack.packb({1: 2}), "not-msgpack"),  # integer map keys are refused while decoding
        (b"\x00" * (wire.MAX_FRAME + 1), "frame-too-large"),
    ],
)
def test_bad_frames_have_reason_codes(raw: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode(raw)
    assert caught.value.reason == reason


def test_seen_is_bounded() -> None:
    seen = wire.Seen(limit=3)
    assert seen.add(b"a") and not seen.add(b"a")
    for key in (b"b", b"c", b"d"):
        assert seen.add(key)
    assert len(seen) == 3
    assert seen.add(b"a")  # forgotten: the oldest went first


def test_transcripts_differ_by_side_and_certificate() -> None:
    one = wire.transcript(GENESIS, b"c" * 32, b"s" * 32, b"x" * 32, ADDRS[0], "client")
    other = wire.transcript(GENESIS, b"c" * 32, b"s" * 32, b"x" * 32, ADDRS[0], "server")
    assert one != other and one.startswith(GENESIS) and one.endswith(b"client")
    relayed = wire.transcript(GENESIS, b"c" * 32, b"s" * 32, b"y" * 32, ADDRS[0], "client")
    assert relayed != one


def test_tls_files_are_made_once_with_a_private_key(tmp_path: Any) -> None:
    made = tls.ensure_identity(tmp_path / "data", "node1")
    assert stat.S_IMODE(made.key_path.stat().st_mode) == 0o600
    again = tls.ensure_identity(tmp_path / "data", "node1")
    assert again.fingerprint == made.fingerprint  # reopened, not remade
    other = tls.make_identity(tmp_path / "other", "node2")
    made.key_path.unlink()
    made.key_path.write_bytes(other.key_path.read_bytes())
    with pytest.raises(tls.TlsError, match="is not the key of"):
        tls.ensure_identity(tmp_path / "data", "node1")
    made.cert_path.unlink()  # only the key left: not silently replaced
    with pytest.raises(tls.TlsError, match="cannot read"):
        tls.ensure_identity(tmp_path / "data", "node1")


# ------------------------------------------------------------------ links


@on_loop
async def test_handshake_authenticates_both_sides() -> None:
    async with two_nodes() as pair:
        a, b = pair
        peer = await a.links.connect(b.endpoint)
        run = asyncio.create_task(a.links._run(peer))
        try:
            assert peer.address == ADDRS[1] and peer.role == "validator" and peer.name == "node2"
            await until(lambda: len(b.links.live()) == 1)
            assert b.links.live()[0].address == ADDRS[0]
            assert peer.send(wire.frame("status", height=5, finalized=5, state="ready"))
            (status,) = await b.frames("status")
            assert status["height"] == 5
            back = b.links.live()[0]
            assert back.send(wire.frame("qbft", m=b"message", s=None))
            (qbft,) = await a.frames("qbft")
            assert qbft["m"] == b"message"
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


@on_loop
async def test_unlisted_identity_is_refused_on_both_sides() -> None:
    listed = await Endpoint(0).start()
    stranger = await Endpoint(3, nodes=NODES).start()  # key 3 is not in NODES
    try:
        with pytest.raises(LinkRefused) as caught:
            await stranger.links.connect(listed.endpoint)
        assert caught.value.reason == "refused-by-peer"
        assert "unlisted-node" in caught.value.message
        assert listed.links.live() == []
        # and the other way round: a listed node refuses a server that is not listed
        with pytest.raises(LinkRefused) as caught:
            await listed.links.connect(stranger.endpoint)
        assert caught.value.reason == "unlisted-node"
        assert stranger.links.live() == []
    finally:
        await listed.stop()
        await stranger.stop()


@on_loop
async def test_an_observer_pointed_at_another_consortium_hears_wrong_genesis() -> None:
    """An observer (which computes its genesis from its terms) dialling a node of another
    consortium (same chain id, another genesis, an identity its node list does not name) is
    refused as ``wrong-genesis``, the real cause, not as ``unlisted-node``: by that node, and
    by its own check of that node's hello, where the genesis comes before the node list."""
    observer = await Endpoint(None).start()
    foreign_nodes = {ADDRS[3]: {"name": "theirs", "role": "validator"}}
    foreign = Endpoint(3, nodes=foreign_nodes)
    foreign.config.genesis = keccak(b"another consortium's genesis")
    await foreign.start()
    try:
        with pytest.raises(LinkRefused) as caught:
            await observer.links.connect(foreign.endpoint)
        assert caught.value.reason == "refused-by-peer"
        assert caught.value.message.startswith("wrong-genesis")
        assert "unlisted-node" not in caught.value.message
        hello = foreign.links._hello(b"\x01" * 32)
        with pytest.raises(LinkRefused) as own:
            observer.links._check_hello(hello)
        assert own.value.reason == "wrong-genesis"
        assert observer.links.live() == [] and foreign.links.live() == []
    finally:
        await observer.stop()
        await foreign.stop()


@on_loop
async def test_wrong_chain_is_refused() -> None:
    a = await Endpoint(0).start()
    b = await Endpoint(1, chain=CHAIN + 1).start()
    try:
        with pytest.raises(LinkRefused) as caught:
            await b.links.connect(a.endpoint)
        assert "wrong-chain" in caught.value.message
    finally:
        await a.stop()
        await b.stop()


@on_loop
async def test_forged_signature_is_refused() -> None:
    async with two_nodes() as pair:
        a, b = pair
        a.config.sign = signer(KEYS[2])  # claims node1's address, signs with node3's key
        with pytest.raises(LinkRefused) as caught:
            await a.links.connect(b.endpoint)
        assert "bad-signature" in caught.value.message
        assert b.links.live() == []


@on_loop
async def test_observer_gets_public_frames_only() -> None:
    async with two_nodes() as pair:
        a, _ = pair
        observer = await Endpoint(None).start()
        try:
            peer = await observer.links.connect(a.endpoint)
            run = asyncio.create_task(observer.links._run(peer))
            assert peer.address == ADDRS[0]  # the observer checked the validator's signature
            await until(lambda: len(a.links.live()) == 1)
            seen_by_a = a.links.live()[0]
            assert seen_by_a.role == "observer" and seen_by_a.address is None
            assert not seen_by_a.send(wire.frame("qbft", m=b"secret", s=None))
            assert not seen_by_a.send(wire.frame("txs", blobs=[b"sealed"]))
            block = {
                "number": 1,
                "hash": b"\x02" * 32,
                "header": b"\xc0",
                "body": b"sealed body",
                "round": 0,
                "proposer": ADDRS[0],
                "seals": [],
                "gov": None,
            }
            assert seen_by_a.send(wire.frame("blocks", items=[block]))
            (blocks,) = await observer.frames("blocks")
            assert blocks["items"][0]["body"] is None
            assert [f["t"] for _, f in observer.received] == ["blocks"]
            # an observer that sends a private frame loses its link
            assert not peer.send(wire.frame("txs", blobs=[b"x"]))  # its own side refuses too
            await peer.ws.send_bytes(wire.encode(wire.frame("txs", blobs=[b"x"])))
            await until(lambda: a.links.live() == [])
            assert all(f["t"] != "txs" for _, f in a.received)
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        finally:
            await observer.stop()


@on_loop
async def test_garbled_and_oversized_frames_drop_the_link() -> None:
    async with two_nodes() as pair:
        a, b = pair
        for garbage in (b"\xc1 not msgpack", b"\x00" * (wire.MAX_FRAME + 1)):
            peer = await a.links.connect(b.endpoint)
            run = asyncio.create_task(a.links._run(peer))
            await until(lambda: len(b.links.live()) == 1)
            with contextlib.suppress(ConnectionError):  # the oversized one: closed mid-send
                await peer.ws.send_bytes(garbage)
            await until(lambda r=run: b.links.live() == [] and r.done())  # type: ignore[misc]
            assert b.received == []
        refusals = [f for _, f in a.received if f["t"] == "refused"]
        assert [f["reason"] for f in refusals] == ["not-msgpack"]  # the oversized one: closed


@on_loop
async def test_duplicate_qbft_and_txs_are_delivered_once() -> None:
    async with two_nodes() as pair:
        a, b = pair
        peer = await a.links.connect(b.endpoint)
        run = asyncio.create_task(a.links._run(peer))
        try:
            for _ in range(3):
                peer.send(wire.frame("qbft", m=b"same", s=None))
                peer.send(wire.frame("txs", blobs=[b"tx"]))
            peer.send(wire.frame("status", height=1, finalized=1, state="ready"))
            await b.frames("status")
            assert [f["t"] for _, f in b.received] == ["qbft", "txs", "status"]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)


@on_loop
async def test_full_send_queue_drops_the_link() -> None:
    a = await Endpoint(0, queue_frames=8).start()
    b = await Endpoint(1).start()
    try:
        peer = await a.links.connect(b.endpoint)
        # not running the link: nothing drains the queue
        results = [peer.send(wire.frame("txs", blobs=[bytes([i])])) for i in range(10)]
        assert results == [True] * 8 + [False, False]
        assert peer.closed
    finally:
        await a.stop()
        await b.stop()


@on_loop
async def test_dialler_reconnects_after_the_peer_returns() -> None:
    a = await Endpoint(0).start()
    b = await Endpoint(1).start()
    port = b.port
    try:
        a.links.dial([b.endpoint])
        await until(lambda: len(a.links.live()) == 1)
        await b.stop()
        await until(lambda: a.links.live() == [])
        b = Endpoint(1)
        app = web.Application()
        b.links.add_routes(app)
        b.runner = web.AppRunner(app)
        await b.runner.setup()
        await web.TCPSite(b.runner, "127.0.0.1", port, ssl_context=b.links.server_ssl()).start()
        b.port = port
        await until(lambda: len(a.links.live()) == 1 and len(b.links.live()) == 1, timeout=20)
    finally:
        await a.stop()
        await b.stop()


def test_protocol_doc_worked_example() -> None:
    """docs/PROTOCOL.md, "Node-to-node wire": the transcript, signature and frames."""
    import re

    from conftest import REPO

    doc = (REPO / "docs" / "PROTOCOL.md").read_text()

    def hex_after(label: str) -> str:
        match = re.search(rf"^{label}\s+([0-9a-f]+)((?:\n\s+[0-9a-f]+)*)", doc, re.M)
        assert match, label
        return (match.group(1) + match.group(2)).replace("\n", "").replace(" ", "")

    key = keys.PrivateKey(
        bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    )
    address = key.public_key.to_canonical_address()
    certificate = bytes.fromhex(hex_after("servercert"))
    assert len(certificate) == 32
    transcript = wire.transcript(
        bytes(range(32)), b"\x11" * 32, b"\x22" * 32, certificate, address, "client"
    )
    assert hex_after("transcript") == transcript.hex()
    digest = wire.link_digest(transcript)
    assert hex_after("linkdigest") == digest.hex()
    assert hex_after("linksig") == sign_digest(key, digest).hex()
    status = wire.frame("status", height=640, finalized=640, state="ready")
    assert hex_after("statusframe") == wire.encode(status).hex()
    get = wire.frame("getBlocks", start=641, count=64, public=True)
    assert hex_after("getblocksframe") == wire.encode(get).hex()


@on_loop
async def test_two_links_between_two_nodes_count_once() -> None:
    async with two_nodes() as pair:
        a, b = pair
        a.links.dial([b.endpoint])
        b.links.dial([a.endpoint])
        await until(lambda: len(a.links.live()) == 2 and len(b.links.live()) == 2)
        assert [p["name"] for p in a.links.summary()] == ["node2"]
        assert a.links.summary()[0]["endpoint"] == b.endpoint  # the dialled one: with its port
        # a broadcast goes once to each node, not once per link
        assert a.links.broadcast(wire.frame("status", height=1, finalized=1, state="x")) == 1


def test_catch_up_progress_lines_and_bar(terminal_progress: TerminalProgress) -> None:
    progress, terminal = terminal_progress.start(), terminal_progress.terminal
    for done in (64, 128, 200):
        progress.update(done, 200, 1)
    assert "catch-up [" in terminal.getvalue() and terminal.getvalue().endswith("200/200 blocks\n")
    lines = terminal_progress.lines()
    assert lines[0] == "catch-up: 64/200 blocks" and lines[-1] == "catch-up: 200/200 blocks"
    terminal_progress.caplog.clear()
    progress.update(5, 5, 4)  # a block or two behind: neither a bar nor a line
    assert terminal_progress.lines() == []


@on_loop
async def test_an_observer_pins_the_genesis_a_listed_node_signed() -> None:
    async with two_nodes() as pair:
        a, _ = pair
        observer = await Endpoint(None).start()
        observer.config.genesis = None  # a new observer: it learns the genesis
        try:
            peer = await observer.links.connect(a.endpoint)
            assert observer.config.genesis == GENESIS and peer.address == ADDRS[0]
            await peer.ws.close()
            # once pinned, a node of another genesis is refused
            other = Endpoint(1)
            other.config.genesis = keccak(b"another chain")
            await other.start()
            try:
                with pytest.raises(LinkRefused) as caught:
                    await observer.links.connect(other.endpoint)
                assert "wrong-genesis" in caught.value.message
            finally:
                await other.stop()
        finally:
            await observer.stop()


# ------------------------------------------------------------------ TLS and channel binding


class TlsRelay:
    """A man in the middle that terminates TLS with its own certificate and opens its own
    TLS connection to the target, passing every byte through unchanged (what a relay on the
    path could do with plain ws:// links and a signed-but-unbound handshake)."""

    def __init__(self, target_port: int, certificate: tls.TlsIdentity | None = None) -> None:
        self.target_port = target_port
        self.certificate = certificate or tls_identity("relay")
        self.server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TlsRelay:
        context = self.certificate.server_context()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port, ssl=tls.client_context()
        )

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@on_loop
async def test_links_are_tls_bound_to_the_server_certificate() -> None:
    async with two_nodes() as pair:
        a, b = pair
        peer = await a.links.connect(b.endpoint)
        try:
            ssl_object = peer.ws.get_extra_info("ssl_object")
            assert ssl_object is not None and ssl_object.version() == "TLSv1.3"
            assert tls.peer_fingerprint(ssl_object) == b.config.tls.fingerprint
        finally:
            await peer.ws.close()


@on_loop
async def test_a_tls_terminating_relay_is_refused_on_both_sides() -> None:
    async with two_nodes() as pair:
        a, b = pair
        relay = await TlsRelay(b.port).start()
        try:
            with pytest.raises(LinkRefused) as caught:
                await a.links.connect(relay.endpoint)
            # the server found the client's signature bound to the relay's certificate, and
            # the client is told so (the server never signs for it)
            assert caught.value.reason == "refused-by-peer"
            assert caught.value.message.startswith("channel-binding-mismatch: ")
            relay_cert = tls_identity("relay").fingerprint.hex()
            assert relay_cert in caught.value.message
            assert b.links.refusals[-1] == ("server", "127.0.0.1", "channel-binding-mismatch")
            assert a.links.live() == [] and b.links.live() == []
            assert relay.connections == 1
            # the dialler keeps trying, and says why it is refused
            a.links.dial([relay.endpoint])
            await until(
                lambda: "channel-binding-mismatch" in a.links.last_refusal.get(relay.endpoint, "")
            )
            assert a.links.live() == [] and b.links.live() == []
            assert a.received == [] and b.received == []
        finally:
            await relay.stop()


@on_loop
async def test_a_relay_with_the_servers_own_tls_key_is_not_detected() -> None:
    """The binding's limit, and how fault tests may still sit between two nodes: TLS ends in
    the host, so whoever holds the listener's TLS key files (its host) can relay its links."""
    async with two_nodes() as pair:
        a, b = pair
        relay = await TlsRelay(b.port, certificate=b.config.tls).start()
        try:
            peer = await a.links.connect(relay.endpoint)
            run = asyncio.create_task(a.links._run(peer))
            assert peer.address == ADDRS[1]
            await until(lambda: len(b.links.live()) == 1)
            assert peer.send(wire.frame("status", height=7, finalized=7, state="ready"))
            (status,) = await b.frames("status")
            assert status["height"] == 7 and relay.connections == 1
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        finally:
            await relay.stop()


@on_loop
async def test_an_observer_links_over_tls_and_refuses_a_relay() -> None:
    async with two_nodes() as pair:
        a, _ = pair
        observer = await Endpoint(None).start()
        relay = await TlsRelay(a.port).start()
        try:
            peer = await observer.links.connect(a.endpoint)
            assert peer.ws.get_extra_info("ssl_object").version() == "TLSv1.3"
            assert peer.address == ADDRS[0]
            await peer.ws.close()
            # the validator's signature binds its certificate, which the observer did not see:
            # the observer's own check refuses it (the validator accepts an observer unsigned)
            with pytest.raises(LinkRefused) as caught:
                await observer.links.connect(relay.endpoint)
            assert caught.value.reason == "channel-binding-mismatch"
            assert a.config.tls.fingerprint.hex() in caught.value.message
            assert tls_identity("relay").fingerprint.hex() in caught.value.message
            await until(lambda: a.links.live() == [])  # told, and dropped by the validator
            assert observer.links.live() == []
        finally:
            await relay.stop()
            await observer.stop()


@on_loop
async def test_plain_websocket_cannot_reach_a_tls_listener() -> None:
    import aiohttp

    async with two_nodes() as pair:
        _, b = pair
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await session.ws_connect(f"ws://{b.endpoint}{wire.PATH}")
        assert b.links.live() == []


@on_loop
async def test_a_listener_served_without_tls_refuses_every_link() -> None:
    import aiohttp

    b = Endpoint(1)
    app = web.Application()
    b.links.add_routes(app)
    b.runner = web.AppRunner(app)
    await b.runner.setup()
    site = web.TCPSite(b.runner, "127.0.0.1", 0)  # a mistake: no ssl_context
    await site.start()
    b.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://{b.endpoint}{wire.PATH}")
            msg = await ws.receive()
            assert wire.decode(msg.data) == {
                "t": "refused",
                "reason": "not-tls",
                "message": "links are TLS connections (/p2p/v2 over wss)",
            }
            await ws.close()
        assert b.links.refusals[-1][2] == "not-tls" and b.links.live() == []
    finally:
        await b.stop()
