"""Fault injection on loopback, between two nodes' p2p ports.

``FaultProxy`` is a TCP proxy: a node dials ``proxy.address`` instead of a peer's p2p
address, and the test decides what the link does. Its control methods are thread-safe (the
proxy runs its own event loop in a thread) and return once the change is in force:

- ``heal()``: pass bytes through (the initial state);
- ``partition("refuse")``: cut every open connection (reset) and reset new ones at once;
- ``partition("blackhole")``: hold every connection open and silent; bytes stay queued
  (nothing is dropped, as TCP would retransmit) and flow again on ``heal()``; a new
  connection is accepted but reaches the peer only after ``heal()``;
- ``delay(seconds)``: every chunk reaches the other side ``seconds`` after it was read,
  order kept, in both directions;
- ``cut()``: reset the open connections once, without changing the mode.

``P2pRelay`` speaks the node-to-node wire (version 2, docs/PROTOCOL.md "Node-to-node wire":
an aiohttp WebSocket over TLS 1.3 at ``wss://…/p2p/v2``, binary frames, each a msgpack map with
``"t"``). It accepts the dialling node's WebSocket, opens its own to the peer, and relays frame
by frame, so a test can change frames in flight with ``Rule``s: flip bytes in a proposal's
sidecar, replace commit seals, rewrite a sidecar (a different state diff), and re-send frames
it saw earlier (``replay``). Frames are relayed unchanged until a rule matches; every frame
seen is kept (bounded) for replay. The handshake frames (``hello``, ``auth``) are never given
to rules: ``auth`` carries the signer's ``binding`` (the SHA-256 of the TLS certificate it
saw) and its signature, and passes untouched.

The relay serves TLS with *the fronted node's own* certificate and key (read from that node's
data directory), so the dialler sees the certificate the fronted node's enclave binds into
its signature and the link verifies. It therefore models an attacker who holds the fronted
node's host (its TLS key file), not one on the network path: a relay with any other
certificate is refused by both ends (``channel-binding-mismatch``, tests/test_p2p_link.py).
Everything it can do is what such a host can do anyway: drop, delay, reorder, replay and
change frames, never sign as the enclave.

Directions are named from the relay's place: ``UPSTREAM`` is from the dialling node to the
node the relay fronts, ``DOWNSTREAM`` is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgpack
from aiohttp import web

from gateway.p2p import tls as p2p_tls
from gateway.p2p import wire

T = TypeVar("T")

UPSTREAM = "upstream"  # from the dialling node to the node the relay or proxy fronts
DOWNSTREAM = "downstream"  # back from that node to the dialling one
DIRECTIONS = (UPSTREAM, DOWNSTREAM)

CHUNK = 65536
QUEUE_CHUNKS = 64  # per direction and connection: at most 4 MiB in flight inside the proxy
MAX_FRAME = wire.MAX_FRAME + 4096  # the wire's 16 MiB frame limit, plus room
HANDSHAKE_FRAMES = frozenset({"hello", "auth"})  # never changed by rules
RECORDED_FRAMES = 512  # per direction, for replay

# QBFT wire codes (docs/qbft.md, "Wire format, version 1")
PROPOSAL, PREPARE, COMMIT, ROUND_CHANGE, NEW_BLOCK = 0x12, 0x13, 0x14, 0x15, 0x16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _cancel_other_tasks() -> None:
    """Cancel the loop's remaining tasks (held dials, pumps) before it stops."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _LoopThread:
    """An asyncio loop in a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if threading.current_thread() is self._thread:
            raise RuntimeError("control methods are for other threads, not the proxy's own")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


# ------------------------------------------------------------------------------- TCP proxy


class _Link:
    """One proxied TCP connection: the accepted client side and the upstream side."""

    def __init__(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.client_r, self.client_w = client_r, client_w
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for w in (self.client_w, self.up_w):
            if w is not None:
                w.transport.abort()
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to ``upstream`` ("host:port"); see the module
    docstring. ``start()`` returns the proxy; ``stop()`` closes everything."""

    def __init__(self, upstream: str, *, port: int | None = None, name: str = "") -> None:
        host, _, port_text = upstream.rpartition(":")
        self.upstream_host, self.upstream_port = host or "127.0.0.1", int(port_text)
        self.port = port or _free_port()
        self.name = name or f"proxy->{upstream}"
        self.mode = "pass"
        self.delay_seconds = 0.0
        self.accepted = 0
        self.refused = 0
        self.bytes = {UPSTREAM: 0, DOWNSTREAM: 0}
        self._links: set[_Link] = set()
        self._gate: asyncio.Event | None = None  # set: bytes may flow (not black-holed)
        self._server: asyncio.base_events.Server | None = None
        self._lt: _LoopThread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def upstream(self) -> str:
        return f"{self.upstream_host}:{self.upstream_port}"

    def __repr__(self) -> str:
        return f"FaultProxy({self.name}, {self.address} -> {self.upstream}, {self.mode})"

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._lt = _LoopThread(self.name)
        self._lt.call(self._start())
        return self

    async def _start(self) -> None:
        self._gate = asyncio.Event()
        self._gate.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def stop(self) -> None:
        if self._lt is None:
            return
        with contextlib.suppress(Exception):
            self._lt.call(self._stop(), timeout=10)
        self._lt.close()
        self._lt = None

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        await _cancel_other_tasks()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control (thread-safe) -----------------------------------------------------------
    def heal(self) -> None:
        """Pass bytes through again; held (black-holed) bytes and connections flow on."""
        self._control(self._set_mode("pass"))

    def partition(self, how: str = "refuse") -> None:
        """``"refuse"``: reset open connections and every new one; ``"blackhole"``: hold
        them all silent (see the module docstring)."""
        if how not in ("refuse", "blackhole"):
            raise ValueError(f"partition: 'refuse' or 'blackhole', not {how!r}")
        self._control(self._set_mode(how))

    def delay(self, seconds: float) -> None:
        """Deliver each chunk ``seconds`` after it was read (0: no delay), both ways."""
        if not 0 <= seconds <= 60:
            raise ValueError("delay: 0 to 60 seconds")
        self.delay_seconds = float(seconds)

    def cut(self) -> None:
        """Reset the open connections now; new ones are served as the mode says."""
        self._control(self._cut())

    def open_connections(self) -> int:
        return len(self._links)

    def _control(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._lt is None:
            coro.close()
            raise RuntimeError(f"{self.name} is not started")
        self._lt.call(coro)

    async def _set_mode(self, mode: str) -> None:
        assert self._gate is not None
        self.mode = mode
        if mode == "pass":
            self._gate.set()
            return
        self._gate.clear()
        if mode == "refuse":
            await self._cut()

    async def _cut(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    # -- the connections -----------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._gate is not None
        if self.mode == "refuse":
            self.refused += 1
            writer.transport.abort()
            return
        self.accepted += 1
        link = _Link(reader, writer)
        self._links.add(link)
        try:
            await self._gate.wait()  # a black-holed dial waits here, held open
            if link not in self._links:
                return
            try:
                link.up_r, link.up_w = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                return  # the peer is down: the dialler sees its connection closed
            if link not in self._links:  # cut while connecting
                return
            link.tasks = [
                asyncio.create_task(self._direction(reader, link.up_w, UPSTREAM)),
                asyncio.create_task(self._direction(link.up_r, writer, DOWNSTREAM)),
            ]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            link.abort()

    async def _direction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        """Read chunks into a bounded queue; a writer task delivers each when due (delay)
        and when the gate is open (not black-holed). A full queue stops the reading, so the
        sender's kernel buffers fill as they would on a real stalled path."""
        assert self._gate is not None
        gate = self._gate
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await gate.wait()
                self.bytes[direction] += len(chunk)
                writer.write(chunk)
                await writer.drain()

        async def read() -> None:
            while True:
                try:
                    chunk = await reader.read(CHUNK)
                except OSError:
                    chunk = b""
                await queue.put((time.monotonic() + self.delay_seconds, chunk))
                if not chunk:
                    return

        reading = asyncio.create_task(read())
        delivering = asyncio.create_task(deliver())
        try:
            await delivering  # ends after the EOF, or when the other side is gone
        except (OSError, ConnectionError, RuntimeError):
            pass
        finally:
            reading.cancel()
            delivering.cancel()


# ------------------------------------------------------------------------------- WS relay


def decode_frame(data: bytes) -> dict[str, Any] | None:
    """A p2p frame as a dict (msgpack map with "t"), or None when it is not one."""
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return None
    return frame if isinstance(frame, dict) and "t" in frame else None


def encode_frame(frame: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(frame, use_bin_type=True))


def qbft_code(frame: dict[str, Any]) -> int | None:
    """The QBFT message code inside a ``qbft`` frame (``m`` = rlp([2, domain, code, body]))."""
    if frame.get("t") != "qbft" or not isinstance(frame.get("m"), bytes | bytearray):
        return None
    from gateway.consensus.qbft.messages import rlp_decode

    try:
        item = rlp_decode(bytes(frame["m"]))
    except Exception:
        return None
    if isinstance(item, list) and len(item) == 4 and isinstance(item[2], bytes):
        return int.from_bytes(item[2], "big")
    return None


def qbft_height(frame: dict[str, Any]) -> int | None:
    """The height a ``qbft`` frame's message is about, or None."""
    if frame.get("t") != "qbft":
        return None
    from gateway.consensus.qbft.messages import decode_message

    try:
        return int(decode_message(bytes(frame["m"])).height)
    except Exception:
        return None


Transform = Callable[[dict[str, Any]], list[dict[str, Any]] | dict[str, Any] | None]


@dataclass
class Rule:
    """Change frames in flight: for a frame going ``direction`` that ``match``es, send what
    ``transform`` returns instead (a frame, a list of frames, or None to drop it). At most
    ``limit`` frames are changed (None: no limit); ``applied`` counts them, ``seen`` keeps
    (original, replacement) pairs of the last few."""

    name: str
    match: Callable[[dict[str, Any]], bool]
    transform: Transform
    direction: str = UPSTREAM
    limit: int | None = 1
    applied: int = 0
    seen: collections.deque[tuple[dict[str, Any], list[dict[str, Any]]]] = field(
        default_factory=lambda: collections.deque(maxlen=16)
    )

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.applied >= self.limit


def flip_bytes(data: bytes, count: int = 4, rng: random.Random | None = None) -> bytes:
    """``data`` with ``count`` bytes at random places (never the version byte) inverted."""
    rng = rng or random.Random(len(data))
    out = bytearray(data)
    if len(out) <= 1:
        return bytes(out) + b"\x00"
    for i in rng.sample(range(1, len(out)), min(count, len(out) - 1)):
        out[i] ^= 0xFF
    return bytes(out)


def is_proposal_with_sidecar(frame: dict[str, Any]) -> bool:
    return qbft_code(frame) == PROPOSAL and isinstance(frame.get("s"), bytes | bytearray)


def bad_body_rule(direction: str = UPSTREAM, limit: int | None = 1) -> Rule:
    """Flip bytes in a proposal's sidecar (its sealed body): the AEAD must refuse it."""

    def transform(frame: dict[str, Any]) -> dict[str, Any]:
        return {**frame, "s": flip_bytes(bytes(frame["s"]))}

    return Rule("bad-body", is_proposal_with_sidecar, transform, direction, limit)


def sidecar_rule(
    rewrite: Callable[[dict[str, Any], bytes], bytes],
    direction: str = UPSTREAM,
    limit: int | None = 1,
    name: str = "rewrite-sidecar",
) -> Rule:
    """Replace a proposal's sidecar with ``rewrite(frame, sidecar)`` (a different state
    diff, sealed again by a test that holds the consortium secret)."""

    def transform(frame: dict[str, Any]) -> dict[str, Any]:
        return {**frame, "s": rewrite(frame, bytes(frame["s"]))}

    return Rule(name, is_proposal_with_sidecar, transform, direction, limit)


def outsider_seals(
    digest: bytes, round_: int, count: int, seed: bytes = b"outsider"
) -> list[bytes]:
    """``count`` well-formed commit seals over (digest, round) by keys no validator holds."""
    from eth_keys.datatypes import PrivateKey
    from eth_utils import keccak

    from gateway.consensus.qbft.messages import commit_seal_digest, sign_digest

    keys = [PrivateKey(keccak(seed + bytes([i]))) for i in range(count)]
    return [sign_digest(k, commit_seal_digest(digest, round_)) for k in keys]


def _forged_new_block(m: bytes, how: str) -> bytes:
    from gateway.consensus.qbft.messages import (
        FinalizedBlock,
        NewBlock,
        decode_message,
        encode_message,
    )

    msg = decode_message(m)
    assert isinstance(msg, NewBlock)
    f = msg.finalized
    seals = _forge(list(f.commit_seals), f.block.digest, f.round, how)
    return encode_message(NewBlock(FinalizedBlock(f.block, f.round, tuple(seals)), msg.domain))


def _forge(seals: list[bytes], digest: bytes, round_: int, how: str) -> list[bytes]:
    if how == "outsider":
        return outsider_seals(digest, round_, max(1, len(seals)))
    if how == "garbage":
        return [flip_bytes(s, 8) for s in seals] or [b"\x01" * 65]
    if how == "too-few":
        return seals[:1]
    if how == "wrong-round":
        # genuine-looking seals over the right block but another round: a seal for round r
        # must not prove round r+1 (nobody here can sign as a validator, so use outsiders
        # for the shape, which the node must refuse as well)
        return outsider_seals(digest, round_ + 1, max(1, len(seals)), b"wrong-round")
    raise ValueError(f"unknown seal forgery {how!r}")


def exported_block_digest(item: dict[str, Any]) -> bytes:
    """The QBFT block digest an ``ExportedBlock``'s seals sign (PLAN8: the value is
    ``Block(number, proposer, header RLP)``)."""
    from gateway.consensus.qbft.messages import Block

    return Block(int(item["number"]), bytes(item["proposer"]), bytes(item["header"])).digest


def bad_seals_rule(how: str = "outsider", direction: str = UPSTREAM, limit: int | None = 1) -> Rule:
    """Replace the commit seals of a finalized block in flight: in a QBFT NEW_BLOCK message,
    and in every item of a ``blocks`` frame (catch-up, the push to members and observers).
    ``how``: "outsider" (valid signatures by unlisted keys), "garbage" (bytes flipped),
    "too-few" (one genuine seal), "wrong-round" (outsiders' seals over another round)."""

    def match(frame: dict[str, Any]) -> bool:
        if frame.get("t") == "blocks":
            return bool(frame.get("items"))
        return qbft_code(frame) == NEW_BLOCK

    def transform(frame: dict[str, Any]) -> dict[str, Any]:
        if frame.get("t") == "blocks":
            items = []
            for item in frame["items"]:
                digest = exported_block_digest(item)
                seals = _forge([bytes(s) for s in item["seals"]], digest, int(item["round"]), how)
                items.append({**item, "seals": seals})
            return {**frame, "items": items}
        return {**frame, "m": _forged_new_block(bytes(frame["m"]), how)}

    return Rule(f"bad-seals:{how}", match, transform, direction, limit)


def drop_rule(
    match: Callable[[dict[str, Any]], bool], direction: str = UPSTREAM, limit: int | None = None
) -> Rule:
    return Rule("drop", match, lambda _frame: None, direction, limit)


class _WsLink:
    def __init__(self, server_ws: web.WebSocketResponse) -> None:
        self.server_ws = server_ws
        self.client_ws: aiohttp.ClientWebSocketResponse | None = None
        self.hellos: dict[str, dict[str, Any]] = {}  # direction -> the hello that went that way

    def ws(self, direction: str) -> Any:
        """The socket frames going ``direction`` are written to."""
        return self.client_ws if direction == UPSTREAM else self.server_ws


class P2pRelay:
    """A frame-by-frame relay of the p2p wire (v2, TLS) in front of ``upstream``
    ("host:port"): nodes dial ``relay.address``. See the module docstring.

    ``tls`` is the fronted node's TLS identity, or its data directory to load it from
    (``gateway.p2p.tls.load_identity``): the relay presents that node's own certificate, as
    only someone holding that node's host could (the relay models such an attacker, not a
    stranger on the network path, whom the channel binding shuts out). Thread-safe control
    methods."""

    PATH = wire.PATH

    def __init__(
        self,
        upstream: str,
        *,
        tls: p2p_tls.TlsIdentity | Path,
        port: int | None = None,
        name: str = "",
    ) -> None:
        host, _, port_text = upstream.rpartition(":")
        self.upstream = f"{host or '127.0.0.1'}:{int(port_text)}"
        self.identity = tls if isinstance(tls, p2p_tls.TlsIdentity) else p2p_tls.load_identity(tls)
        self.port = port or _free_port()
        self.name = name or f"relay->{upstream}"
        self.rules: list[Rule] = []
        self.recorded: dict[str, collections.deque[dict[str, Any]]] = {
            d: collections.deque(maxlen=RECORDED_FRAMES) for d in DIRECTIONS
        }
        self.counts: collections.Counter[str] = collections.Counter()  # "direction:t"
        self.connections = 0
        self.errors: list[str] = []  # rules that raised (the frame went on unchanged)
        # hellos whose wire version is not the one this relay speaks (relayed all the same:
        # the nodes refuse them, with "wrong-version")
        self.version_mismatches: list[dict[str, Any]] = []
        self.cut_off = False
        self._links: set[_WsLink] = set()
        self._lock = threading.Lock()
        self._lt: _LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"P2pRelay({self.name}, {self.address} -> {self.upstream})"

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> P2pRelay:
        self._lt = _LoopThread(self.name)
        self._lt.call(self._start())
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get(self.PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self.identity.server_context()
        ).start()
        self._session = aiohttp.ClientSession()

    def stop(self) -> None:
        if self._lt is None:
            return
        with contextlib.suppress(Exception):
            self._lt.call(self._stop(), timeout=15)
        self._lt.close()
        self._lt = None

    async def _stop(self) -> None:
        await self._close_links()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await _cancel_other_tasks()

    def __enter__(self) -> P2pRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control (thread-safe) -----------------------------------------------------------
    def add_rule(self, rule: Rule) -> Rule:
        if rule.direction not in DIRECTIONS:
            raise ValueError(f"direction: one of {DIRECTIONS}")
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove_rule(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def frames(
        self, direction: str, match: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """Frames relayed so far in ``direction`` (the last ``RECORDED_FRAMES``), as sent."""
        with self._lock:
            frames = list(self.recorded[direction])
        return [f for f in frames if match is None or match(f)]

    def inject(self, direction: str, frames: Iterable[dict[str, Any]]) -> int:
        """Send ``frames`` now on every open link, ``direction`` as given (a replay when they
        are earlier frames). Returns how many links they went to."""
        items = [encode_frame(f) for f in frames]
        assert self._lt is not None, "relay not started"
        return self._lt.call(self._inject(direction, items))

    def replay(
        self, direction: str, match: Callable[[dict[str, Any]], bool], limit: int = 64
    ) -> int:
        """Re-send up to ``limit`` earlier frames that ``match``, oldest first; returns how
        many frames went out (on each open link)."""
        old = self.frames(direction, match)[:limit]
        links = self.inject(direction, old) if old else 0
        return len(old) if links else 0

    def partition(self) -> None:
        """Close the relayed links and refuse new ones until ``heal()``."""
        self.cut_off = True
        assert self._lt is not None, "relay not started"
        self._lt.call(self._close_links())

    def heal(self) -> None:
        self.cut_off = False

    def open_links(self) -> int:
        return len(self._links)

    def hellos(self, direction: str) -> list[dict[str, Any]]:
        """The ``hello`` frame that went ``direction`` on each open link (who is on which
        side: ``role``, ``address``, wire version ``v``)."""
        return [link.hellos[direction] for link in list(self._links) if direction in link.hellos]

    async def _inject(self, direction: str, items: list[bytes]) -> int:
        sent = 0
        for link in list(self._links):
            ws = link.ws(direction)
            if ws is None or ws.closed:
                continue
            for data in items:
                await ws.send_bytes(data)
            sent += 1
        return sent

    async def _close_links(self) -> None:
        for link in list(self._links):
            for ws in (link.client_ws, link.server_ws):
                if ws is not None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
        self._links.clear()

    # -- relaying ------------------------------------------------------------------------
    def _rewrite(self, direction: str, data: bytes, link: _WsLink | None = None) -> list[bytes]:
        frame = decode_frame(data)
        if frame is None:
            return [data]
        if frame["t"] in HANDSHAKE_FRAMES:
            # hello and auth pass as they are: auth's signature covers the nonces and the
            # certificate binding, so any change would only get the link refused
            with self._lock:
                self.counts[f"{direction}:{frame['t']}"] += 1
                if frame["t"] == "hello":
                    if link is not None:
                        link.hellos[direction] = frame
                    if frame.get("v") != wire.WIRE_VERSION:
                        self.version_mismatches.append(frame)
            return [data]
        with self._lock:
            self.counts[f"{direction}:{frame['t']}"] += 1
            rule = next(
                (
                    r
                    for r in self.rules
                    if r.direction == direction and not r.exhausted and r.match(frame)
                ),
                None,
            )
            if rule is None:
                self.recorded[direction].append(frame)
                return [data]
            try:
                out = rule.transform(frame)
            except Exception as exc:  # a rule that cannot apply: relay the frame as it is
                self.errors.append(f"{rule.name}: {type(exc).__name__}: {exc}")
                self.recorded[direction].append(frame)
                return [data]
            frames = [] if out is None else [out] if isinstance(out, dict) else list(out)
            rule.applied += 1
            rule.seen.append((frame, frames))
            self.recorded[direction].append(frame)
        return [encode_frame(f) for f in frames]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.cut_off:
            raise web.HTTPServiceUnavailable(text="relay partitioned")
        server_ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, autoping=True)
        await server_ws.prepare(request)
        link = _WsLink(server_ws)
        assert self._session is not None
        try:
            link.client_ws = await self._session.ws_connect(
                f"wss://{self.upstream}{self.PATH}",
                max_msg_size=MAX_FRAME,
                autoping=True,
                ssl=p2p_tls.client_context(),
            )
        except (aiohttp.ClientError, OSError, TimeoutError):
            await server_ws.close()
            return server_ws
        self.connections += 1
        self._links.add(link)
        try:
            pumps = [
                asyncio.create_task(self._pump(server_ws, link.client_ws, UPSTREAM, link)),
                asyncio.create_task(self._pump(link.client_ws, server_ws, DOWNSTREAM, link)),
            ]
            _done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            self._links.discard(link)
            for ws in (link.client_ws, server_ws):
                if not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.close()
        return server_ws

    async def _pump(self, src: Any, dst: Any, direction: str, link: _WsLink) -> None:
        async for msg in src:
            if msg.type == aiohttp.WSMsgType.BINARY:
                for data in self._rewrite(direction, bytes(msg.data), link):
                    await dst.send_bytes(data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await dst.send_str(msg.data)
            else:
                break
