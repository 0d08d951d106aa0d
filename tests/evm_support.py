"""Fresh py-evm chains of the forks the node runs, for tests that run messages on them directly
(tests/test_osaka.py, tests/test_precompile.py)."""

from __future__ import annotations

from typing import Any

from conftest import DEV_KEYS
from eth_keys import keys

from gateway.execution.chain import GenesisAccount, GenesisSpec, open_chain

SENDER_KEY = keys.PrivateKey(bytes.fromhex(DEV_KEYS[0][2:]))
SENDER = SENDER_KEY.public_key.to_canonical_address()
CHAIN_ID = 1337


def new_chain(fork: str, alloc: dict[bytes, GenesisAccount] | None = None) -> Any:
    """An in-memory chain of ``fork`` whose genesis funds SENDER and holds ``alloc``."""
    spec = GenesisSpec(
        chain_id=CHAIN_ID,
        fork=fork,
        alloc={SENDER: GenesisAccount(balance=10**21), **(alloc or {})},
    )
    return open_chain(spec, {}, create=True)


def run_message(
    chain: Any, to: bytes, data: bytes = b"", code: bytes = b"", gas: int = 1_000_000
) -> Any:
    """One message from SENDER run by ``chain``'s VM, as a CALL into ``to`` (a precompile, or
    ``code`` run as the code at ``to``); the computation."""
    return chain.get_vm().execute_bytecode(
        origin=SENDER,
        gas_price=0,
        gas=gas,
        to=to,
        sender=SENDER,
        value=0,
        data=data,
        code=code,
        code_address=to,
    )
