"""The JSON-RPC 2.0 state of affairs for one request body, independent of transport.

``Dispatcher.handle_text`` takes the raw body and returns the response document (or None
when every request in it was a notification). Every failure is an error object: the
transport always answers HTTP 200 with it, as Ethereum clients expect.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
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
    # json's C decoder recurses once per nesting level; under the host's raised recursion
    # limit (py_ecc sets 100000) a deeply nested body overflows the C stack and kills the
    # process, so nesting is measured before the body is handed to it.
    max_depth: int = 256


# a JSON string, or an unterminated one up to the end (so that the scan stays linear)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}


def _too_deep(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit`` (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


class Dispatcher:
    def __init__(self, methods: Mapping[str, Handler], limits: Limits = Limits()) -> None:
        self.methods = methods
        self.limits = limits

    async def handle_text(self, body: str | bytes, ctx: Any = None) -> Any:
        try:
            if isinstance(body, str):
                text, raw = body, body.encode("utf-8", "surrogatepass")
            else:
                text, raw = body.decode("utf-8-sig"), body
        except UnicodeError:
            return _error(None, ParseError("parse error: the request body is not UTF-8"))
        if _too_deep(raw, self.limits.max_depth):
            return _error(
                None,
                ParseError(
                    f"parse error: the request nests arrays or objects deeper than "
                    f"{self.limits.max_depth} levels"
                ),
            )
        try:
            document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
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
                    InvalidRequest(
                        "invalid request: named parameters are not supported; "
                        "pass params as an array"
                    ),
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
