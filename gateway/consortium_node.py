"""A consortium node's shell: the enclave's QBFT validator driven over node-to-node links.

``ConsortiumNode`` (a validator or a member) starts its enclave with the consortium's terms,
joins the consortium when its enclave still awaits the secret, and then only moves bytes and
time: QBFT messages between the enclave and the other validators (``ConsensusStep``, one
asyncio timer at the deadline the enclave asks for), decided blocks to members and observers,
forwarded transactions (sealed by the enclave) to every peer, and finalized blocks to a node
that is behind (catch-up, in batches of 64). ``ObserverNode`` has no enclave at all: it
follows public headers and commit seals and checks finality itself (gateway/observer.py).

Both are ``Node`` subclasses, so the RPC server, its subscriptions and filters work as on
the dev node; ``coco-gateway node --config FILE`` runs them (gateway/cli.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import clock
from gateway.api.base import Method
from gateway.config import DEFAULT_SNAPSHOT_THRESHOLD, ConfigError, ConsortiumTerms, NodeFile
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient, ProcessEnclave
from gateway.errors import RpcError
from gateway.node import Node, NodeConfig
from gateway.observer import (
    BlockRefused,
    HeaderStore,
    ObserverBackend,
    ObserverRefusal,
    block_summary,
    terms_digest,
)
from gateway.p2p import wire
from gateway.p2p.link import LinkConfig, Links, Peer
from gateway.p2p.refusals import STALE
from gateway.p2p.tls import TlsError, TlsIdentity, ensure_identity

log = logging.getLogger("gateway.consortium")

INBOX_LIMIT = 4096  # QBFT messages waiting for the enclave
STEP_BATCH = 256  # QBFT messages per ConsensusStep
STATUS_SECONDS = 2.0  # how often a node tells its peers its height
FORWARD_BATCH = 256  # transactions per forwarded txs frame
JOIN_BACKOFF_MAX = 30.0
JOIN_WAIT_LOG = 60.0  # seconds between the "nobody can admit this node" warnings
JOIN_PENDING_RETRY = 2.0  # seconds between join requests while the node waits for a vote
SYNC_TIMEOUT = 30.0
BEHIND_GRACE = 1.0  # seconds a validator one block behind waits to decide it itself
SNAPSHOT_CHUNK = 2 * 1024 * 1024  # bytes of rows asked for per snapshot chunk
SNAPSHOT_RETRIES = 2  # a refused chunk is asked for again this many times, then block by block
SNAPSHOT_PAUSE = 60.0  # seconds of block-by-block catch-up after a snapshot failed


# ------------------------------------------------------------------ node.json (PLAN8)


class SettingsError(ValueError):
    """node.json or consortium.json cannot be used: ``file: field: reason``."""


@dataclass
class NodeSettings:
    """One node's settings (node.json) and the consortium's terms (consortium.json)."""

    path: Path
    name: str
    role: str  # validator | member | observer
    terms: dict[str, Any]
    data_dir: Path
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 8545
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 30301
    peers: list[str] = field(default_factory=list)
    enclave: str = "process"
    privacy: str = "open"
    snapshot_threshold: int = DEFAULT_SNAPSHOT_THRESHOLD
    recover: bool = False  # --recover: take members' recovery shares (docs/GOVERNANCE.md)

    @property
    def chain_id(self) -> int:
        return int(self.terms["chainId"])

    @property
    def validators(self) -> list[bytes]:
        return [_address(a) for a in self.terms["validators"]]

    def nodes(self) -> dict[bytes, dict[str, Any]]:
        return {_address(n["address"]): dict(n) for n in self.terms.get("nodes", [])}

    def node_config(self, lock_fd: int | None = None) -> NodeConfig:
        return NodeConfig(
            host=self.rpc_host,
            port=self.rpc_port,
            chain_id=self.chain_id,
            data_dir=self.data_dir,
            dev=False,
            dev_accounts=0,
            fork=str(self.terms.get("fork", m.DEFAULT_FORK)),
            gas_limit=int(self.terms.get("gasLimit", 30_000_000)),
            enclave_runtime=self.enclave,
            epoch_period=int(self.terms.get("epochPeriod", 86_400)),
            privacy=self.privacy,
            lock_fd=lock_fd,
        )

    def open_message(self) -> m.Open:
        terms = self.terms
        return m.Open(
            data_dir=str(self.data_dir),
            chain_id=self.chain_id,
            fork=str(terms.get("fork", m.DEFAULT_FORK)),
            gas_limit=int(terms.get("gasLimit", 30_000_000)),
            genesis_timestamp=int(terms.get("genesisTimestamp", 0)),
            genesis_alloc=[
                [_address(a), str(int(v))] for a, v in sorted(terms.get("alloc", {}).items())
            ],
            epoch_period=int(terms.get("epochPeriod", 86_400)),
            privacy=self.privacy,
            consortium=terms,
            role=self.role,
            recover=self.recover,
        )


def _address(text: str) -> bytes:
    value = bytes.fromhex(str(text).removeprefix("0x"))
    if len(value) != 20:
        raise SettingsError(f"{text!r} is not a 20-byte address")
    return value


def load_settings(path: Path) -> NodeSettings:
    """Read node.json and the consortium.json it names (gateway/config.py checks both)."""
    try:
        node = NodeFile.load(path)
        terms = ConsortiumTerms.load(node.consortium_path)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    return NodeSettings(
        path=path,
        name=node.name,
        role=node.role,
        terms=terms.to_open_terms(),
        data_dir=node.data_path,
        rpc_host=node.rpc.host,
        rpc_port=node.rpc.port,
        p2p_host=node.p2p.host,
        p2p_port=node.p2p.port,
        peers=list(node.peers),
        enclave=node.enclave,
        privacy=node.privacy,
        snapshot_threshold=node.snapshot_threshold,
    )


# ------------------------------------------------------------------ shared by both kinds


class Progress:
    """Catch-up progress: a log line every few seconds, and a bar when stderr is a TTY.
    A catch-up of a few blocks (a node that was a moment behind) is not worth either."""

    SHOWN_FROM = 8  # blocks behind

    def __init__(self) -> None:
        self._last_line = 0.0
        self._tty = sys.stderr.isatty()
        self._start: int | None = None
        self._snapshot_logged = -1

    def update(self, done: int, target: int, start: int) -> None:
        if self._start is None or start < self._start:
            self._start = start
        if target - self._start < self.SHOWN_FROM:
            if done >= target:
                self._start = None
            return
        now = time.monotonic()
        if self._tty:
            width = 30
            filled = min(width, width * done // max(target, 1))
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\rcatch-up [{bar}] {done}/{target} blocks")
            if done >= target:
                sys.stderr.write("\n")
            sys.stderr.flush()
        if now - self._last_line >= 2.0 or done >= target:
            self._last_line = now
            log.info("catch-up: %d/%d blocks", done, target)
        if done >= target:
            self._start = None

    def snapshot(self, done: int, total: int, height: int) -> None:
        """Snapshot progress in bytes of rows: ``snapshot: 12.3/80.0 MB, 41%``."""
        total = max(total, done, 1)
        percent = 100 * done // total
        now = time.monotonic()
        if self._tty:
            width = 30
            filled = min(width, width * done // total)
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(
                f"\rsnapshot of block {height} [{bar}] {done / 1e6:.1f}/{total / 1e6:.1f} MB"
            )
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        if (now - self._last_line >= 2.0 or done >= total) and done != self._snapshot_logged:
            self._last_line = now
            self._snapshot_logged = done
            log.info(
                "snapshot: %.1f/%.1f MB, %d%% (block %d)", done / 1e6, total / 1e6, percent, height
            )


class _P2pShell:
    """What validators, members and observers share: the links, the p2p listener, status
    frames, and catch-up bookkeeping. Mixed into the Node subclasses below."""

    settings: NodeSettings
    links: Links | None
    _p2p_runner: web.AppRunner | None
    _tasks: set[asyncio.Task[Any]]
    last_error: str | None

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    _batch: asyncio.Future[list[dict[str, Any]]]
    _batch_start = -1

    def _answers_batch(self, items: list[dict[str, Any]]) -> bool:
        """Whether a blocks frame answers the getBlocks in flight (and is not a pushed block
        that happened to arrive meanwhile)."""
        batch = getattr(self, "_batch", None)
        if batch is None or batch.done():
            return False
        return not items or int(items[0]["number"]) == self._batch_start

    async def _serve_p2p(self) -> None:
        assert self.links is not None
        app = web.Application()
        self.links.add_routes(app)
        self._p2p_runner = web.AppRunner(app, access_log=None)
        await self._p2p_runner.setup()
        site = web.TCPSite(
            self._p2p_runner,
            self.settings.p2p_host,
            self.settings.p2p_port,
            ssl_context=self.links.server_ssl(),
        )
        await site.start()
        log.info(
            "p2p listening on wss://%s:%d%s (TLS certificate sha256 %s); peers %s",
            self.settings.p2p_host,
            self.settings.p2p_port,
            wire.PATH,
            self.links.config.tls.fingerprint.hex(),
            ", ".join(self.settings.peers) or "none",
        )

    def _tls_identity(self) -> TlsIdentity:
        """This node's p2p TLS certificate and key, made in its data directory if absent."""
        try:
            return ensure_identity(self.settings.data_dir, self.settings.name)
        except TlsError as exc:
            raise SystemExit(f"coco-gateway node: {exc}") from None

    async def _stop_p2p(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.links is not None:
            await self.links.close()
        if self._p2p_runner is not None:
            await self._p2p_runner.cleanup()
            self._p2p_runner = None


# ------------------------------------------------------------------ validators and members


class ConsortiumNode(_P2pShell, Node):
    """A validator or member: an enclave holding the consortium secret, driven over links."""

    def __init__(self, config: NodeConfig, settings: NodeSettings) -> None:
        self.settings = settings
        super().__init__(config)
        self.api.node_status = self.node_status
        self.api.on_governance = self._on_governance
        self.api.on_sign_out = self._on_sign_out
        self.links = None
        self._p2p_runner = None
        self._tasks = set()
        self.last_error = None
        self.address: bytes = b""
        self.state = "starting"
        self.head = 0
        self._finalized = 0
        self.consensus: dict[str, Any] = {}
        self._inbox: deque[list[Any]] = deque()
        self._inbox_wake = asyncio.Event()
        self._timer_at: float | None = None
        self._forward: list[bytes] = []
        self._forward_wake = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._sync_wanted: tuple[Peer, int] | None = None
        self._behind_at: tuple[int, float] | None = None  # (head, when a peer said it was behind)
        self._sync_wake = asyncio.Event()
        self._progress = Progress()
        self._snapshot_reply: asyncio.Future[dict[str, Any]] | None = None
        self._snapshot_peer: Peer | None = None
        self._snapshot_paused_until = 0.0
        # the governance state's nodes at this node's head (address -> state), for the links
        self._gov_nodes: dict[bytes, str] = {}
        self._gov_nodes_at = -1

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        await self.enclave.start(settings.open_message())
        if isinstance(self.enclave, ProcessEnclave):
            self.enclave.on_lost = self._enclave_lost
        status = await self.enclave.request(m.GetStatus())
        self.address = bytes(status["validator"])
        self.state = str(status.get("state", "ready"))
        genesis = bytes(status["genesisHash"])
        listed = settings.nodes().get(self.address)
        governed = "members" in settings.terms  # who may link and join: the governance state
        if listed is None and not governed:
            log.warning(
                "this node's identity 0x%s is not in consortium.json's node list: peers will "
                "refuse its links",
                self.address.hex(),
            )
        elif listed is None:
            log.info(
                "this node's identity 0x%s is not in consortium.json's node list: it joins as "
                "a new node, which the members trust by vote (trust_node)",
                self.address.hex(),
            )
        self.links = Links(
            LinkConfig(
                chain_id=settings.chain_id,
                genesis=genesis,
                role=settings.role,
                address=self.address,
                sign=self._sign_link,
                tls=self._tls_identity(),
                nodes=settings.nodes(),
                governed=self._gov_node_state if governed else None,
            ),
            self._on_frame,
            self._on_up,
        )
        await self._refresh_gov_nodes()  # before any link: whom the state trusts or retired
        await self._serve_p2p()
        self.links.dial(settings.peers)
        log.info(
            "consortium node %s (%s) 0x%s, chain %d, genesis 0x%s: %s",
            settings.name,
            settings.role,
            self.address.hex(),
            settings.chain_id,
            genesis.hex(),
            self.state,
        )
        if self.state == "recovering":
            # members submit their shares over RPC: serve it now, open the rest once the
            # secret is here (recovered, or joined through a peer)
            await self.api.start()
            self._spawn(self._recover_then_run(), "recovery")
            return
        if self.state == "awaiting-secret":
            await self._join()
        await self.api.start()
        await self._run()

    async def _recover_then_run(self) -> None:
        await self._recover_or_join()
        await self.api.start()
        await self._run()

    async def _run(self) -> None:
        """The node's loops, once its enclave holds the secret."""
        settings = self.settings
        status = await self.enclave.request(m.GetStatus())
        self.state = str(status.get("state", "ready"))
        self.head = int(status["head"]["number"])
        self._finalized = int(status.get("finalized", self.head))
        self.api.view.head_number = self.head
        self._spawn(self._status_loop(), "p2p-status")
        self._spawn(self._forward_loop(), "p2p-forward")
        self._spawn(self._sync_loop(), "p2p-sync")
        if settings.role == "validator":
            self._spawn(self._consensus_loop(), "qbft")
        log.info("node ready: chain %d, head %d", settings.chain_id, self.head)

    async def stop(self) -> None:
        log.info("stopping node %s: closing its links, then its enclave", self.settings.name)
        await self._stop_p2p()
        await self.enclave.close()

    async def _sign_link(self, transcript: bytes) -> bytes:
        return bytes(await self.enclave.request(m.SignLink(transcript)))

    @property
    def finalized(self) -> int:
        return self._finalized

    async def node_status(self) -> dict[str, Any]:
        links = self.links.summary() if self.links is not None else []
        consensus = self.consensus
        try:
            status = await self.enclave.request(m.GetStatus())
        except Exception:  # a stopping enclave: the status says what it can
            status = {}
        status = status if isinstance(status, dict) else {}
        # the next height's validators (a governed chain's, as the votes left them); the
        # terms' set before the enclave holds the secret
        validators = [bytes(v) for v in status.get("validators") or self.settings.validators]
        held = status.get("ledgerSecret")
        return {
            "name": self.settings.name,
            "role": self.settings.role,
            "state": self.state,
            "address": "0x" + self.address.hex(),
            "height": self.head,
            "finalized": self._finalized,
            # a validator voted out runs no round any more
            "round": consensus.get("round") if self.address in validators else None,
            "proposer": _hex_or_none(consensus.get("proposer")),
            "peers": links,
            "validators": ["0x" + v.hex() for v in validators],
            "lastError": self.last_error,
            "refused": self.links.refused.snapshot() if self.links is not None else {},
            # the ledger secret generations this node's enclave holds and the one it seals
            # the next block under (None before it holds the consortium secret)
            "ledgerSecret": dict(held) if isinstance(held, dict) else None,
        }

    # ---------------------------------------------------------------- the join

    async def _join(self) -> None:
        """Ask listed peers for the consortium secret until one admits this node."""
        assert self.links is not None
        request = await self.enclave.request(m.JoinRequest())
        backoff = 1.0
        self.state = "joining"
        attempt = 0
        waited = False
        unready: set[str] = set()  # peers that are waiting for the secret themselves
        told_unready = 0.0
        told_pending = -JOIN_WAIT_LOG
        while True:
            peers = [p for p in self.links.live() if not p.public]
            if peers:
                peer = peers[attempt % len(peers)]  # another member on each attempt
                attempt += 1
                quiet = repr(peer) in unready or told_pending >= 0
                (log.debug if quiet else log.info)(
                    "asking %r to admit this node to the consortium", peer
                )
                self._join_reply: asyncio.Future[dict[str, Any]] = (
                    asyncio.get_running_loop().create_future()
                )
                peer.send(wire.frame("join", request=request))
                try:
                    reply = await asyncio.wait_for(asyncio.shield(self._join_reply), 30)
                except TimeoutError:
                    reply = {"t": "refused", "reason": "timeout", "message": "no answer in 30 s"}
                if reply["t"] == "joined":
                    await self.enclave.request(m.JoinComplete(reply["wrapped"]))
                    log.info("joined the consortium through %r", peer)
                    self.state = "ready"
                    return
                if reply["reason"] == "not-ready":  # that peer is joining too: ask another
                    unready.add(repr(peer))
                    now = time.monotonic()
                    everyone = all(repr(p) in unready for p in peers)
                    if everyone and now - told_unready >= JOIN_WAIT_LOG:
                        told_unready = now
                        self.last_error = (
                            "no reachable node holds the consortium secret: waiting to be admitted"
                        )
                        log.warning(
                            "no node that holds the consortium secret is reachable (%d peer(s) "
                            "up, all waiting for it too): this node waits to be admitted. It "
                            "never makes a secret itself; the genesis node's enclave made it at "
                            "init and keeps it in its data directory",
                            len(peers),
                        )
                    else:
                        log.debug("%r has not joined yet either", peer)
                    await asyncio.sleep(0.5)
                    continue
                unready.discard(repr(peer))
                self.last_error = f"join refused by {peer!r}: {reply['reason']}: {reply['message']}"
                if reply["reason"] == "node-pending":  # waits for the members' vote
                    now = time.monotonic()
                    if now - told_pending >= JOIN_WAIT_LOG:
                        told_pending = now
                        log.warning(
                            "this node 0x%s waits for a trust vote: its attestation checked "
                            "out and it is pending in the governance state; the members "
                            "admit it by voting trust_node for it (coco-gateway gov propose "
                            '--action \'trust_node={"address":"0x%s"}\'). Asking again '
                            "every %g s (%r: node-pending: %s)",
                            self.address.hex(),
                            self.address.hex(),
                            JOIN_PENDING_RETRY,
                            peer,
                            reply["message"],
                        )
                    backoff = 1.0
                    await asyncio.sleep(JOIN_PENDING_RETRY)
                    continue
                log.error("%s; retrying in %g s", self.last_error, backoff)
            else:
                refusals = "; ".join(f"{k}: {v}" for k, v in self.links.last_refusal.items())
                (log.debug if waited else log.info)(
                    "waiting for a link to a member node to join through%s",
                    f" (refused: {refusals})" if refusals else "",
                )
                waited = True
                if refusals:
                    self.last_error = f"links refused: {refusals}"
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(backoff)
            backoff = min(JOIN_BACKOFF_MAX, backoff * 2)

    async def _recover_or_join(self) -> None:
        """Recovery mode (``--recover``): wait until the members' shares reach the threshold
        in this node's enclave (``coco_govRecoverySubmit``), or until a peer that holds the
        secret admits this node, whichever comes first."""
        join = asyncio.ensure_future(self._join())
        told = None
        try:
            while True:
                self.state = "recovering"
                status = await self.enclave.request(m.GetStatus())
                if status.get("state") == "ready":
                    log.info("recovery: the consortium secret is here; the node opens")
                    break
                if join.done():
                    failed = "cancelled" if join.cancelled() else join.exception()
                    if failed is not None:
                        log.warning("a join attempt failed (%s); asking again", failed)
                        join = asyncio.ensure_future(self._join())
                    continue  # joined: the next status says ready
                progress = status.get("recovery") or {}
                seen = (progress.get("submitted"), progress.get("threshold"))
                if seen != told:
                    told = seen
                    self.last_error = (
                        f"recovery mode: {seen[0]} of {seen[1]} members' recovery shares; "
                        "waiting for more (coco-gateway gov recovery-share), or for a node "
                        "that holds the secret to admit this one"
                    )
                    log.info("%s", self.last_error)
                await asyncio.wait({join}, timeout=0.5)
        finally:
            # a cancellation that lands as a join reply arrives can be lost (asyncio.wait_for
            # in Python 3.11): cancel until the join task is really over
            while not join.done():
                join.cancel()
                await asyncio.wait({join}, timeout=0.5)
            if not join.cancelled() and join.exception() is not None:
                log.debug("the join attempt ended: %s", join.exception())
        self.state = "ready"
        self.last_error = None

    async def _admit(self, peer: Peer, request: dict[str, Any]) -> None:
        try:
            answer = await self.enclave.request(m.JoinAdmit(request))
        except RpcError as exc:
            reason = exc.reason_code or "refused"
            record = exc.data.get("record") if isinstance(exc.data, dict) else None
            if reason == "node-pending":  # it asks every few seconds: counted, rate-limited
                assert self.links is not None
                self.links.refused.refuse(
                    "node-pending", "%r's join waits for a trust vote: %s", peer, exc.message
                )
                if isinstance(record, str):  # its join record, pooled here: to every node
                    self._on_governance(bytes.fromhex(record[2:]))
            else:
                log.warning("refused %r's join: %s: %s", peer, reason, exc.message)
            peer.send(wire.refused(reason, exc.message))
            return
        log.info("admitted %r to the consortium (sent the secret, wrapped to its enclave)", peer)
        peer.send(wire.frame("joined", wrapped=bytes(answer["wrapped"])))

    # ---------------------------------------------------------------- frames

    async def _on_up(self, peer: Peer) -> None:
        peer.send(self._status_frame())

    def _status_frame(self) -> dict[str, Any]:
        return wire.frame(
            "status",
            height=max(self.head, 0),
            finalized=max(self._finalized, 0),
            state=self.state[:64],
        )

    async def _on_frame(self, peer: Peer, frame: dict[str, Any]) -> None:
        kind = frame["t"]
        waiting = self._snapshot_reply
        if (
            kind in ("snapshot", "refused")
            and waiting is not None
            and not waiting.done()
            and peer is self._snapshot_peer
        ):
            waiting.set_result(frame)
            return
        if kind == "snapshot":
            return  # an answer that came too late
        if kind in ("joined", "refused"):
            reply = getattr(self, "_join_reply", None)
            if reply is not None and not reply.done():
                reply.set_result(frame)
            elif kind == "refused":
                log.warning("%r refused: %s: %s", peer, frame["reason"], frame["message"])
            return
        if kind == "join":
            if self.state == "ready":
                await self._admit(peer, frame["request"])
            else:
                peer.send(wire.refused("not-ready", "this node has not joined the consortium yet"))
            return
        if self.state != "ready":
            # nothing to serve yet; said at once, so the asker tries another peer or later
            # instead of waiting out its timeout for an answer that would not come
            if kind == "getBlocks":
                peer.send(wire.frame("blocks", items=[]))
            elif kind == "getSnapshot":
                peer.send(wire.refused("not-ready", "this node has no state to serve yet"))
            return  # nothing to do with chain traffic before the secret is here
        if kind == "qbft":
            height = wire.qbft_height(frame["m"])
            if height is not None and height <= self.head and peer.finalized >= height:
                # its sender told us it has decided that height: not a sign that it is behind
                # (that would have us send it blocks), but a replay
                assert self.links is not None
                self.links.refused.refuse(
                    STALE, "a QBFT message of height %d from %r, which is at %d", height, peer,
                    peer.finalized,
                )  # fmt: skip
                return
            if height == self.head + 2 and peer.trusted and not peer.public:
                # its sender works on the height after the one this node is deciding: it has
                # decided ours, whose COMMITs this node missed; they will not come again
                # (when the others are no quorum without this node, the chain waits for it),
                # so fetch that one block now (its status may not say so yet: it is sent
                # every STATUS_SECONDS; a claim that is not true gets no blocks, and the
                # imported ones are checked against their commit seals). Further behind,
                # the status decides, between blocks and a sealed snapshot
                self._want_sync(peer, self.head + 1)
            if len(self._inbox) >= INBOX_LIMIT:
                log.warning(
                    "QBFT inbox full (%d messages): dropping one from %r", INBOX_LIMIT, peer
                )
                return
            self._inbox.append([frame["m"], frame["s"]])
            self._inbox_wake.set()
        elif kind == "txs":
            await self._import_txs(peer, frame["blobs"])
        elif kind == "revoked":
            await self._import_revocations(peer, frame["blobs"])
        elif kind == "status":
            became_ready = frame["state"] == "ready" and peer.state != "ready"
            peer.height, peer.finalized, peer.state = (
                frame["height"],
                frame["finalized"],
                frame["state"],
            )
            if became_ready and not peer.public:
                # a peer just linked (or joined): it gets every sign-out it may have missed
                self._spawn(self._send_revocations(peer), "p2p-revocations")
            # a validator one block behind is normally just about to decide that block itself;
            # still behind at the same head a second later, it missed the decision (or the
            # next height's messages said so first: "qbft" above)
            if (
                peer.finalized > self.head
                and not peer.public
                and peer.trusted
                and (
                    self.settings.role != "validator"
                    or peer.finalized >= self.head + 2
                    or self._still_behind()
                )
            ):
                self._want_sync(peer, peer.finalized)
        elif kind == "getBlocks":
            await self._serve_blocks(peer, frame)
        elif kind == "blocks":
            await self._on_blocks(peer, frame["items"])
        elif kind == "getSnapshot":
            await self._serve_snapshot(peer, frame)

    async def _serve_snapshot(self, peer: Peer, frame: dict[str, Any]) -> None:
        """The next sealed chunk of a snapshot of this node's finalized state."""
        try:
            answer = await self.enclave.request(
                m.ExportSnapshot(frame["head"], frame["cursor"], frame["limit"])
            )
        except RpcError as exc:
            log.info("snapshot for %r refused: %s", peer, exc.message)
            peer.send(wire.refused(exc.reason_code or "snapshot-refused", exc.message))
            return
        peer.send(
            wire.frame(
                "snapshot",
                height=int(answer["height"]),
                hash=bytes(answer["hash"]),
                next=answer["next"],
                total=int(answer["total"]),
                chunk=bytes(answer["chunk"]),
            )
        )

    async def _serve_blocks(self, peer: Peer, frame: dict[str, Any]) -> None:
        public = frame["public"] or peer.public
        try:
            items = await self.enclave.request(
                m.ExportBlocks(frame["start"], min(frame["count"], wire.MAX_BATCH), public)
            )
        except RpcError as exc:
            peer.send(wire.refused(exc.reason_code or "export-failed", exc.message))
            return
        peer.send(wire.frame("blocks", items=list(items)))

    # ---------------------------------------------------------------- transactions

    def _on_transaction(self, tx_hash: bytes) -> None:
        super()._on_transaction(tx_hash)
        if len(self._forward) < 65536:
            self._forward.append(tx_hash)
            self._forward_wake.set()

    def _on_governance(self, record_hash: bytes) -> None:
        """A governance record pooled here: forwarded with the transactions (in the clear)."""
        if len(self._forward) < 65536:
            self._forward.append(record_hash)
            self._forward_wake.set()

    async def _forward_loop(self) -> None:
        """Forward this node's new transactions, sealed by its enclave, to every peer."""
        assert self.links is not None
        while True:
            await self._forward_wake.wait()
            self._forward_wake.clear()
            while self._forward:
                hashes, self._forward = self._forward[:FORWARD_BATCH], self._forward[FORWARD_BATCH:]
                try:
                    blobs = await self.enclave.request(m.ExportPooledTxs(hashes))
                except RpcError as exc:
                    log.warning("cannot forward %d transaction(s): %s", len(hashes), exc.message)
                    continue
                if blobs:
                    self.links.broadcast(
                        wire.frame("txs", blobs=list(blobs)), roles=("validator", "member")
                    )

    async def _import_txs(self, peer: Peer, blobs: list[bytes]) -> None:
        try:
            answer = await self.enclave.request(m.ImportPooledTxs(blobs))
        except RpcError as exc:
            log.warning("transactions forwarded by %r refused: %s", peer, exc.message)
            return
        for tx_hash in answer.get("admitted", []):
            Node._on_transaction(self, bytes(tx_hash))  # listeners, not forwarded again
        if answer.get("refused"):
            log.debug("%d forwarded transaction(s) from %r refused", answer["refused"], peer)

    # ---------------------------------------------------------------- sessions

    def _on_sign_out(self, revocation: bytes) -> None:
        """A session signed out here: every member and validator is told at once, sealed."""
        if self.links is not None:
            self.links.broadcast(
                wire.frame("revoked", blobs=[revocation]), roles=("validator", "member")
            )

    async def _send_revocations(self, peer: Peer) -> None:
        """Every live revocation this node keeps, to a peer that just became ready."""
        try:
            blobs = await self.enclave.request(m.ExportRevocations())
        except RpcError as exc:
            log.warning("cannot export session revocations for %r: %s", peer, exc.message)
            return
        for frame in _revoked_frames(list(blobs)):
            peer.send(frame)
        if blobs:
            log.info("sent %r this node's session revocations (%d blob(s))", peer, len(blobs))

    async def _import_revocations(self, peer: Peer, blobs: list[bytes]) -> None:
        try:
            answer = await self.enclave.request(m.ImportRevocations(blobs))
        except RpcError as exc:
            log.warning("session revocations from %r refused: %s", peer, exc.message)
            return
        if answer.get("refused"):
            log.warning("%d revocation blob(s) from %r did not open", answer["refused"], peer)
        relay = list(answer.get("relay") or [])
        if relay and self.links is not None:
            # new here: pass them on, so a node not linked to their origin hears of them too
            for other in self.links.live():
                if other is not peer and not other.public and other.address != peer.address:
                    for frame in _revoked_frames(relay):
                        other.send(frame)

    # ---------------------------------------------------------------- consensus

    async def _consensus_loop(self) -> None:
        """One ConsensusStep at a time: the inbox in batches, and the enclave's timer."""
        self._timer_at = clock.now()  # a first step at once: the enclave starts its round
        while True:
            now = clock.now()
            tick = self._timer_at is not None and now >= self._timer_at
            if not self._inbox and not tick:
                timeout = None if self._timer_at is None else max(0.0, self._timer_at - now)
                self._inbox_wake.clear()
                try:
                    await asyncio.wait_for(self._inbox_wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            inbound = [self._inbox.popleft() for _ in range(min(len(self._inbox), STEP_BATCH))]
            if tick:
                self._timer_at = None
            try:
                answer = await self.enclave.request(
                    m.ConsensusStep(now=now, inbound=inbound, tick=tick)
                )
            except RpcError as exc:
                self.last_error = f"consensus step: {exc.message}"
                log.error("%s", self.last_error)
                self._timer_at = clock.now() + 1.0
                continue
            await self._apply_step(answer)

    async def _apply_step(self, answer: dict[str, Any]) -> None:
        assert self.links is not None
        for message, sidecar in answer.get("outbound", []):
            self.links.seen.add(wire.frame_hash("qbft", bytes(message)))
            self.links.broadcast(wire.frame("qbft", m=message, s=sidecar), roles=("validator",))
        timer = answer.get("timer")
        if timer is not None:
            self._timer_at = float(timer)
        status = answer.get("status")
        if status:
            self.consensus = status
        for discarded in answer.get("discarded", []):
            sender = discarded.get("sender")
            self.links.refused.refuse(
                str(discarded.get("reason"))[:64],
                "a QBFT message%s (discarded by the enclave)",
                f" from 0x{bytes(sender).hex()}" if sender else "",
            )
        for block in answer.get("decided", []):
            public = {k: v for k, v in block.items() if k != "summary"}
            self.links.broadcast(wire.frame("blocks", items=[public]), roles=("member", "observer"))
            await self._adopt_summary(block["summary"])
        for peer_address, height in answer.get("behind", []):
            peer = self.links.by_address(bytes(peer_address))
            if peer is not None and peer.finalized < int(height):  # else it has them
                await self._serve_blocks(
                    peer, {"start": int(height), "count": wire.MAX_BATCH, "public": False}
                )

    async def _adopt_summary(self, summary: dict[str, Any]) -> None:
        """A block committed in the enclave (decided or imported): tell the host's view and
        every block listener (subscriptions, filters)."""
        number = int(summary["number"])
        if number <= self.head and self.head > 0 and number != self.head:
            return
        self.head = max(self.head, number)
        self._finalized = max(self._finalized, number)
        self.api.view.head_number = max(self.api.view.head_number, number)
        if "gasPrice" in summary:
            self.api.view.gas_price = int(summary["gasPrice"])
        if "privacy" in summary:  # a governed chain's privacy policy, as of this block
            self.api.strict = summary["privacy"] == "strict"
        transactions = summary.get("transactions") or []
        if transactions:
            log.info(
                "block %d final with %d transaction(s) 0x%s",
                number,
                len(transactions),
                bytes(summary["hash"]).hex(),
            )
        for listener in self.block_listeners:
            try:
                await listener(summary)
            except Exception:
                log.exception("a block listener failed")

    # ---------------------------------------------------------------- catch-up

    async def _status_loop(self) -> None:
        assert self.links is not None
        while True:
            await self._refresh_gov_nodes()
            await asyncio.sleep(STATUS_SECONDS)
            self.links.broadcast(self._status_frame())

    def _gov_node_state(self, address: bytes) -> str | None:
        return self._gov_nodes.get(address)

    async def _refresh_gov_nodes(self) -> None:
        """Read the governance state's nodes when the head moved (a governed chain): the
        links admit and serve by it; a link to a node retired by vote is dropped."""
        if self.links is None or self.links.config.governed is None or self.state != "ready":
            return
        if self._gov_nodes_at == self.head:
            return
        try:
            nodes = await self.enclave.request(m.GovQuery("nodes"))
        except (RpcError, ConnectionError, OSError) as exc:
            log.debug("cannot read the governance nodes: %s", exc)
            return
        self._gov_nodes = {bytes.fromhex(a[2:]): str(n["state"]) for a, n in dict(nodes).items()}
        self._gov_nodes_at = self.head
        for peer in self.links.live():
            if peer.address is not None and self._gov_nodes.get(peer.address) == "retired":
                log.warning("dropping the link to %r: the members retired that node", peer)
                peer.abort()

    def _still_behind(self) -> bool:
        """Whether a peer's status said this node was behind at this same head at least
        BEHIND_GRACE seconds ago too (the first such status only starts the clock)."""
        now = time.monotonic()
        seen = self._behind_at
        if seen is None or seen[0] != self.head:
            self._behind_at = (self.head, now)
            return False
        return now - seen[1] >= BEHIND_GRACE

    def _want_sync(self, peer: Peer, target: int) -> None:
        current = self._sync_wanted
        if current is None or target > current[1]:
            self._sync_wanted = (peer, target)
            self._sync_wake.set()

    async def _sync_loop(self) -> None:
        """Fetch finalized blocks in batches of 64 from a peer that is ahead."""
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            while self._sync_wanted is not None:
                peer, target = self._sync_wanted
                if peer.closed or self.head >= target:
                    self._sync_wanted = None
                    break
                if self._snapshot_wanted(target):
                    if not await self._snapshot(peer, target):
                        self._snapshot_paused_until = time.monotonic() + SNAPSHOT_PAUSE
                        log.warning(
                            "snapshot: falling back to block-by-block catch-up for %g s",
                            SNAPSHOT_PAUSE,
                        )
                    continue
                start = self.head + 1
                self._batch_start = start
                self._batch = asyncio.get_running_loop().create_future()
                peer.send(wire.frame("getBlocks", start=start, count=wire.MAX_BATCH, public=False))
                try:
                    items = await asyncio.wait_for(self._batch, SYNC_TIMEOUT)
                except TimeoutError:
                    log.warning("catch-up: %r sent no blocks in %g s", peer, SYNC_TIMEOUT)
                    self._sync_wanted = None
                    break
                if not items:
                    self._sync_wanted = None
                    break
                if not await self._import(peer, items):
                    self._sync_wanted = None
                    break
                self._progress.update(self.head, target, start)

    def _snapshot_wanted(self, target: int) -> bool:
        """Far enough behind (``snapshotThreshold`` finalized blocks or more) to start from a
        peer's sealed snapshot rather than replay every block, and not just failed at it."""
        threshold = self.settings.snapshot_threshold
        return (
            threshold > 0
            and target - self.head >= threshold
            and time.monotonic() >= self._snapshot_paused_until
        )

    async def _ask_snapshot(self, peer: Peer, head: bytes | None, cursor: bytes) -> dict[str, Any]:
        """One getSnapshot to ``peer``: its ``snapshot`` frame, or a ``refused`` one."""
        self._snapshot_reply = asyncio.get_running_loop().create_future()
        self._snapshot_peer = peer
        try:
            if not peer.send(
                wire.frame("getSnapshot", head=head, cursor=cursor, limit=SNAPSHOT_CHUNK)
            ):
                return wire.refused("link-down", f"cannot send to {peer!r}")
            try:
                return await asyncio.wait_for(self._snapshot_reply, SYNC_TIMEOUT)
            except TimeoutError:
                return wire.refused("timeout", f"no snapshot chunk in {SYNC_TIMEOUT:g} s")
        finally:
            self._snapshot_reply = self._snapshot_peer = None

    async def _snapshot(self, peer: Peer, target: int) -> bool:
        """Fetch a sealed snapshot of ``peer``'s finalized state chunk by chunk into the
        enclave (which checks and stages each), then have the enclave check and open it.
        Resumes a snapshot staged before a restart when the peer still serves it; starts
        over when it does not. False when it failed (logged, with the reason)."""
        status = await self.enclave.request(m.GetStatus())
        staged = status.get("snapshot")
        head: bytes | None = None
        cursor: bytes | None = b""
        done = 0
        if staged is not None:
            head, cursor, done = bytes(staged["hash"]), staged["next"], int(staged["bytes"])
            log.info(
                "snapshot: resuming the snapshot of block %d staged before (%.1f MB)",
                staged["height"],
                done / 1e6,
            )
        else:
            log.info(
                "snapshot: %d blocks behind %r: starting from a sealed snapshot of its state",
                target - self.head,
                peer,
            )
        total, height, failures = 0, 0, 0
        while cursor is not None:
            reply = await self._ask_snapshot(peer, head, cursor)
            if reply["t"] == "refused":
                if reply["reason"] == "snapshot-expired" and head is not None:
                    log.info("snapshot: %r no longer serves that snapshot: starting over", peer)
                    head, cursor, done = None, b"", 0
                    continue
                self.last_error = f"snapshot from {peer!r}: {reply['reason']}: {reply['message']}"
                log.warning("%s", self.last_error)
                return False
            try:
                answer = await self.enclave.request(m.ImportSnapshot(reply["chunk"]))
            except RpcError as exc:
                failures += 1
                self.last_error = (
                    f"snapshot chunk from {peer!r} refused: {exc.reason_code}: {exc.message}"
                )
                log.warning("%s", self.last_error)
                if failures > SNAPSHOT_RETRIES or exc.reason_code == "snapshot-not-ahead":
                    await self.enclave.request(m.DropSnapshot())
                    return False
                continue  # ask for the same chunk again
            head, cursor, failures = bytes(reply["hash"]), answer["next"], 0
            done, total, height = int(answer["bytes"]), int(reply["total"]), int(reply["height"])
            self._progress.snapshot(done, total, height)
        try:
            opened = await self.enclave.request(m.FinishSnapshot())
        except RpcError as exc:
            self.last_error = f"snapshot from {peer!r} refused: {exc.reason_code}: {exc.message}"
            log.warning("%s", self.last_error)
            return False
        number = int(opened["height"])
        self.head = max(self.head, number)
        self._finalized = max(self._finalized, number)
        self.api.view.head_number = max(self.api.view.head_number, number)
        log.info(
            "snapshot: opened block %d 0x%s; the blocks after it come by catch-up",
            number,
            bytes(opened["hash"]).hex(),
        )
        return True

    async def _on_blocks(self, peer: Peer, items: list[dict[str, Any]]) -> None:
        if self._answers_batch(items):
            self._batch.set_result(items)
            return
        if not items or peer.public:
            return  # blocks come from members (an observer has no bodies to give)
        first = int(items[0]["number"])
        if first > self.head + 1:
            self._want_sync(peer, int(items[-1]["number"]))
            return
        fresh = [b for b in items if int(b["number"]) > self.head]
        if fresh and self.settings.role != "validator":
            await self._import(peer, fresh)

    async def _import(self, peer: Peer, items: list[dict[str, Any]]) -> bool:
        async with self._sync_lock:
            fresh = [b for b in items if int(b["number"]) > self.head]
            if not fresh:
                return True
            try:
                answer = await self.enclave.request(m.ImportBlocks(fresh))
            except RpcError as exc:
                self.last_error = f"blocks from {peer!r} refused: {exc.message}"
                log.warning("%s (%s)", self.last_error, exc.reason_code)
                return False
            for summary in answer.get("decided", []):
                await self._adopt_summary(summary)
            self.head = max(self.head, int(answer.get("head", self.head)))
            self._finalized = max(self._finalized, self.head)
            self.api.view.head_number = max(self.api.view.head_number, self.head)
            return True


def _revoked_frames(blobs: list[bytes]) -> list[dict[str, Any]]:
    """Sealed revocation blobs as ``revoked`` frames of at most MAX_REVOCATION_BLOBS each."""
    step = wire.MAX_REVOCATION_BLOBS
    return [wire.frame("revoked", blobs=blobs[i : i + step]) for i in range(0, len(blobs), step)]


def _hex_or_none(value: Any) -> str | None:
    return None if value is None else "0x" + bytes(value).hex()


# ------------------------------------------------------------------ observers


PUBLIC_METHODS = (
    "eth_chainId",
    "net_version",
    "web3_clientVersion",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "coco_getFinality",
    "coco_nodeStatus",
    "coco_nodeInfo",  # chain id, genesis hash, validators: what a member's CLI signs against
    # governance is public (docs/GOVERNANCE.md): an observer follows it from the blocks
    "coco_govState",
    "coco_govMembers",
    "coco_govNodes",
    "coco_govConstitution",
    "coco_govProposals",
    "coco_govProposal",
    "coco_govBlock",
)


class ObserverNode(_P2pShell, Node):
    """Follows finalized headers and seals from peers, checks each block's quorum of commit
    seals, and serves public RPC only; no enclave, no secret, no plaintext."""

    def __init__(self, config: NodeConfig, settings: NodeSettings) -> None:
        self.settings = settings
        self.store = HeaderStore(
            settings.data_dir, settings.chain_id, settings.validators, settings.terms
        )
        super().__init__(config)
        self.api.node_status = self.node_status
        self.links = None
        self._p2p_runner = None
        self._tasks = set()
        self.last_error = None
        self._terms_hash = terms_digest(settings.terms)
        self._sync_wake = asyncio.Event()
        self._sync_from: Peer | None = None
        self._progress = Progress()

    def _make_enclave(self) -> EnclaveClient:
        return ObserverBackend(self.store, self.settings.terms)

    def rpc_methods(self) -> dict[str, Method]:
        table = dict(self.api.methods())
        refuse = _refuse_observer
        return {name: (table[name] if name in PUBLIC_METHODS else refuse) for name in table}

    @property
    def finalized(self) -> int:
        return max(self.store.head, 0)

    async def start(self) -> None:
        settings = self.settings
        if self.store.genesis is None:
            await self._genesis_from_terms()
        self.links = Links(
            LinkConfig(
                chain_id=settings.chain_id,
                genesis=self.store.genesis,
                role="observer",
                address=None,
                sign=None,
                tls=self._tls_identity(),
                nodes=settings.nodes(),
            ),
            self._on_frame,
            self._on_up,
        )
        await self.api.start()
        self.api.view.head_number = max(self.store.head, 0)
        await self._serve_p2p()
        self.links.dial(settings.peers)
        self._spawn(self._sync_loop(), "observer-sync")
        log.info(
            "observer node %s, chain %d: follows %s; stored head %d",
            settings.name,
            settings.chain_id,
            ", ".join(settings.peers) or "no peers",
            self.store.head,
        )

    async def _genesis_from_terms(self) -> None:
        """Pin the genesis that consortium.json makes, computed by the enclave's code in a
        short-lived process (no key, no secret: ``GenesisOf``), so that a peer of another
        consortium is refused as ``wrong-genesis`` before anything else is said of it. If that
        process cannot run, the genesis is learnt from the first listed member instead."""
        enclave = ProcessEnclave()
        try:
            answer = await enclave.start_identity(m.GenesisOf(self.settings.terms))
            genesis = bytes(answer["genesisHash"])
        except (RpcError, OSError, KeyError, TypeError) as exc:
            log.warning(
                "could not compute the genesis from consortium.json (%s): it will be learnt "
                "from the first listed member",
                exc,
            )
            return
        finally:
            await enclave.close()
        self.store.pin_genesis(genesis)
        log.info("genesis 0x%s, computed from consortium.json", genesis.hex())

    async def stop(self) -> None:
        log.info("stopping observer %s: closing its links and its header store", self.settings.name)
        await self._stop_p2p()
        await self.enclave.close()

    async def node_status(self) -> dict[str, Any]:
        links = self.links.summary() if self.links is not None else []
        head = max(self.store.head, 0)
        return {
            "name": self.settings.name,
            "role": "observer",
            "state": "observing",
            "address": None,
            "height": head,
            "finalized": head,
            "round": None,
            "proposer": None,
            "peers": links,
            # the next height's, as the governance sections it follows left them
            "validators": ["0x" + v.hex() for v in self.store.validators_for(head + 1)],
            "lastError": self.last_error,
            "refused": self.links.refused.snapshot() if self.links is not None else {},
        }

    async def _on_up(self, peer: Peer) -> None:
        assert self.links is not None
        if self.store.genesis is None and peer.address is not None:
            # the first authenticated member vouched for this genesis in its signed handshake
            genesis = self.links.config.genesis
            if genesis is not None:
                self.store.pin_genesis(genesis)
        self._sync_from = peer
        self._sync_wake.set()

    async def _on_frame(self, peer: Peer, frame: dict[str, Any]) -> None:
        kind = frame["t"]
        if kind == "status":
            peer.height, peer.finalized = frame["height"], frame["finalized"]
            if peer.finalized > self.store.head:
                self._sync_from = peer
                self._sync_wake.set()
        elif kind == "blocks":
            if self._answers_batch(frame["items"]):
                self._batch.set_result(frame["items"])
            else:
                self._add(peer, frame["items"])
        elif kind == "getBlocks":
            peer.send(
                wire.frame("blocks", items=self.store.exported(frame["start"], frame["count"]))
            )
        elif kind == "refused":
            log.warning("%r refused: %s: %s", peer, frame["reason"], frame["message"])

    def _add(self, peer: Peer, items: list[dict[str, Any]]) -> bool:
        """Check and store blocks in order; a bad one stops the batch (logged, kept going)."""
        before = self.store.head
        for block in items:
            number = int(block["number"])
            if number <= self.store.head:
                continue
            if number > self.store.head + 1:
                self._sync_from = peer
                self._sync_wake.set()
                return False
            try:
                self.store.check(block, self._terms_hash)
            except BlockRefused as exc:
                self.last_error = f"block from {peer!r} refused: {exc}"
                log.warning("%s", self.last_error)
                return False
            self.store.add(block)
            summary = block_summary(block)
            for listener in self.block_listeners:
                asyncio.get_running_loop().create_task(_notify(listener, summary))
        if self.store.head > before:
            self.api.view.head_number = self.store.head
        return True

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            peer = self._sync_from
            if peer is None or peer.closed:
                continue
            target = max(peer.finalized, self.store.head + 1)
            while not peer.closed:
                start = self.store.head + 1
                self._batch_start = start
                self._batch = asyncio.get_running_loop().create_future()
                peer.send(wire.frame("getBlocks", start=start, count=wire.MAX_BATCH, public=True))
                try:
                    items = await asyncio.wait_for(self._batch, SYNC_TIMEOUT)
                except TimeoutError:
                    log.warning("catch-up: %r sent no blocks in %g s", peer, SYNC_TIMEOUT)
                    break
                if not items or not self._add(peer, items):
                    break
                target = max(target, peer.finalized)
                self._progress.update(self.store.head, target, start)
                if self.store.head >= peer.finalized:
                    break


async def _notify(listener: Callable[[dict[str, Any]], Awaitable[None]], summary: Any) -> None:
    try:
        await listener(summary)
    except Exception:
        log.exception("a block listener failed")


async def _refuse_observer(params: list[Any], ctx: Any) -> Any:
    raise ObserverRefusal()
