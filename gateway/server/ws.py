"""WebSocket connections and their eth_subscribe subscriptions (newHeads, logs, pending)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from gateway.api import params as p
from gateway.api.eth import PENDING_HIDDEN, _log_query
from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient
from gateway.errors import InvalidParams, LimitExceeded, RpcError, Unauthorized

log = logging.getLogger("gateway.server.ws")

MAX_SUBSCRIPTIONS_PER_CONNECTION = 1000
HEADER_ONLY_DROP = ("transactions", "uncles", "withdrawals", "size", "totalDifficulty")


@dataclass
class Subscription:
    kind: str
    query: m.GetLogs | None = None


@dataclass(eq=False)
class Connection:
    socket: web.WebSocketResponse
    auth: str | None = None  # the session token of the personal URL it connected on
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: Any) -> None:
        if self.socket.closed:
            return
        async with self.send_lock:
            try:
                await self.socket.send_str(json.dumps(payload, separators=(",", ":")))
            except (ConnectionError, RuntimeError):
                pass


class SubscriptionHub:
    def __init__(self, enclave: EnclaveClient) -> None:
        self.enclave = enclave
        self.connections: set[Connection] = set()
        self.strict = False

    def subscribe(self, conn: Connection, params: list[Any]) -> str:
        if not params:
            raise InvalidParams("missing value for required argument 0 (subscription kind)")
        kind = params[0]
        if kind == "newHeads":
            p.arity(params, 1)
            sub = Subscription("newHeads")
        elif kind == "logs":
            p.arity(params, 1, 1)
            query = replace(_log_query(p.optional(params, 1, {}), "filter", 1), auth=conn.auth)
            sub = Subscription("logs", query)
        elif kind == "newPendingTransactions":
            p.arity(params, 1, 1)
            if self.strict:
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
        header = {k: v for k, v in result["header"].items() if k not in HEADER_ONLY_DROP}
        number = int(result["number"])
        for conn in list(self.connections):
            for sub_id, sub in list(conn.subscriptions.items()):
                if sub.kind == "newHeads":
                    await conn.send(_notification(sub_id, header))
                elif sub.kind == "logs" and sub.query is not None and result["transactions"]:
                    query = replace(sub.query, from_block=number, to_block=number, block_hash=None)
                    try:
                        logs = await self.enclave.request(query)
                    except RpcError as exc:
                        log.warning("logs subscription %s: %s", sub_id, exc.message)
                        continue
                    for entry in logs:
                        await conn.send(_notification(sub_id, entry))

    async def on_transaction(self, tx_hash: bytes) -> None:
        for conn in list(self.connections):
            for sub_id, sub in list(conn.subscriptions.items()):
                if sub.kind == "newPendingTransactions":
                    await conn.send(_notification(sub_id, "0x" + tx_hash.hex()))


def _notification(sub_id: str, result: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "eth_subscription",
        "params": {"subscription": sub_id, "result": result},
    }
