"""The private-balances chain rule in py-evm, for every fork the node runs (docs/consensus.md).

The chains are built with ``gateway.execution.chain`` as the node builds them; the node-level
attacks are in tests/test_strict_attacks.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth import constants

from gateway.execution.chain import (
    FORKS,
    PRIVATE_BALANCE_FORKS,
    GenesisAccount,
    GenesisSpec,
    open_chain,
)

SIGNER = bytes.fromhex("11" * 20)
OTHER_EOA = bytes.fromhex("22" * 20)
RUNNING = bytes.fromhex("33" * 20)
CONTRACT = bytes.fromhex("44" * 20)
DELEGATED = bytes.fromhex("55" * 20)
ZERO = constants.ZERO_ADDRESS
BALANCES = {SIGNER: 1001, OTHER_EOA: 2002, RUNNING: 3003, CONTRACT: 4004, DELEGATED: 5005}
BALANCES[ZERO] = 6006


def balance_code(target: bytes) -> bytes:
    """PUSH20 target; BALANCE; PUSH1 0; MSTORE; PUSH1 32; PUSH1 0; RETURN"""
    return b"\x73" + target + bytes.fromhex("3160005260206000f3")


def new_chain(fork: str, private: bool) -> Any:
    alloc = {a: GenesisAccount(balance=b) for a, b in BALANCES.items()}
    alloc[CONTRACT] = GenesisAccount(balance=BALANCES[CONTRACT], code=b"\x00")
    # an EOA delegated with EIP-7702: its code is the designator 0xef0100 || address
    alloc[DELEGATED] = GenesisAccount(balance=BALANCES[DELEGATED], code=b"\xef\x01\x00" + CONTRACT)
    spec = GenesisSpec(chain_id=1337, fork=fork, alloc=alloc, private_balances=private)
    return open_chain(spec, {}, create=True)


def read_balance(fork: str, private: bool, target: bytes, origin: bytes = SIGNER) -> Any:
    """BALANCE(target) in code running at RUNNING, in a transaction signed by ``origin``."""
    vm = new_chain(fork, private).get_vm()
    return vm.execute_bytecode(
        origin=origin,
        gas_price=0,
        gas=100_000,
        to=RUNNING,
        sender=origin,
        value=0,
        data=b"",
        code=balance_code(target),
        code_address=RUNNING,
    )


def test_every_fork_has_its_private_balance_twin() -> None:
    assert set(PRIVATE_BALANCE_FORKS) == set(FORKS)


@pytest.mark.parametrize("fork", sorted(FORKS))
@pytest.mark.parametrize(
    ("target", "origin", "visible"),
    [
        (OTHER_EOA, SIGNER, False),  # another account without code
        (DELEGATED, SIGNER, False),  # an EOA that delegated its code is still an EOA
        (SIGNER, SIGNER, True),  # the signer's own
        (RUNNING, SIGNER, True),  # address(this).balance
        (CONTRACT, SIGNER, True),  # a contract's
        (ZERO, ZERO, False),  # the zero address is nobody, even as the origin of a call
    ],
)
def test_balance_under_each_rule(fork: str, target: bytes, origin: bytes, visible: bool) -> None:
    ethereum = read_balance(fork, False, target, origin)
    private = read_balance(fork, True, target, origin)
    assert not ethereum.is_error and not private.is_error
    assert int.from_bytes(ethereum.output, "big") == BALANCES[target]
    assert int.from_bytes(private.output, "big") == (BALANCES[target] if visible else 0)
    # the gas does not tell which case applied
    assert private.get_gas_used() == ethereum.get_gas_used()


def test_the_rule_is_stored_with_genesis_and_old_ledgers_read_as_ethereums() -> None:
    spec = GenesisSpec(chain_id=5, private_balances=True)
    assert GenesisSpec.from_json(spec.to_json()).private_balances is True
    assert GenesisSpec.from_json(GenesisSpec(chain_id=5).to_json()).private_balances is False
    legacy = json.loads(spec.to_json())
    del legacy["privateBalances"]
    assert GenesisSpec.from_json(json.dumps(legacy).encode()).private_balances is False
