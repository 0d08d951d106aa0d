"""The fault tools themselves (tests/fault_proxy.py), against local echo servers: the TCP
proxy's pass, delay, partition (refuse and black hole) and heal, and the p2p relay's frame
changes (bad body, bad seals, rewritten sidecar, replay) on the v2 wire over TLS, served with
the fronted server's own certificate."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_keys import keys
from fault_proxy import (
    DOWNSTREAM,
    NEW_BLOCK,
    PROPOSAL,
    UPSTREAM,
    FaultProxy,
    P2pRelay,
    _LoopThread,
    bad_body_rule,
    bad_seals_rule,
    decode_frame,
    drop_rule,
    encode_frame,
    exported_block_digest,
    qbft_code,
    sidecar_rule,
)

from gateway.consensus.qbft.messages import (
    Block,
    FinalizedBlock,
    NewBlock,
    Prepare,
    Proposal,
    SignedPayload,
    UnsignedPrepare,
    UnsignedProposal,
    commit_seal_digest,
    decode_message,
    encode_message,
    recover_signer,
    sign_digest,
)
from gateway.p2p import tls, wire

VALIDATOR_KEYS = [keys.PrivateKey((i + 1).to_bytes(32, "big")) for i in range(4)]
VALIDATORS = {k.public_key.to_canonical_address() for k in VALIDATOR_KEYS}


# --------------------------------------------------------------------------- TCP echo


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[str]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: str) -> Iterator[FaultProxy]:
    with FaultProxy(echo, name="test-proxy") as p:
        yield p


def connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def is_cut(s: socket.socket, timeout: float = 5.0) -> bool:
    """True when the connection is closed or reset within ``timeout`` (no data)."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def silent_for(s: socket.socket, seconds: float) -> bool:
    """True when nothing arrives, and the connection stays open, for ``seconds``."""
    s.settimeout(seconds)
    try:
        s.recv(1)
    except TimeoutError:
        return True
    except OSError:
        return False
    return False


def test_passes_bytes_both_ways(proxy: FaultProxy) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB: several chunks each way
    with connect(proxy) as s:
        s.sendall(data)
        assert recv_exactly(s, len(data)) == data
    assert proxy.accepted == 1
    assert proxy.bytes[UPSTREAM] == proxy.bytes[DOWNSTREAM] == len(data)


def test_delay_applies_each_way_and_keeps_order(proxy: FaultProxy) -> None:
    with connect(proxy) as s:
        s.sendall(b"warm")
        assert recv_exactly(s, 4) == b"warm"
        proxy.delay(0.25)
        t = time.monotonic()
        for i in range(5):
            s.sendall(b"%d" % i)
        assert recv_exactly(s, 5) == b"01234"
        took = time.monotonic() - t
        assert 0.5 <= took < 3.0, f"a delayed round trip took {took:.2f} s"
        proxy.delay(0)
        t = time.monotonic()
        s.sendall(b"fast")
        assert recv_exactly(s, 4) == b"fast"
        assert time.monotonic() - t < 0.25
    with pytest.raises(ValueError):
        proxy.delay(-1)


def test_partition_refuse_cuts_open_links_and_new_ones_until_healed(proxy: FaultProxy) -> None:
    with connect(proxy) as before:
        before.sendall(b"x")
        assert recv_exactly(before, 1) == b"x"
        proxy.partition("refuse")
        assert is_cut(before), "an open connection survived the partition"
    assert proxy.open_connections() == 0
    with connect(proxy) as during:  # the listener stays, the connection is reset at once
        assert is_cut(during), "a new connection got through the partition"
    assert proxy.refused >= 1
    proxy.heal()
    with connect(proxy) as after:
        after.sendall(b"healed")
        assert recv_exactly(after, 6) == b"healed"


def test_blackhole_holds_bytes_and_delivers_them_on_heal(proxy: FaultProxy) -> None:
    with connect(proxy) as open_link:
        open_link.sendall(b"a")
        assert recv_exactly(open_link, 1) == b"a"
        proxy.partition("blackhole")
        open_link.sendall(b"held")
        with connect(proxy) as new_link:  # accepted, but it reaches nobody yet
            new_link.sendall(b"new")
            assert silent_for(open_link, 0.5), "bytes crossed a black hole"
            assert silent_for(new_link, 0.1)
            proxy.heal()
            open_link.settimeout(5)
            new_link.settimeout(5)
            assert recv_exactly(open_link, 4) == b"held"
            assert recv_exactly(new_link, 3) == b"new"


def test_cut_resets_once_and_upstream_down_closes(proxy: FaultProxy, echo: str) -> None:
    with connect(proxy) as s:
        s.sendall(b"1")
        assert recv_exactly(s, 1) == b"1"
        proxy.cut()
        assert is_cut(s)
    with connect(proxy) as s:  # mode unchanged: passes again
        s.sendall(b"2")
        assert recv_exactly(s, 1) == b"2"
    with pytest.raises(ValueError):
        proxy.partition("sideways")
    # a proxy in front of nothing: the dialler sees its connection closed, not a hang
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{spare.getsockname()[1]}"
    with FaultProxy(dead) as nowhere, connect(nowhere) as s:
        assert is_cut(s)


# --------------------------------------------------------------------------- WS echo


class WsEcho:
    """An aiohttp server at /p2p/v2 over TLS (its own certificate, ``identity``) that echoes
    every frame and keeps what it received."""

    def __init__(self, identity: tls.TlsIdentity) -> None:
        self.identity = identity
        self.received: list[bytes] = []
        self._lt = _LoopThread("ws-echo")
        self.port = self._lt.call(self._start())

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_get(wire.PATH, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.identity.server_context())
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.received.append(bytes(msg.data))
                await ws.send_bytes(msg.data)
        return ws

    def close(self) -> None:
        self._lt.call(self._runner.cleanup())
        self._lt.close()


class WsClient:
    """A blocking WebSocket client (wss, the links' client TLS context) for the tests, on its
    own loop thread; ``binding`` is the SHA-256 of the certificate the server presented."""

    def __init__(self, url: str) -> None:
        self._lt = _LoopThread("ws-client")
        try:
            self._lt.call(self._open(url))
        except BaseException:
            self._lt.close()
            raise

    async def _open(self, url: str) -> None:
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(url, max_msg_size=0, ssl=tls.client_context())
        except BaseException:
            await self._session.close()
            raise
        self.binding = tls.peer_fingerprint(self._ws.get_extra_info("ssl_object"))

    def send(self, frame: dict[str, Any]) -> None:
        self._lt.call(self._ws.send_bytes(encode_frame(frame)))

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = self._lt.call(self._ws.receive(timeout), timeout + 1)
        assert msg.type == aiohttp.WSMsgType.BINARY, f"expected a frame, got {msg.type!r}"
        frame = decode_frame(bytes(msg.data))
        assert frame is not None
        return frame

    def closed_within(self, timeout: float) -> bool:
        async def wait() -> bool:
            try:
                msg = await self._ws.receive(timeout)
            except TimeoutError:
                return False
            return msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            )

        return self._lt.call(wait(), timeout + 1)

    def close(self) -> None:
        async def shut() -> None:
            await self._ws.close()
            await self._session.close()

        self._lt.call(shut())
        self._lt.close()


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A data directory holding the echo server's TLS key and certificate."""
    tls.make_identity(tmp_path / "server", "echo")
    return tmp_path / "server"


@pytest.fixture
def relayed(server_dir: Path) -> Iterator[tuple[P2pRelay, WsClient, WsEcho]]:
    server = WsEcho(tls.load_identity(server_dir))
    relay = P2pRelay(f"127.0.0.1:{server.port}", tls=server_dir).start()
    client = WsClient(f"wss://{relay.address}{wire.PATH}")
    yield relay, client, server
    client.close()
    relay.stop()
    server.close()


def proposal_frame(height: int = 5, sidecar: bytes = b"\x01" + bytes(range(100))) -> dict:
    block = Block(height, VALIDATOR_KEYS[0].public_key.to_canonical_address(), b"header-rlp")
    signed = SignedPayload.sign(UnsignedProposal(height, 0, block.digest), VALIDATOR_KEYS[0])
    return {"t": "qbft", "m": encode_message(Proposal(signed, block)), "s": sidecar}


def prepare_frame(height: int = 5) -> dict:
    digest = b"\x11" * 32
    signed = SignedPayload.sign(UnsignedPrepare(height, 0, digest), VALIDATOR_KEYS[1])
    return {"t": "qbft", "m": encode_message(Prepare(signed)), "s": None}


def finalized(height: int = 6, round_: int = 1) -> tuple[Block, list[bytes]]:
    block = Block(height, VALIDATOR_KEYS[1].public_key.to_canonical_address(), b"hdr%d" % height)
    seals = [sign_digest(k, commit_seal_digest(block.digest, round_)) for k in VALIDATOR_KEYS[:3]]
    return block, seals


def seal_signers(digest: bytes, round_: int, seals: list[bytes]) -> set[bytes | None]:
    return {recover_signer(commit_seal_digest(digest, round_), bytes(s)) for s in seals}


def test_relay_passes_frames_unchanged_and_records_them(relayed: Any) -> None:
    relay, client, server = relayed
    frames = [proposal_frame(), prepare_frame(), {"t": "status", "height": 3, "finalized": 3}]
    for f in frames:
        client.send(f)
    assert [client.recv() for _ in frames] == frames
    assert [decode_frame(b) for b in server.received] == frames
    assert qbft_code(frames[0]) == PROPOSAL and qbft_code(frames[2]) is None
    assert relay.frames(UPSTREAM) == frames and relay.frames(DOWNSTREAM) == frames
    assert relay.counts["upstream:qbft"] == 2 and relay.connections == 1


def test_relay_presents_the_fronted_servers_certificate(relayed: Any, server_dir: Path) -> None:
    """The dialler sees the certificate of the server behind the relay (so the binding in
    its signature matches), not one of the relay's own: the relay holds that server's key."""
    relay, client, server = relayed
    assert client.binding == server.identity.fingerprint == relay.identity.fingerprint
    assert tls.load_identity(server_dir).fingerprint == client.binding
    assert relay.PATH == wire.PATH == "/p2p/v2"
    with pytest.raises(aiohttp.ClientError):  # plain ws:// to a TLS listener gets nowhere
        WsClient(f"ws://{relay.address}{wire.PATH}")


def test_relay_passes_hello_and_auth_untouched_by_rules(relayed: Any) -> None:
    """A rule that matches every frame still never sees the handshake: ``auth`` (with its
    ``binding``) and ``hello`` go through as they are; the hello's version is noted."""
    relay, client, server = relayed
    rule = relay.add_rule(drop_rule(lambda _f: True, UPSTREAM, limit=None))
    hello = {
        "t": "hello",
        "v": wire.WIRE_VERSION,
        "chainId": 1337,
        "genesis": b"\x01" * 32,
        "role": "validator",
        "address": b"\x02" * 20,
        "nonce": b"\x03" * 32,
    }
    auth = {"t": "auth", "sig": b"\x04" * 65, "binding": client.binding}
    for f in (hello, auth):
        wire.encode(f)  # both are valid v2 frames
        client.send(f)
    assert [client.recv(), client.recv()] == [hello, auth]
    assert [decode_frame(b) for b in server.received] == [hello, auth]
    assert relay.hellos(UPSTREAM) == [hello] and relay.hellos(DOWNSTREAM) == [hello]
    assert relay.version_mismatches == []
    client.send(prepare_frame())  # the rule does apply to what follows the handshake
    client.send({**hello, "v": 1})
    assert client.recv() == {**hello, "v": 1}
    assert rule.applied == 1 and relay.version_mismatches == [{**hello, "v": 1}] * 2


def test_relay_flips_bytes_in_a_proposal_sidecar_once(relayed: Any) -> None:
    relay, client, _server = relayed
    rule = relay.add_rule(bad_body_rule(UPSTREAM, limit=1))
    client.send(prepare_frame())  # not a proposal: untouched
    assert client.recv() == prepare_frame()
    original = proposal_frame()
    client.send(original)
    changed = client.recv()
    assert changed["m"] == original["m"], "the signed message must stay as it was"
    assert len(changed["s"]) == len(original["s"]) and changed["s"] != original["s"]
    assert changed["s"][0] == original["s"][0], "the body's version byte is kept"
    client.send(original)  # the rule is spent
    assert client.recv() == original
    assert rule.applied == 1 and relay.errors == []


def test_relay_replaces_commit_seals_in_new_block_and_blocks_frames(relayed: Any) -> None:
    relay, client, _server = relayed
    block, seals = finalized()
    new_block = {
        "t": "qbft",
        "m": encode_message(NewBlock(FinalizedBlock(block, 1, tuple(seals)))),
        "s": None,
    }
    item = {
        "number": block.height,
        "hash": b"\x22" * 32,
        "header": block.payload,
        "body": b"\x01sealed",
        "round": 1,
        "proposer": block.proposer,
        "seals": seals,
        "gov": None,
    }
    assert exported_block_digest(item) == block.digest
    assert seal_signers(block.digest, 1, seals) <= VALIDATORS

    relay.add_rule(bad_seals_rule("outsider", UPSTREAM, limit=2))
    client.send(new_block)
    forged = decode_message(client.recv()["m"])
    assert isinstance(forged, NewBlock)
    assert forged.finalized.block == block and forged.finalized.round == 1
    signers = seal_signers(block.digest, 1, list(forged.finalized.commit_seals))
    assert len(signers) == 3 and None not in signers and not signers & VALIDATORS

    client.send({"t": "blocks", "items": [item]})
    got = client.recv()["items"][0]
    assert {k: v for k, v in got.items() if k != "seals"} == {
        k: v for k, v in item.items() if k != "seals"
    }
    signers = seal_signers(block.digest, 1, got["seals"])
    assert None not in signers and not signers & VALIDATORS

    relay.add_rule(bad_seals_rule("too-few", UPSTREAM, limit=1))
    client.send({"t": "blocks", "items": [item]})
    assert client.recv()["items"][0]["seals"] == seals[:1]
    relay.add_rule(bad_seals_rule("garbage", UPSTREAM, limit=1))
    client.send({"t": "blocks", "items": [item]})
    garbage = client.recv()["items"][0]["seals"]
    assert len(garbage) == 3 and not seal_signers(block.digest, 1, garbage) & VALIDATORS


def test_relay_rewrites_a_sidecar_and_drops_frames(relayed: Any) -> None:
    relay, client, _server = relayed
    relay.add_rule(sidecar_rule(lambda frame, s: s[:1] + b"other diff", UPSTREAM))
    client.send(proposal_frame())
    assert client.recv()["s"] == b"\x01other diff"
    relay.add_rule(drop_rule(lambda f: f.get("t") == "status", UPSTREAM, limit=1))
    client.send({"t": "status", "height": 1})  # dropped
    client.send({"t": "status", "height": 2})
    assert client.recv() == {"t": "status", "height": 2}


def test_relay_replays_earlier_frames(relayed: Any) -> None:
    relay, client, server = relayed
    old = [proposal_frame(height=h) for h in (1, 2, 3)]
    for f in old:
        client.send(f)
    assert [client.recv() for _ in old] == old
    client.send(prepare_frame(height=9))
    assert client.recv() == prepare_frame(height=9)
    count = relay.replay(UPSTREAM, lambda f: qbft_code(f) == PROPOSAL)
    assert count == 3
    assert [client.recv() for _ in old] == old  # the echo server got them a second time
    assert [decode_frame(b) for b in server.received[-3:]] == old
    assert qbft_code(prepare_frame()) != NEW_BLOCK


def test_relay_partition_closes_links_and_refuses_until_healed(relayed: Any) -> None:
    relay, client, _server = relayed
    client.send(prepare_frame())
    assert client.recv() == prepare_frame()
    relay.partition()
    assert client.closed_within(5)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        WsClient(f"wss://{relay.address}{wire.PATH}")
    relay.heal()
    again = WsClient(f"wss://{relay.address}{wire.PATH}")
    try:
        again.send(prepare_frame(7))
        assert again.recv() == prepare_frame(7)
    finally:
        again.close()
