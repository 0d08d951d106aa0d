"""WebSocket connections and their eth_subscribe subscriptions (newHeads, logs, pending)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from gateway.api import params as p
from gateway.api.eth import PENDING_HIDDEN
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient
from gateway.errors import InvalidParams, LimitExceeded, RpcError, Unauthorized

log = logging.getLogger("gateway.server.ws")

MAX_SUBSCRIPTIONS_PER_CONNECTION = 1000
# A client's unread messages: past either bound it is closed with SLOW_CONSUMER. The byte
# bound is what a stalled client may cost the node's memory (the kernel's socket buffers
# and aiohttp's, ~64 KiB, come on top). 16 MiB is twice the notifications of the largest
# block (30M gas at 8 gas a byte of LOG data: 3.75 MB, 7.5 MB as hex), so a reader that
# keeps up survives any burst.
MAX_QUEUED_MESSAGES = 10_000
MAX_QUEUED_BYTES = 16 * 1024 * 1024
SLOW_CONSUMER = 1008  # policy violation
CLOSE_GRACE_SECONDS = 30.0
HEADER_ONLY_DROP = ("transactions", "uncles", "withdrawals", "size", "totalDifficulty")


@dataclass
class Subscription:
    kind: str
    query: m.GetLogs | None = None


@dataclass(eq=False)
class Connection:
    """One WebSocket client: what it subscribed to, and its outgoing queue.

    Nothing waits on a client's socket but the connection's own writer task: the block
    producer and the request loop only ``send`` (enqueue). A client that lets more than
    ``max_messages`` messages or ``max_bytes`` bytes pile up unread is closed (1008) with
    the reason, so a stalled reader costs the node a bounded amount of memory and nobody
    any time.
    """

    socket: web.WebSocketResponse
    auth: str | None = None  # the session token of the personal URL it connected on
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    transport: asyncio.Transport | None = None  # aborted when a dropped client lingers
    peer: str = "?"
    max_messages: int = MAX_QUEUED_MESSAGES
    max_bytes: int = MAX_QUEUED_BYTES
    dropped: bool = False
    _queue: deque[tuple[tuple[str, ...], int]] = field(default_factory=deque)
    _queued_bytes: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writer: asyncio.Task[None] | None = None

    def send(self, payload: Any) -> None:
        self.send_parts((_dump(payload),))

    def send_parts(self, parts: tuple[str, ...]) -> None:
        """Queue one message, given as the parts it concatenates; never waits.

        The parts are shared between subscribers (a block's header and log texts are
        encoded once), so many clients behind on the same blocks cost little more memory
        than one. Drops the client if it is too far behind.
        """
        if self.dropped or self.socket.closed:
            return
        size = sum(map(len, parts))
        # a single message larger than max_bytes (a big eth_getLogs answer) still goes
        # out when nothing else is waiting
        if self._queue and (
            len(self._queue) >= self.max_messages or self._queued_bytes + size > self.max_bytes
        ):
            self._drop()
            return
        self._queue.append((parts, size))
        self._queued_bytes += size
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            parts, size = self._queue.popleft()
            self._queued_bytes -= size
            try:
                await self.socket.send_str("".join(parts))
            except (ConnectionError, RuntimeError):
                return  # closed under us: the request loop notices and cleans up

    def _drop(self) -> None:
        count, size = len(self._queue), self._queued_bytes
        self.dropped = True
        self._queue.clear()
        self._queued_bytes = 0
        log.info(
            "closing the WebSocket of %s: too slow, %d messages (%d bytes) queued unread",
            self.peer,
            count,
            size,
        )
        reason = f"subscriber too slow: {count} messages queued"
        self._spawn(self.close(SLOW_CONSUMER, reason))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, code: int, reason: str, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Send a close frame; give the client ``grace`` seconds to read up to it and
        answer, then abort: a client that never reads must not keep its socket and
        buffers forever (aborting a connection already gone does nothing)."""
        self.stop_writer()
        if self.transport is not None:
            asyncio.get_running_loop().call_later(grace, self.transport.abort)
        try:
            await asyncio.wait_for(
                self.socket.close(code=code, message=reason.encode(), drain=False), grace
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass

    def stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None


class SubscriptionHub:
    def __init__(self, enclave: EnclaveClient) -> None:
        self.enclave = enclave
        self.connections: set[Connection] = set()
        self.strict_of: Callable[[], bool] = lambda: False  # the node's privacy in force
        self._blocks: deque[dict[str, Any]] = deque()
        self._block_wake = asyncio.Event()
        self._announcer: asyncio.Task[None] | None = None

    def subscribe(self, conn: Connection, params: list[Any]) -> str:
        if not params:
            raise InvalidParams("missing value for required argument 0 (subscription kind)")
        kind = params[0]
        if kind == "newHeads":
            p.arity(params, 1)
            sub = Subscription("newHeads")
        elif kind == "logs":
            p.arity(params, 1, 1)
            query = replace(p.log_query(p.optional(params, 1, {}), "filter", 1), auth=conn.auth)
            sub = Subscription("logs", query)
        elif kind == "newPendingTransactions":
            p.arity(params, 1, 1)
            if self.strict_of():
                raise Unauthorized(PENDING_HIDDEN)
            sub = Subscription("newPendingTransactions")
        elif kind == "syncing":
            raise InvalidParams("the syncing subscription is not supported: this node never syncs")
        else:
            raise InvalidParams(f"invalid argument 0 (subscription kind): no {kind!r} subscription")
        if len(conn.subscriptions) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise LimitExceeded("too many subscriptions on this connection")
        sub_id = hex(secrets.randbits(128) | 1 << 127)
        conn.subscriptions[sub_id] = sub
        return sub_id

    async def on_block(self, result: dict[str, Any]) -> None:
        """Queue the block for announcement and return at once: the block producer calls
        this and must never wait on subscribers (nor on their log queries)."""
        self._blocks.append(result)
        if self._announcer is None:
            self._announcer = asyncio.get_running_loop().create_task(self._announce_loop())
        self._block_wake.set()

    async def on_transaction(self, tx_hash: bytes) -> None:
        hash_text = _dump("0x" + tx_hash.hex())
        for conn in list(self.connections):
            for sub_id, sub in list(conn.subscriptions.items()):
                if sub.kind == "newPendingTransactions":
                    conn.send_parts(_notification(sub_id, hash_text))

    async def close(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            self._announcer = None

    async def _announce_loop(self) -> None:
        while True:
            while not self._blocks:
                self._block_wake.clear()
                await self._block_wake.wait()
            result = self._blocks.popleft()
            try:
                await self._announce(result)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("announcing block %s failed", result.get("number"))

    async def _announce(self, result: dict[str, Any]) -> None:
        header = {k: v for k, v in result["header"].items() if k not in HEADER_ONLY_DROP}
        header_text = _dump(header)
        number = int(result["number"])
        # one enclave query per distinct filter (and caller), not one per subscription
        logs: dict[Any, list[str] | None] = {}
        if result["transactions"]:
            for conn in list(self.connections):
                for sub in list(conn.subscriptions.values()):
                    if sub.kind != "logs" or sub.query is None or conn.dropped:
                        continue
                    query = replace(sub.query, from_block=number, to_block=number, block_hash=None)
                    key = _query_key(query)
                    if key in logs:
                        continue
                    try:
                        entries = await self.enclave.request(query)
                    except RpcError as exc:
                        log.warning("logs subscription for block %d: %s", number, exc.message)
                        logs[key] = None
                        continue
                    logs[key] = [_dump(entry) for entry in entries]
        for conn in list(self.connections):
            for sub_id, sub in list(conn.subscriptions.items()):
                if sub.kind == "newHeads":
                    conn.send_parts(_notification(sub_id, header_text))
                elif sub.kind == "logs" and sub.query is not None and result["transactions"]:
                    query = replace(sub.query, from_block=number, to_block=number, block_hash=None)
                    for entry_text in logs.get(_query_key(query)) or ():
                        conn.send_parts(_notification(sub_id, entry_text))


def _query_key(query: m.GetLogs) -> Any:
    return (
        query.from_block,
        query.to_block,
        tuple(query.addresses),
        tuple(None if t is None else tuple(t) for t in query.topics),
        query.auth,
    )


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _notification(sub_id: str, result_text: str) -> tuple[str, str, str]:
    """An eth_subscription notification around an already-encoded result, in parts."""
    head = f'{_NOTIFICATION_HEAD}"subscription":"{sub_id}","result":'
    return (head, result_text, "}}")


_NOTIFICATION_HEAD = '{"jsonrpc":"2.0","method":"eth_subscription","params":{'
