"""Node-to-node links: the ``/p2p/v2`` WebSocket route over TLS, the dialler, the handshake.

A link is one WebSocket over TLS 1.3 (``wss://``) between two nodes. After the handshake
(docs/PROTOCOL.md, "Node-to-node wire") each side knows the other's role and, for a validator
or member, its node address, proved by a signature its enclave made over the handshake
transcript and checked against consortium.json's node list. The transcript includes the
SHA-256 of the TLS server's certificate as each side saw it (channel binding,
``gateway.p2p.tls``): a relay that terminates TLS makes the two sides see different
certificates, and the link is refused (``channel-binding-mismatch``). Observers connect
without a signature and are served public frames only. Each link has a bounded send queue
drained by its own writer task: a peer that stops reading fills it, and the link is dropped
(and logged) rather than the node's memory growing. Diallers reconnect with a capped
exponential backoff. A QBFT message or transaction batch this node already had (on any link)
is not passed on again: it is refused as ``replayed-message``, counted and logged
rate-limited (``Links.refused``, ``gateway.p2p.refusals``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from gateway.consensus.qbft import recover_signer
from gateway.p2p import wire
from gateway.p2p.refusals import NOT_TRUSTED, REPLAYED, RefusalLog
from gateway.p2p.tls import TlsIdentity, client_context, peer_fingerprint

log = logging.getLogger("gateway.p2p")

HANDSHAKE_SECONDS = 10.0
QUEUE_FRAMES = 4096
QUEUE_BYTES = 64 * 1024 * 1024
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 10.0
UNKNOWN_GENESIS = bytes(32)  # an observer's hello before it has pinned the genesis
# what a node that is not (yet) trusted may exchange: its join and its state
JOIN_FRAMES = frozenset({"join", "joined", "refused", "status"})

Signer = Callable[[bytes], Awaitable[bytes]]


class LinkRefused(Exception):
    """The handshake failed; ``reason`` is a stable code, told to the other side too."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class LinkConfig:
    """Who this node is on the wire, and whom it accepts."""

    chain_id: int
    genesis: bytes | None  # None: an observer that learns it from its first member peer
    role: str  # validator | member | observer
    address: bytes | None  # None for an observer
    sign: Signer | None  # SignLink in the enclave; None for an observer
    tls: TlsIdentity  # this node's TLS certificate and key (the host holds them)
    # consortium.json "nodes": address -> {"name", "role", ...}
    nodes: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    # a governed chain (terms with members): a node's state in the governance state at this
    # node's head ("pending", "trusted", "retired"), None when the state does not know it.
    # None: no governance, only the node list counts (docs/GOVERNANCE.md, "Joins")
    governed: Callable[[bytes], str | None] | None = None
    queue_frames: int = QUEUE_FRAMES
    queue_bytes: int = QUEUE_BYTES


class Peer:
    """One live, authenticated link."""

    _ids = itertools.count(1)

    def __init__(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        side: str,
        endpoint: str,
        role: str,
        address: bytes | None,
        name: str,
        config: LinkConfig,
    ) -> None:
        self.id = next(Peer._ids)
        self.ws = ws
        self.side = side  # our side of the link: "client" (we dialled) or "server"
        self.endpoint = endpoint
        self.role = role
        self.address = address
        self.name = name
        self.public = role == "observer" or config.role == "observer"
        self._config = config
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self.closed = False
        self.height = -1  # the peer's last status
        self.finalized = -1
        self.state = ""
        self.writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        who = self.name or (f"0x{self.address.hex()}" if self.address else "observer")
        return f"{who} ({self.role}, {self.endpoint})"

    @property
    def trusted(self) -> bool:
        """A validator or member listed in consortium.json, or one the governance state
        trusts; an unlisted node that is pending (or unknown: it comes to join) is not."""
        if self.address is None or self.address in self._config.nodes:
            return True
        governed = self._config.governed
        return governed is not None and governed(self.address) == "trusted"

    def allows(self, kind: str) -> bool:
        """Whether a frame of this type may cross this link."""
        if self.public and kind not in wire.PUBLIC_FRAMES:
            return False
        if kind not in JOIN_FRAMES and not self.trusted:
            return False
        if kind == "qbft":
            return self.role == "validator" and self._config.role == "validator"
        return True

    def send(self, frame: dict[str, Any]) -> bool:
        """Queue a frame; False if this link does not carry it or is closed. A full queue
        drops the link (the peer is not reading)."""
        if self.closed or not self.allows(frame["t"]):
            return False
        if frame["t"] == "blocks" and self.public:
            frame = {**frame, "items": [wire.public_block(b) for b in frame["items"]]}
        try:
            payload = wire.encode(frame)
        except (wire.WireError, TypeError, ValueError) as exc:
            log.error("not sending a malformed %s frame to %r: %s", frame["t"], self, exc)
            return False
        if (
            len(self._queue) >= self._config.queue_frames
            or self._queued_bytes + len(payload) > self._config.queue_bytes
        ):
            log.warning(
                "send queue to %r is full (%d frames, %d bytes): dropping the link",
                self,
                len(self._queue),
                self._queued_bytes,
            )
            self.abort()
            return False
        self._queue.append(payload)
        self._queued_bytes += len(payload)
        self._ready.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def write_loop(self) -> None:
        try:
            while not self.closed:
                await self._ready.wait()
                while self._queue and not self.closed:
                    payload = self._queue.popleft()
                    self._queued_bytes -= len(payload)
                    await self.ws.send_bytes(payload)
                self._ready.clear()
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            self.abort()

    def abort(self) -> None:
        """Close the link soon (from any task, without waiting)."""
        if not self.closed:
            self.closed = True
            self._ready.set()
            asyncio.get_running_loop().create_task(self.ws.close())


FrameHandler = Callable[[Peer, dict[str, Any]], Awaitable[None]]
PeerHandler = Callable[[Peer], Awaitable[None]]


async def _noop_peer(peer: Peer) -> None:
    return None


class Links:
    """Every link of this node: the server route, the diallers, broadcast and dedupe."""

    def __init__(
        self,
        config: LinkConfig,
        on_frame: FrameHandler,
        on_up: PeerHandler = _noop_peer,
        on_down: PeerHandler = _noop_peer,
    ) -> None:
        self.config = config
        self.on_frame = on_frame
        self.on_up = on_up
        self.on_down = on_down
        self.peers: dict[int, Peer] = {}
        self.seen = wire.Seen()
        # frames refused after the handshake, per reason (coco_nodeStatus "refused")
        self.refused = RefusalLog(log)
        self.last_refusal: dict[str, str] = {}  # endpoint -> "reason: message"
        # the latest refused handshakes, either side: (our side, endpoint, reason)
        self.refusals: deque[tuple[str, str, str]] = deque(maxlen=64)
        self._client_ssl = client_context()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ------------------------------------------------------------------ public surface

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(wire.PATH, self.accept)

    def server_ssl(self) -> ssl.SSLContext:
        """The TLS context the p2p listener serves ``add_routes`` with."""
        return self.config.tls.server_context()

    def dial(self, endpoints: Iterable[str]) -> None:
        """Keep a link to each ``host:port``, reconnecting with backoff."""
        for endpoint in endpoints:
            task = asyncio.get_running_loop().create_task(
                self._dial_forever(endpoint), name=f"p2p-dial-{endpoint}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def live(self) -> list[Peer]:
        return [p for p in self.peers.values() if not p.closed]

    def by_address(self, address: bytes) -> Peer | None:
        for peer in self.live():
            if peer.address == address:
                return peer
        return None

    def broadcast(self, frame: dict[str, Any], roles: Iterable[str] | None = None) -> int:
        """Send to every peer (one link per node address) of the given roles."""
        wanted = set(roles) if roles is not None else None
        sent = 0
        done: set[bytes] = set()
        for peer in self.live():
            if wanted is not None and peer.role not in wanted:
                continue
            if peer.address is not None:
                if peer.address in done:
                    continue
                done.add(peer.address)
            sent += peer.send(frame)
        return sent

    def summary(self) -> list[dict[str, Any]]:
        """One entry per linked node (two nodes that dialled each other share two links),
        and one per observer link."""
        out: dict[Any, dict[str, Any]] = {}
        for p in self.live():
            key = p.address if p.address is not None else p.id
            entry = out.setdefault(
                key,
                {
                    "name": p.name,
                    "role": p.role,
                    "address": None if p.address is None else "0x" + p.address.hex(),
                    "endpoint": p.endpoint,
                    "height": p.height,
                    "finalized": p.finalized,
                },
            )
            if p.side == "client":  # a dialled link names the peer's listening port
                entry["endpoint"] = p.endpoint
            entry["height"] = max(entry["height"], p.height)
            entry["finalized"] = max(entry["finalized"], p.finalized)
        return list(out.values())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for peer in self.live():
            peer.closed = True
            await peer.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"node stopping")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ server side

    async def accept(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_FRAME, heartbeat=20)
        await ws.prepare(request)
        endpoint = f"{request.remote}"
        try:
            if request.transport is None or request.transport.get_extra_info("ssl_object") is None:
                raise LinkRefused("not-tls", f"links are TLS connections ({wire.PATH} over wss)")
            peer = await asyncio.wait_for(
                self._server_handshake(ws, endpoint, self.config.tls.fingerprint),
                HANDSHAKE_SECONDS,
            )
        except LinkRefused as exc:
            log.warning("refused a link from %s: %s", endpoint, exc)
            self.refusals.append(("server", endpoint, exc.reason))
            await self._refuse(ws, exc)
            return ws
        except (TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            log.info("link from %s failed during the handshake: %s", endpoint, exc or "timeout")
            await ws.close()
            return ws
        await self._run(peer)
        return ws

    async def _server_handshake(
        self, ws: web.WebSocketResponse, endpoint: str, binding: bytes
    ) -> Peer:
        hello = await self._receive(ws, "hello")
        role, address, name = self._check_hello(hello)
        nonce = os.urandom(32)
        await ws.send_bytes(wire.encode(self._hello(nonce)))
        client_nonce = hello["nonce"]
        if address is not None:  # the dialler proves itself first; only then do we
            auth = await self._receive(ws, "auth")
            self._check_auth(auth, client_nonce, nonce, binding, address, "client")
        if self.config.sign is not None:
            auth = await self._auth(client_nonce, nonce, binding, "server")
            await ws.send_bytes(wire.encode(auth))
        return Peer(ws, "server", endpoint, role, address, name, self.config)

    # ------------------------------------------------------------------ client side

    async def _dial_forever(self, endpoint: str) -> None:
        backoff = BACKOFF_FIRST
        while not self._closing:
            try:
                peer = await self.connect(endpoint)
            except LinkRefused as exc:
                self.last_refusal[endpoint] = str(exc)
                self.refusals.append(("client", endpoint, exc.reason))
                log.warning("peer %s refused the link: %s", endpoint, exc)
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                log.debug("cannot reach peer %s: %s", endpoint, exc or "timeout")
            else:
                backoff = BACKOFF_FIRST
                self.last_refusal.pop(endpoint, None)
                await self._run(peer)
                if self._closing:
                    return
                log.info("link to %r closed; reconnecting", peer)
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def connect(self, endpoint: str) -> Peer:
        """One handshake as the client; the caller runs the link (``_run``)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        ws = await self._session.ws_connect(
            f"wss://{endpoint}{wire.PATH}",
            max_msg_size=wire.MAX_FRAME,
            heartbeat=20,
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
            ssl=self._client_ssl,
        )
        try:
            binding = peer_fingerprint(ws.get_extra_info("ssl_object"))
            if binding is None:
                raise LinkRefused("not-tls", f"{endpoint} presented no TLS certificate")
            return await asyncio.wait_for(
                self._client_handshake(ws, endpoint, binding), HANDSHAKE_SECONDS
            )
        except LinkRefused as exc:
            if exc.reason != "refused-by-peer":
                await self._refuse(ws, exc)
            else:
                await ws.close()
            raise
        except BaseException:
            await ws.close()
            raise

    async def _client_handshake(
        self, ws: aiohttp.ClientWebSocketResponse, endpoint: str, binding: bytes
    ) -> Peer:
        nonce = os.urandom(32)
        await ws.send_bytes(wire.encode(self._hello(nonce)))
        hello = await self._receive(ws, "hello")
        role, address, name = self._check_hello(hello)
        server_nonce = hello["nonce"]
        if self.config.sign is not None:
            auth = await self._auth(nonce, server_nonce, binding, "client")
            await ws.send_bytes(wire.encode(auth))
        if address is not None:
            auth = await self._receive(ws, "auth")
            genesis = self.config.genesis or hello["genesis"]
            self._check_auth(auth, nonce, server_nonce, binding, address, "server", genesis)
            if self.config.genesis is None:
                self.config.genesis = genesis  # vouched for by a listed node's signature
                log.info("genesis 0x%s, as node %s signed it", genesis.hex(), name or address.hex())
        return Peer(ws, "client", endpoint, role, address, name, self.config)

    # ------------------------------------------------------------------ the handshake

    def _hello(self, nonce: bytes) -> dict[str, Any]:
        return wire.frame(
            "hello",
            v=wire.WIRE_VERSION,
            chainId=self.config.chain_id,
            genesis=self.config.genesis or UNKNOWN_GENESIS,
            role=self.config.role,
            address=self.config.address,
            nonce=nonce,
        )

    async def _auth(
        self, client_nonce: bytes, server_nonce: bytes, binding: bytes, side: str
    ) -> dict[str, Any]:
        assert self.config.sign is not None and self.config.address is not None
        assert self.config.genesis is not None
        transcript = wire.transcript(
            self.config.genesis, client_nonce, server_nonce, binding, self.config.address, side
        )
        return wire.frame("auth", sig=bytes(await self.config.sign(transcript)), binding=binding)

    def _check_hello(self, hello: dict[str, Any]) -> tuple[str, bytes | None, str]:
        if hello["v"] != wire.WIRE_VERSION:
            raise LinkRefused(
                "wrong-version", f"wire version {hello['v']} is not {wire.WIRE_VERSION}"
            )
        if hello["chainId"] != self.config.chain_id:
            raise LinkRefused(
                "wrong-chain", f"chain {hello['chainId']} is not this node's {self.config.chain_id}"
            )
        role, address = hello["role"], hello["address"]
        unknown = role == "observer" and hello["genesis"] == UNKNOWN_GENESIS
        if self.config.genesis is None:
            if address is None:
                raise LinkRefused("unauthenticated", "an observer learns the genesis from members")
        elif hello["genesis"] != self.config.genesis and not unknown:
            raise LinkRefused(
                "wrong-genesis", f"genesis 0x{hello['genesis'].hex()} is not this consortium's"
            )
        if role == "observer":
            if address is not None:
                raise LinkRefused("bad-hello", "an observer has no node address")
            if self.config.role == "observer":
                raise LinkRefused("observer-to-observer", "observers only follow member nodes")
            return role, None, ""
        if address is None:
            raise LinkRefused("bad-hello", f"a {role} must name its node address")
        if address == self.config.address:
            raise LinkRefused("self", "this is a link to the node itself")
        entry = self.config.nodes.get(address)
        governed = self.config.governed
        if governed is not None and governed(address) == "retired":
            raise LinkRefused("node-retired", f"node 0x{address.hex()} was retired by vote")
        if entry is None:
            if governed is None:
                raise LinkRefused(
                    "unlisted-node",
                    f"node 0x{address.hex()} is not in this consortium's node list",
                )
            # governed: a node the state knows, or one that comes to join (its link carries
            # only JOIN_FRAMES until the members trust it)
            return role, address, ""
        if entry.get("role") != role:
            raise LinkRefused(
                "wrong-role", f"node 0x{address.hex()} is listed as {entry.get('role')}, not {role}"
            )
        return role, address, str(entry.get("name", ""))

    def _check_auth(
        self,
        auth: dict[str, Any],
        client_nonce: bytes,
        server_nonce: bytes,
        binding: bytes,
        address: bytes,
        side: str,
        genesis: bytes | None = None,
    ) -> None:
        genesis = genesis or self.config.genesis
        assert genesis is not None
        if auth["binding"] != binding:
            # the peer's signature covers the certificate it saw: a different one means a
            # TLS terminator between us (the signature is not even worth checking)
            raise LinkRefused(
                "channel-binding-mismatch",
                f"the peer saw TLS certificate sha256 {auth['binding'].hex()}, but this side's "
                f"is {binding.hex()}: something between the two nodes terminates TLS",
            )
        transcript = wire.transcript(genesis, client_nonce, server_nonce, binding, address, side)
        signer = recover_signer(wire.link_digest(transcript), auth["sig"])
        if signer != address:
            raise LinkRefused(
                "bad-signature", f"the handshake signature is not by 0x{address.hex()}"
            )

    async def _receive(
        self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, kind: str
    ) -> dict[str, Any]:
        msg = await ws.receive()
        if msg.type != WSMsgType.BINARY:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                raise ConnectionError(f"closed by the peer during the handshake ({ws.close_code})")
            raise LinkRefused("not-binary", "frames are binary WebSocket messages")
        try:
            frame = wire.decode(msg.data)
        except wire.WireError as exc:
            raise LinkRefused(exc.reason, exc.detail) from None
        if frame["t"] == "refused":
            raise LinkRefused("refused-by-peer", f"{frame['reason']}: {frame['message']}")
        if frame["t"] != kind:
            raise LinkRefused("out-of-order", f"expected a {kind} frame, got {frame['t']}")
        return frame

    async def _refuse(
        self, ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, exc: LinkRefused
    ) -> None:
        try:
            await ws.send_bytes(wire.encode(wire.refused(exc.reason, exc.message)))
            await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass

    # ------------------------------------------------------------------ a running link

    async def _run(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        peer.writer = asyncio.get_running_loop().create_task(peer.write_loop())
        log.info("link up: %r", peer)
        try:
            await self.on_up(peer)
            await self._read_loop(peer)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("link %r failed", peer)
        finally:
            peer.closed = True
            self.peers.pop(peer.id, None)
            peer.writer.cancel()
            await asyncio.gather(peer.writer, return_exceptions=True)
            if not peer.ws.closed:
                await peer.ws.close()
            log.info("link down: %r", peer)
            try:
                await self.on_down(peer)
            except Exception:
                log.exception("link-down handler failed for %r", peer)

    async def _read_loop(self, peer: Peer) -> None:
        async for msg in peer.ws:
            if peer.closed:
                return
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.ERROR:
                    return
                self._violation(peer, LinkRefused("not-binary", "frames are binary messages"))
                return
            try:
                frame = wire.decode(msg.data)
            except wire.WireError as exc:
                self._violation(peer, LinkRefused(exc.reason, exc.detail))
                return
            kind = frame["t"]
            if kind in ("hello", "auth"):
                self._violation(peer, LinkRefused("out-of-order", f"{kind} after the handshake"))
                return
            if not peer.trusted and kind not in JOIN_FRAMES:
                # a joiner the governance state does not trust (yet, at this node's head):
                # it may have just been trusted at a block this node has not reached
                self.refused.refuse(NOT_TRUSTED, "a %s frame from %r, not trusted", kind, peer)
                continue
            if not peer.allows(kind):
                self._violation(peer, LinkRefused("not-allowed", f"{kind} frames on this link"))
                return
            if kind == "qbft" and not self.seen.add(wire.frame_hash("qbft", frame["m"])):
                self.refused.refuse(REPLAYED, "a QBFT message from %r this node already had", peer)
                continue
            if kind == "txs" and not self.seen.add(
                wire.frame_hash("txs", b"".join(frame["blobs"]))
            ):
                self.refused.refuse(
                    REPLAYED, "forwarded transactions from %r this node already had", peer
                )
                continue
            if kind == "revoked" and not self.seen.add(
                wire.frame_hash("revoked", b"".join(frame["blobs"]))
            ):
                self.refused.refuse(REPLAYED, "session revocations from %r seen already", peer)
                continue
            await self.on_frame(peer, frame)

    def _violation(self, peer: Peer, exc: LinkRefused) -> None:
        log.warning("dropping the link to %r: %s", peer, exc)
        if not peer.closed:
            peer.closed = True
            asyncio.get_running_loop().create_task(self._refuse(peer.ws, exc))
