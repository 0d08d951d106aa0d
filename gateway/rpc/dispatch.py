"""The JSON-RPC 2.0 state of affairs for one request body, independent of transport.

``Dispatcher.handle_text`` takes the raw body and returns the response document (or None
when every request in it was a notification). Every failure is an error object: the
transport always answers HTTP 200 with it, as Ethereum clients expect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import (
    InternalError,
    InvalidRequest,
    LimitExceeded,
    MethodNotFound,
    ParseError,
    RpcError,
)

log = logging.getLogger("gateway.rpc")

Handler = Callable[[list[Any], Any], Awaitable[Any]]
"""A method: positional params and the caller's context in, a JSON-ready result out."""


@dataclass(frozen=True)
class Limits:
    max_batch: int = 1000


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    )


class Dispatcher:
    def __init__(self, methods: Mapping[str, Handler], limits: Limits = Limits()) -> None:
        self.methods = methods
        self.limits = limits

    async def handle_text(self, body: str | bytes, ctx: Any = None) -> Any:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(None, ParseError("parse error: the request body is not valid JSON"))
        return await self.handle_document(document, ctx)

    async def handle_document(self, document: Any, ctx: Any = None) -> Any:
        if isinstance(document, list):
            if not document:
                return _error(None, InvalidRequest("empty batch"))
            if len(document) > self.limits.max_batch:
                return _error(
                    None,
                    LimitExceeded(
                        f"batch of {len(document)} requests exceeds the limit of "
                        f"{self.limits.max_batch}"
                    ),
                )
            replies = [await self.handle_one(item, ctx) for item in document]
            answered = [r for r in replies if r is not None]
            return answered or None
        return await self.handle_one(document, ctx)

    async def handle_one(self, request: Any, ctx: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, InvalidRequest("invalid request: expected a JSON object"))
        request_id = request.get("id")
        notification = "id" not in request
        if not _valid_id(request_id):
            return _error(None, InvalidRequest("invalid request: id must be a string or number"))
        if request.get("jsonrpc") != "2.0":
            return _error(request_id, InvalidRequest('invalid request: jsonrpc must be "2.0"'))
        method = request.get("method")
        if not isinstance(method, str):
            return _error(request_id, InvalidRequest("invalid request: method must be a string"))
        params = request.get("params", [])
        if params is None:
            params = []
        if isinstance(params, dict):
            if params:
                return _error(
                    request_id,
                    InvalidRequest("invalid request: named parameters are not supported; "
                                   "pass params as an array"),
                )
            params = []
        if not isinstance(params, list):
            return _error(request_id, InvalidRequest("invalid request: params must be an array"))
        handler = self.methods.get(method)
        try:
            if handler is None:
                raise MethodNotFound(method)
            result = await handler(params, ctx)
        except RpcError as exc:
            return None if notification else _error(request_id, exc)
        except Exception:
            log.exception("method %s failed", method)
            return None if notification else _error(request_id, InternalError("internal error"))
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}
