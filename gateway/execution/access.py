"""What a call touched (EIP-2930 access lists) and Merkle proofs of state (EIP-1186)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.rlp.accounts import Account
from eth_utils import keccak
from trie import HexaryTrie

from gateway.execution import format as fmt

# [(address, [32-byte slot, ...]), ...], addresses and slots in ascending byte order
AccessList = list[tuple[bytes, list[bytes]]]


class AccessRecorder:
    """Every account and storage slot a run marks warm (EIP-2929), reverted frames included.

    py-evm journals its warm set and forgets what a reverted frame warmed; a transaction
    still pays for those accesses before it reverts, so the list keeps them, as geth's
    access-list tracer (which watches opcodes) does.
    """

    def __init__(self) -> None:
        self.accounts: set[bytes] = set()
        self.slots: set[tuple[bytes, int]] = set()

    def attach(self, state: Any) -> None:
        """Watch ``state``'s warm marks (py-evm calls them for sender, recipient, the
        transaction's own access list, coinbase, and each cold BALANCE, EXT*, CALL*,
        SELFDESTRUCT, CREATE*, SLOAD and SSTORE)."""
        mark_address = state.mark_address_warm
        mark_storage = state.mark_storage_warm

        def address_warm(address: bytes) -> None:
            self.accounts.add(bytes(address))
            mark_address(address)

        def storage_warm(address: bytes, slot: int) -> None:
            self.slots.add((bytes(address), int(slot)))
            mark_storage(address, slot)

        state.mark_address_warm = address_warm
        state.mark_storage_warm = storage_warm

    def access_list(self, excluded: set[bytes]) -> AccessList:
        """geth's rule: each touched account except the excluded ones (sender, recipient,
        precompiles: warm anyway), and each account whose storage was touched, with its
        slots, excluded or not."""
        slots: dict[bytes, set[int]] = {a: set() for a in self.accounts if a not in excluded}
        for address, slot in self.slots:
            slots.setdefault(address, set()).add(slot)
        return [(a, [s.to_bytes(32, "big") for s in sorted(slots[a])]) for a in sorted(slots)]


def starting_list(
    given: Sequence[tuple[bytes, Sequence[bytes]]], excluded: set[bytes]
) -> AccessList:
    """The caller's access list under the same rule: a run starts from it, as geth's does."""
    slots: dict[bytes, set[bytes]] = {}
    for address, keys in given:
        if keys or address not in excluded:
            slots.setdefault(address, set()).update(keys)
    return [(a, sorted(slots[a])) for a in sorted(slots)]


def created(computation: Any) -> set[bytes]:
    """Accounts CREATE/CREATE2 made in the call: warm from birth, so listing them only costs
    gas (geth's tracer does not list them either)."""
    out: set[bytes] = set()
    pending = list(computation.children)
    while pending:
        child = pending.pop()
        if child.msg.is_create:
            out.add(bytes(child.msg.storage_address))
        pending.extend(child.children)
    return out


def access_list_rpc(entries: AccessList) -> list[dict[str, Any]]:
    return [
        {"address": fmt.addr(address), "storageKeys": [fmt.data(k) for k in keys]}
        for address, keys in entries
    ]


# ---------------------------------------------------------------------------- EIP-1186


def _proof_nodes(trie: HexaryTrie, key: bytes) -> list[str]:
    """The trie nodes on ``key``'s path, each RLP-encoded, from the root down. A node
    shorter than 32 bytes sits inside its parent (it has no hash of its own), so it is not
    listed apart, as geth does not; the root is always listed."""
    out = []
    for depth, node in enumerate(trie.get_proof(key)):
        encoded = rlp.encode(node)
        if depth == 0 or len(encoded) >= 32:
            out.append(fmt.data(encoded))
    return out


def _slots(keys: Sequence[bytes]) -> Iterator[tuple[str, bytes]]:
    """Each key as geth echoes it (32 bytes given: as given; shorter: as a quantity), and
    the 32-byte slot it names."""
    for key in keys:
        shown = fmt.data(key) if len(key) == 32 else fmt.qty(int.from_bytes(key, "big"))
        yield shown, key.rjust(32, b"\x00")


def account_proof(
    db: Any, header: BlockHeaderAPI, address: bytes, keys: Sequence[bytes]
) -> dict[str, Any]:
    """eth_getProof's answer from the state trie under ``header``'s state root."""
    state_trie = HexaryTrie(db, header.state_root)
    account_key = keccak(address)
    encoded = state_trie.get(account_key)
    account = rlp.decode(encoded, sedes=Account) if encoded else Account()
    storage_root = bytes(account.storage_root)  # an absent account's: the empty trie's
    storage_trie = HexaryTrie(db, storage_root)
    storage_proof = []
    for shown, slot in _slots(keys):
        slot_key = keccak(slot)
        raw = storage_trie.get(slot_key)
        value = rlp.decode(raw, sedes=rlp.sedes.big_endian_int) if raw else 0
        storage_proof.append(
            {"key": shown, "value": fmt.qty(value), "proof": _proof_nodes(storage_trie, slot_key)}
        )
    return {
        "address": fmt.addr(address),
        "accountProof": _proof_nodes(state_trie, account_key),
        "balance": fmt.qty(account.balance),
        "codeHash": fmt.data(bytes(account.code_hash)),
        "nonce": fmt.qty(account.nonce),
        "storageHash": fmt.data(storage_root),
        "storageProof": storage_proof,
    }
