"""A checking proxy: clients talk to it, it forwards to a node and checks every answer.

Each JSON-RPC response that passes through (HTTP or WebSocket, single or batch) is checked
against the execution-apis shapes in ``rpc_schemas``; WebSocket subscription notifications
are checked too. Tests run a real client (ethers, viem, cast, Hardhat, MetaMask's packages)
against ``proxy.url`` and then assert ``proxy.problems == []``, so a failure names the
method and the field.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web
from conftest import free_port
from rpc_schemas import SchemaMismatch, has_schema, validate_notification, validate_result


class CheckingProxy:
    def __init__(self, upstream_http: str) -> None:
        self.upstream = upstream_http
        self.upstream_ws = upstream_http.replace("http://", "ws://")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.problems: list[str] = []
        self.calls: Counter[str] = Counter()
        self._subscriptions: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    # -- checking --------------------------------------------------------------------------
    def _check_pair(self, request: Any, response: Any) -> None:
        if not isinstance(request, dict) or not isinstance(response, dict):
            return
        method = str(request.get("method"))
        self.calls[method] += 1
        if "result" not in response:
            return
        result = response["result"]
        if method == "eth_subscribe" and isinstance(result, str):
            params = request.get("params") or [""]
            self._subscriptions[result] = str(params[0])
        if result is None or not has_schema(method):
            return
        pending = isinstance(result, dict) and result.get("blockHash", "x") is None
        try:
            validate_result(method, result, params=request.get("params"), pending=pending)
        except SchemaMismatch as exc:
            self.problems.append(str(exc))

    def _check_document(self, request: Any, response: Any) -> None:
        if isinstance(request, list) and isinstance(response, list):
            by_id = {json.dumps(r.get("id")): r for r in response if isinstance(r, dict)}
            for item in request:
                if isinstance(item, dict) and "id" in item:
                    answer = by_id.get(json.dumps(item.get("id")))
                    if answer is not None:
                        self._check_pair(item, answer)
        else:
            self._check_pair(request, response)

    def _check_notification(self, message: Any) -> None:
        if not isinstance(message, dict) or message.get("method") != "eth_subscription":
            return
        params = message.get("params") or {}
        kind = self._subscriptions.get(str(params.get("subscription")))
        if kind in ("newHeads", "logs", "newPendingTransactions"):
            try:
                validate_notification(kind, params)
            except SchemaMismatch as exc:
                self.problems.append(str(exc))

    # -- serving ---------------------------------------------------------------------------
    async def _http(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._ws(request)
        body = await request.read()
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            text = await upstream.read()
            status = upstream.status
        try:
            self._check_document(json.loads(body), json.loads(text) if text else None)
        except ValueError:
            pass
        return web.Response(
            body=text,
            status=status,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        pending: dict[str, Any] = {}
        async with self._session.ws_connect(self.upstream_ws, max_msg_size=0) as upstream:

            async def pump_up() -> None:
                async for msg in client:
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        break
                    try:
                        document = json.loads(msg.data)
                        items = document if isinstance(document, list) else [document]
                        for item in items:
                            if isinstance(item, dict) and "id" in item:
                                pending[json.dumps(item["id"])] = item
                    except ValueError:
                        pass
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await upstream.send_bytes(msg.data)
                    else:
                        await upstream.send_str(msg.data)
                await upstream.close()

            async def pump_down() -> None:
                async for msg in upstream:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    try:
                        document = json.loads(msg.data)
                        items = document if isinstance(document, list) else [document]
                        for item in items:
                            if isinstance(item, dict) and "id" in item:
                                req = pending.pop(json.dumps(item["id"]), None)
                                if req is not None:
                                    self._check_pair(req, item)
                            else:
                                self._check_notification(item)
                    except ValueError:
                        pass
                    await client.send_str(msg.data)
                await client.close()

            await asyncio.gather(pump_up(), pump_down(), return_exceptions=True)
        return client

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type",
            },
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._session = aiohttp.ClientSession()
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("POST", "/{tail:.*}", self._http)
            app.router.add_route("GET", "/{tail:.*}", self._http)
            app.router.add_route("OPTIONS", "/{tail:.*}", self._preflight)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def start(self) -> CheckingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def assert_clean(self) -> None:
        assert not self.problems, "responses that break the execution-apis shapes:\n" + "\n".join(
            self.problems[:20]
        )
