"""The application factory: ``make_app(config)`` is what the CLI runs and the tests reuse."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from gateway import __version__
from gateway.errors import METHOD_NOT_FOUND, InvalidParams, LimitExceeded, ParseError, RpcError
from gateway.node import Node, NodeConfig
from gateway.rpc import Dispatcher, Limits
from gateway.server.keys import CONFIG, DISPATCHER, HUB, NODE, NODE_FACTORY
from gateway.server.logs import quiet_client_errors
from gateway.server.ws import Connection, SubscriptionHub

log = logging.getLogger("gateway.server")

STATIC = Path(__file__).resolve().parent / "static"
BODY_IDLE_SECONDS = 10.0  # a request body that pauses longer is refused (408)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "86400",
}


def _dump(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def _error_document(error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": error.to_json()}


def _json_response(document: Any, status: int = 200) -> web.Response:
    if document is None:
        return web.Response(status=200, headers=CORS_HEADERS)
    return web.Response(
        text=_dump(document), status=status, content_type="application/json", headers=CORS_HEADERS
    )


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    node = app[NODE_FACTORY](config)
    await node.start()
    hub = SubscriptionHub(node.enclave)
    hub.strict_of = lambda: bool(node.api.strict)  # a policy vote may change it
    node.block_listeners.append(hub.on_block)
    node.tx_listeners.append(hub.on_transaction)
    methods = node.rpc_methods()
    methods["eth_subscribe"] = methods["eth_unsubscribe"] = _no_subscriptions_over_http
    app[NODE] = node
    app[HUB] = hub
    app[DISPATCHER] = Dispatcher(methods, Limits(max_batch=config.max_batch))
    try:
        yield
    finally:
        await hub.close()
        await node.stop()
        log.info("node stopped cleanly")


async def _close_sockets(app: web.Application) -> None:
    hub = app.get(HUB)
    if hub is None:
        return
    await asyncio.gather(
        *(conn.close(1001, "node shutting down", grace=2) for conn in list(hub.connections))
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise LimitExceeded(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    # StreamReader.read(n) returns whatever is buffered (up to n bytes), not n bytes:
    # read until the end of the body, or until it is known to be over the limit.
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await asyncio.wait_for(
                request.content.read(limit + 1 - size), BODY_IDLE_SECONDS
            )
        except TimeoutError:
            # a client that stops sending, or a chunked body broken after its first
            # chunks: aiohttp's parser then drops the body without ending it
            raise BodyStalled(
                f"parse error: the request body stopped arriving (nothing for "
                f"{BODY_IDLE_SECONDS:g} s, {size} bytes read); it is malformed or incomplete"
            ) from None
        except web.RequestPayloadError:
            # aiohttp inflates gzip/deflate bodies as they arrive (in bounded steps, and
            # only as far as we read, so a compression bomb stops at the limit above)
            encoding = request.headers.get("Content-Encoding", "")
            raise BodyNotAsDeclared(
                f"parse error: the request body is not valid {encoding} data, "
                f"as its Content-Encoding header says it is"
                if encoding
                else "parse error: the request body is malformed"
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(f"request body exceeds the {limit}-byte limit")
    return b"".join(chunks)


class BodyNotAsDeclared(ParseError):
    """The body is not what its headers say (bad compression): HTTP 400, JSON-RPC -32700."""

    status = 400


class BodyStalled(BodyNotAsDeclared):
    """The body stopped arriving before its end: HTTP 408, JSON-RPC -32700."""

    status = 408


@dataclass(frozen=True)
class CallerContext:
    """Who is calling: the session token of a personal URL (/rpc/<token>), and the URL
    base the caller reached us at (for building personal URLs)."""

    auth: str | None
    base_url: str


def _context(request: web.Request) -> CallerContext:
    token = request.match_info.get("token")
    return CallerContext(auth=token or None, base_url=f"{request.scheme}://{request.host}")


async def http_rpc(request: web.Request) -> web.Response:
    app = request.app
    try:
        body = await _read_body(request, app[CONFIG].max_body_bytes)
    except BodyNotAsDeclared as exc:
        response = _json_response(_error_document(exc), status=exc.status)
        response.force_close()
        return response
    except RpcError as exc:
        return _json_response(_error_document(exc))
    document = await app[DISPATCHER].handle_text(body, _context(request))
    return _json_response(document)


async def root_get(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket_rpc(request)
    if "text/html" in request.headers.get("Accept", "") and "token" not in request.match_info:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
    node = request.app[NODE]
    info = {
        "client": f"coco-gateway/v{__version__}",
        "chainId": node.config.chain_id,
        "rpc": "POST JSON-RPC 2.0 here, or open a WebSocket on this URL",
    }
    return web.json_response(info, headers=CORS_HEADERS)


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS_HEADERS)


async def websocket_rpc(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    limit = app[CONFIG].max_body_bytes
    socket = web.WebSocketResponse(max_msg_size=limit, heartbeat=30)
    await socket.prepare(request)
    hub = app[HUB]
    context = _context(request)
    conn = Connection(
        socket,
        auth=context.auth,
        transport=request.transport,  # type: ignore[arg-type]
        peer=request.remote or "?",
    )
    hub.connections.add(conn)
    dispatcher = app[DISPATCHER]
    ws_dispatcher = Dispatcher(
        {**dispatcher.methods, **_subscription_methods(hub, conn)}, dispatcher.limits
    )
    try:
        async for msg in socket:
            if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                document = await ws_dispatcher.handle_text(msg.data, context)
            else:
                break
            if document is not None:
                conn.send(document)  # queued: the connection's writer task sends it
    finally:
        hub.connections.discard(conn)
        conn.stop_writer()
    return socket


def _subscription_methods(hub: SubscriptionHub, conn: Connection) -> dict[str, Any]:
    async def eth_subscribe(params: list[Any], ctx: Any) -> str:
        return hub.subscribe(conn, params)

    async def eth_unsubscribe(params: list[Any], ctx: Any) -> bool:
        if len(params) != 1 or not isinstance(params[0], str):
            raise InvalidParams("invalid argument 0 (subscription id): expected a hex string")
        return conn.subscriptions.pop(params[0].lower(), None) is not None

    return {"eth_subscribe": eth_subscribe, "eth_unsubscribe": eth_unsubscribe}


async def _no_subscriptions_over_http(params: list[Any], ctx: Any) -> Any:
    raise RpcError(
        "notifications not supported: eth_subscribe needs a WebSocket connection",
        code=METHOD_NOT_FOUND,
    )


def make_app(
    config: NodeConfig, node_factory: Callable[[NodeConfig], Node] = Node
) -> web.Application:
    # the body limit is enforced by _read_body with a JSON-RPC error; aiohttp's own cap
    # sits just above it so that oversized bodies reach our handler.
    app = web.Application(client_max_size=config.max_body_bytes + 1)
    quiet_client_errors()  # a client's malformed HTTP: one INFO line, not a traceback
    app[CONFIG] = config
    app[NODE_FACTORY] = node_factory
    app.cleanup_ctx.append(_node_ctx)
    app.on_shutdown.append(_close_sockets)
    app.router.add_post("/", http_rpc)
    app.router.add_get("/", root_get)
    app.router.add_route("OPTIONS", "/", preflight)
    # personal RPC URLs: the session token in the path, so that every tool accepts them
    app.router.add_post("/rpc/{token}", http_rpc)
    app.router.add_get("/rpc/{token}", root_get)
    app.router.add_route("OPTIONS", "/rpc/{token}", preflight)
    app.router.add_static("/static", STATIC, show_index=False)
    return app


__all__ = ["Node", "NodeConfig", "make_app"]
