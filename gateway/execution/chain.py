"""Chain configuration: which fork runs, the genesis block, and py-evm's database adapter."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from eth import constants
from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB
from eth.vm.base import VM
from eth.vm.forks import CancunVM, PragueVM, ShanghaiVM
from eth.vm.forks.cancun.computation import CancunComputation
from eth.vm.forks.cancun.state import CancunState
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueState
from eth.vm.forks.shanghai.computation import ShanghaiComputation
from eth.vm.forks.shanghai.state import ShanghaiState
from eth_typing import BlockNumber
from eth_utils.toolz import merge

from gateway.execution.balances import private_opcodes
from gateway.execution.osaka import OsakaComputation, OsakaState, OsakaVM
from gateway.execution.precompiles import GATEWAY_PRECOMPILES

# Each fork the gateway runs is py-evm's, plus the gateway's precompiles
# (gateway.execution.precompiles), added the way py-evm's forks add theirs: the computation
# merges its parent's precompile table, the state names the computation, the VM names the state.
# Each has a twin for chains whose genesis fixes the private-balances rule
# (gateway.execution.balances): its computation's opcode table comes from ``private_opcodes``.


class GatewayShanghaiComputation(ShanghaiComputation):
    _precompiles = merge(ShanghaiComputation.get_precompiles(), GATEWAY_PRECOMPILES)


class GatewayShanghaiState(ShanghaiState):
    computation_class = GatewayShanghaiComputation


class GatewayShanghaiVM(ShanghaiVM):
    _state_class = GatewayShanghaiState


class GatewayShanghaiPrivateComputation(GatewayShanghaiComputation):
    opcodes = private_opcodes(GatewayShanghaiComputation.opcodes)


class GatewayShanghaiPrivateState(GatewayShanghaiState):
    computation_class = GatewayShanghaiPrivateComputation


class GatewayShanghaiPrivateVM(GatewayShanghaiVM):
    _state_class = GatewayShanghaiPrivateState


class GatewayCancunComputation(CancunComputation):
    _precompiles = merge(CancunComputation.get_precompiles(), GATEWAY_PRECOMPILES)


class GatewayCancunState(CancunState):
    computation_class = GatewayCancunComputation


class GatewayCancunVM(CancunVM):
    _state_class = GatewayCancunState


class GatewayCancunPrivateComputation(GatewayCancunComputation):
    opcodes = private_opcodes(GatewayCancunComputation.opcodes)


class GatewayCancunPrivateState(GatewayCancunState):
    computation_class = GatewayCancunPrivateComputation


class GatewayCancunPrivateVM(GatewayCancunVM):
    _state_class = GatewayCancunPrivateState


class GatewayPragueComputation(PragueComputation):
    _precompiles = merge(PragueComputation.get_precompiles(), GATEWAY_PRECOMPILES)


class GatewayPragueState(PragueState):
    computation_class = GatewayPragueComputation


class GatewayPragueVM(PragueVM):
    _state_class = GatewayPragueState


class GatewayPraguePrivateComputation(GatewayPragueComputation):
    opcodes = private_opcodes(GatewayPragueComputation.opcodes)


class GatewayPraguePrivateState(GatewayPragueState):
    computation_class = GatewayPraguePrivateComputation


class GatewayPraguePrivateVM(GatewayPragueVM):
    _state_class = GatewayPraguePrivateState


# Osaka is the gateway's own (py-evm 0.12 stops at Prague): gateway.execution.osaka
class GatewayOsakaComputation(OsakaComputation):
    _precompiles = merge(OsakaComputation.get_precompiles(), GATEWAY_PRECOMPILES)


class GatewayOsakaState(OsakaState):
    computation_class = GatewayOsakaComputation


class GatewayOsakaVM(OsakaVM):
    _state_class = GatewayOsakaState


class GatewayOsakaPrivateComputation(GatewayOsakaComputation):
    opcodes = private_opcodes(GatewayOsakaComputation.opcodes)


class GatewayOsakaPrivateState(GatewayOsakaState):
    computation_class = GatewayOsakaPrivateComputation


class GatewayOsakaPrivateVM(GatewayOsakaVM):
    _state_class = GatewayOsakaPrivateState


FORKS: dict[str, type[VM]] = {
    "shanghai": GatewayShanghaiVM,
    "cancun": GatewayCancunVM,
    "prague": GatewayPragueVM,
    "osaka": GatewayOsakaVM,
}
# the same forks under the private-balances rule; every fork in FORKS has its twin here
PRIVATE_BALANCE_FORKS: dict[str, type[VM]] = {
    "shanghai": GatewayShanghaiPrivateVM,
    "cancun": GatewayCancunPrivateVM,
    "prague": GatewayPraguePrivateVM,
    "osaka": GatewayOsakaPrivateVM,
}
DEFAULT_FORK = "osaka"

# The deterministic-deployment proxy used by Foundry and others for CREATE2
# (its address and runtime code are the same on every chain that has it).
CREATE2_DEPLOYER = bytes.fromhex("4e59b44847b379578588920ca78fbf26c0b4956c")
CREATE2_DEPLOYER_CODE = bytes.fromhex(
    "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035"
    "828234f58015156039578182fd5b8082525050506014600cf3"
)


@dataclass(frozen=True)
class GenesisAccount:
    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GenesisSpec:
    """Everything that determines block 0. Stored in the ledger at first start."""

    chain_id: int
    fork: str = DEFAULT_FORK
    gas_limit: int = 30_000_000
    timestamp: int = 0
    base_fee: int = 1_000_000_000
    extra_data: bytes = b"coco-gateway"
    alloc: dict[bytes, GenesisAccount] = field(default_factory=dict)
    # the private-balances rule (gateway.execution.balances); False is Ethereum's BALANCE
    private_balances: bool = False

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "chainId": self.chain_id,
                "fork": self.fork,
                "gasLimit": self.gas_limit,
                "timestamp": self.timestamp,
                "baseFee": self.base_fee,
                "extraData": self.extra_data.hex(),
                "privateBalances": self.private_balances,
                "alloc": {
                    a.hex(): {
                        "balance": str(acct.balance),
                        "nonce": acct.nonce,
                        "code": acct.code.hex(),
                        "storage": {str(k): str(v) for k, v in acct.storage.items()},
                    }
                    for a, acct in self.alloc.items()
                },
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> GenesisSpec:
        d = json.loads(raw)
        return cls(
            chain_id=d["chainId"],
            fork=d["fork"],
            gas_limit=d["gasLimit"],
            timestamp=d["timestamp"],
            base_fee=d["baseFee"],
            extra_data=bytes.fromhex(d["extraData"]),
            alloc={
                bytes.fromhex(a): GenesisAccount(
                    balance=int(v["balance"]),
                    nonce=v["nonce"],
                    code=bytes.fromhex(v["code"]),
                    storage={int(k): int(s) for k, s in v["storage"].items()},
                )
                for a, v in d["alloc"].items()
            },
            # a chain stored before the rule existed runs Ethereum's rule
            private_balances=bool(d.get("privateBalances", False)),
        )


class LedgerDB(BaseDB):
    """py-evm's database interface over the ledger's buffered key/value store."""

    def __init__(self, kv: MutableMapping[bytes, bytes]) -> None:
        self._kv = kv

    def __getitem__(self, key: bytes) -> bytes:
        return self._kv[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._kv[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._kv[key]

    def _exists(self, key: bytes) -> bool:
        return key in self._kv


def chain_class(spec: GenesisSpec) -> type[MiningChain]:
    if spec.fork not in FORKS:
        raise ValueError(f"unknown fork {spec.fork!r}; choose one of {', '.join(FORKS)}")
    vm_class = (PRIVATE_BALANCE_FORKS if spec.private_balances else FORKS)[spec.fork]

    class GatewayChain(MiningChain):
        vm_configuration = ((BlockNumber(0), vm_class),)
        chain_id = spec.chain_id

    return GatewayChain


def open_chain(spec: GenesisSpec, kv: MutableMapping[bytes, bytes], *, create: bool) -> MiningChain:
    """Open the chain stored in ``kv``, or write block 0 into it when ``create`` is set."""
    db: AtomicDatabaseAPI = AtomicDB(LedgerDB(kv))
    cls = chain_class(spec)
    if not create:
        return cls(db)
    params: dict[str, Any] = {
        "difficulty": 0,
        "gas_limit": spec.gas_limit,
        "timestamp": spec.timestamp,
        "extra_data": spec.extra_data[:32],
        "coinbase": constants.ZERO_ADDRESS,
        "nonce": b"\x00" * 8,
        "mix_hash": constants.ZERO_HASH32,
        "base_fee_per_gas": spec.base_fee,
    }
    state: Any = {
        addr: {
            "balance": acct.balance,
            "nonce": acct.nonce,
            "code": acct.code,
            "storage": dict(acct.storage),
        }
        for addr, acct in spec.alloc.items()
    }
    chain = cls.from_genesis(db, params, state)
    assert isinstance(chain, MiningChain)
    return chain


def genesis_header(chain: MiningChain) -> BlockHeaderAPI:
    return chain.get_canonical_block_header_by_number(0)  # type: ignore[arg-type]


def genesis_block_hash(spec: GenesisSpec) -> bytes:
    """The hash of block 0 of ``spec``, computed in memory (nothing stored): a node that has
    not joined its consortium yet knows its chain's genesis before it can open a ledger."""
    return bytes(open_chain(spec, {}, create=True).get_canonical_head().hash)
