"""Dev-only methods, offered only by a node started with ``dev``: mining on demand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.api import params as p
from gateway.api.base import Handlers
from gateway.errors import ServerError


class DevMethods(Handlers):
    mine: Callable[[], Awaitable[None]] | None

    async def evm_mine(self, params: list[Any], ctx: Any) -> str:
        p.arity(params, 0, 1)
        if self.mine is None:
            raise ServerError("this node cannot mine on demand")
        await self.mine()
        return "0x0"
