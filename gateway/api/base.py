"""What the eth, coco and dev namespaces share: the enclave, the node's mode, the chain view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.enclave.runtime import EnclaveClient

Method = Callable[[list[Any], Any], Awaitable[Any]]


@dataclass
class ChainView:
    """Public facts the host keeps current from each block, so they need no enclave trip."""

    head_number: int = -1
    gas_price: int = 0

    def observe(self, answer: Any) -> Any:
        """An answer from the enclave names a committed block the host may not have adopted
        yet (the BuildBlock reply is still on its way): a client that saw the receipt must
        not then see an older eth_blockNumber."""
        number = answer.get("blockNumber") if isinstance(answer, dict) else None
        if isinstance(number, str):
            self.head_number = max(self.head_number, int(number, 16))
        return answer


class Handlers:
    """The state the namespaces share; ``Api`` (gateway/api/eth.py) provides it."""

    enclave: EnclaveClient
    dev: bool
    chain_id: int
    strict: bool
    view: ChainView
    node_status: Callable[[], Awaitable[dict[str, Any]]] | None
    on_sign_out: Callable[[bytes], None]

    async def _ask(self, message: Any) -> Any:
        return await self.enclave.request(message)
