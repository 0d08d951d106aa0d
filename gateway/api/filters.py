"""Polling filters (eth_newFilter and friends), kept on the host, answered from the enclave.

A filter remembers the last block it reported; each poll asks the enclave for what came
after. Filters nobody polls for five minutes are removed, as geth does.

A filter id is not a bearer capability: a filter belongs to the caller that installed it
(the session token of its personal URL; every anonymous caller of the public URL is one
owner), and for anyone else its id answers exactly as an id that does not exist.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.enclave import messages as m
from gateway.enclave.runtime import EnclaveClient
from gateway.errors import LimitExceeded, ServerError

FILTER_TIMEOUT = 300.0
MAX_FILTERS = 10_000
MAX_PENDING_BACKLOG = 10_000


@dataclass
class Filter:
    kind: str  # "logs" | "blocks" | "pending"
    last_block: int
    owner: str | None  # the installer's session token (None: anonymous)
    query: m.GetLogs | None = None
    arrived: list[bytes] = field(default_factory=list)  # pending filters: hashes since last poll
    touched: float = field(default_factory=time.monotonic)


class FilterManager:
    def __init__(self, enclave: EnclaveClient, head: Callable[[], int]) -> None:
        self.enclave = enclave
        self.head = head
        self.filters: dict[str, Filter] = {}

    async def _head(self) -> int:
        return self.head()

    def _install(self, flt: Filter) -> str:
        self._expire()
        if len(self.filters) >= MAX_FILTERS:
            raise LimitExceeded(f"too many filters installed (limit {MAX_FILTERS})")
        filter_id = hex(secrets.randbits(128) | 1 << 127)
        self.filters[filter_id] = flt
        return filter_id

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, f in self.filters.items() if now - f.touched > FILTER_TIMEOUT]:
            del self.filters[key]

    def _find(self, filter_id: str, owner: str | None) -> Filter | None:
        """The caller's filter with this id; another caller's is as if it did not exist."""
        flt = self.filters.get(filter_id)
        if flt is None or not _same_owner(flt.owner, owner):
            return None
        return flt

    def _get(self, filter_id: str, owner: str | None) -> Filter:
        flt = self._find(filter_id, owner)
        if flt is None:
            raise ServerError("filter not found")
        flt.touched = time.monotonic()
        return flt

    async def new_log_filter(self, query: m.GetLogs) -> str:
        """A log filter, owned by the caller whose token ``query.auth`` carries."""
        head = await self._head()
        start = query.from_block
        last = head if not isinstance(start, int) else max(start - 1, -1)
        if isinstance(start, int) and start > head:
            last = start - 1
        return self._install(Filter("logs", last, query.auth, query))

    async def new_block_filter(self, owner: str | None) -> str:
        return self._install(Filter("blocks", await self._head(), owner))

    async def new_pending_filter(self, owner: str | None) -> str:
        return self._install(Filter("pending", 0, owner))

    def record_pending(self, tx_hash: bytes) -> None:
        """A transaction entered the pool: pending filters report it at their next poll,
        even if it was mined in between (automine mines within milliseconds)."""
        for flt in self.filters.values():
            if flt.kind == "pending" and len(flt.arrived) < MAX_PENDING_BACKLOG:
                flt.arrived.append(tx_hash)

    def uninstall(self, filter_id: str, owner: str | None) -> bool:
        if self._find(filter_id, owner) is None:
            return False
        del self.filters[filter_id]
        return True

    async def changes(self, filter_id: str, owner: str | None) -> list[Any]:
        flt = self._get(filter_id, owner)
        if flt.kind == "pending":
            fresh, flt.arrived = flt.arrived, []
            return ["0x" + h.hex() for h in fresh]
        head = await self._head()
        if head <= flt.last_block:
            return []
        start, flt.last_block = flt.last_block + 1, head
        if flt.kind == "blocks":
            out = []
            for number in range(start, head + 1):
                block = await self.enclave.request(m.GetBlock(number, False))
                if block is not None:
                    out.append(block["hash"])
            return out
        assert flt.query is not None
        if flt.query.block_hash is not None:
            return []
        end = flt.query.to_block if isinstance(flt.query.to_block, int) else head
        end = min(end, head)
        if end < start:
            return []
        query = replace(flt.query, from_block=start, to_block=end)
        return list(await self.enclave.request(query))

    async def all_logs(self, filter_id: str, owner: str | None) -> list[Any]:
        flt = self._get(filter_id, owner)
        if flt.kind != "logs" or flt.query is None:
            raise ServerError("filter not found")
        return list(await self.enclave.request(flt.query))


def _same_owner(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a.encode(), b.encode())
