"""An observer's chain: public headers and commit seals, each block's finality checked here.

An observer has no enclave and no consortium secret. It receives finalized blocks in their
public form (header, QBFT round, proposer, commit seals; never the sealed body), checks each
one itself with the pure QBFT code (a quorum of distinct validators' commit seals over
``Block(number, proposer, header_rlp).digest`` and the round; the parent hash links it to the
block before) and stores the header and seals in its own SQLite file. On a chain with
governance each block also brings its governance section in the clear: the observer checks it
against the header's extraData, applies it as every node does (``gateway.governance``), and
takes each height's validator set from the resulting state. Nothing in that file is
confidential: it is what any member could publish.

``HeaderStore`` is the file; ``ObserverBackend`` answers the few enclave requests the public
RPC methods make (GetStatus, GetBlock, GetFinality, and the coco_gov* reads' GovQuery on a
chain with governance) from it, so the same ``Api`` serves them,
and refuses every other request with a clear error.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgpack
from eth_utils import keccak

from gateway.consensus.qbft import Block, commit_seal_digest, quorum, recover_signer
from gateway.consensus.qbft.messages import rlp_decode
from gateway.enclave import messages as m
from gateway.errors import InvalidParams, RpcError, ServerError
from gateway.governance import section as gsec
from gateway.governance import state as gs

OBSERVER_REFUSAL = "this node is an observer: it serves public block headers and finality only"
FILE_NAME = "observer.sqlite"
GOVERNANCE_STATE_META = "governance.state"
HEADER_FIELDS = (
    ("parentHash", "data"),
    ("sha3Uncles", "data"),
    ("miner", "data"),
    ("stateRoot", "data"),
    ("transactionsRoot", "data"),
    ("receiptsRoot", "data"),
    ("logsBloom", "data"),
    ("difficulty", "qty"),
    ("number", "qty"),
    ("gasLimit", "qty"),
    ("gasUsed", "qty"),
    ("timestamp", "qty"),
    ("extraData", "data"),
    ("mixHash", "data"),
    ("nonce", "data"),
    ("baseFeePerGas", "qty"),
    ("withdrawalsRoot", "data"),
    ("blobGasUsed", "qty"),
    ("excessBlobGas", "qty"),
    ("parentBeaconBlockRoot", "data"),
    ("requestsHash", "data"),
)


class ObserverRefusal(RpcError):
    code = -32601

    def __init__(self) -> None:
        super().__init__(OBSERVER_REFUSAL, reason="observer-node")


class BlockRefused(ValueError):
    """A block an observer will not store; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def terms_digest(terms: dict[str, Any]) -> bytes:
    """keccak256 of the terms' canonical JSON: the genesis block's extraData."""
    return keccak(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode())


def decode_header(header: bytes) -> dict[str, Any]:
    """A header's RLP as the RPC shape (``eth_getBlockByNumber`` without transactions)."""
    try:
        items = rlp_decode(header)
    except Exception:
        raise BlockRefused("bad-header", "the header is not RLP") from None
    if not isinstance(items, list) or len(items) < 15 or len(items) > len(HEADER_FIELDS):
        raise BlockRefused("bad-header", "the header is not an Ethereum header list")
    out: dict[str, Any] = {}
    for (name, kind), value in zip(HEADER_FIELDS, items, strict=False):
        if not isinstance(value, bytes):
            raise BlockRefused("bad-header", f"header field {name} is not a byte string")
        out[name] = hex(int.from_bytes(value, "big")) if kind == "qty" else "0x" + value.hex()
    out["hash"] = "0x" + keccak(header).hex()
    out["totalDifficulty"] = "0x0"
    out["size"] = hex(len(header))
    return out


class HeaderStore:
    """The observer's SQLite file: verified headers and seals by number; on a chain with
    governance also each block's governance section and the state digest after it, and the
    latest governance state (all public: docs/GOVERNANCE.md, "In the ledger")."""

    def __init__(
        self,
        data_dir: Path,
        chain_id: int,
        validators: list[bytes],
        terms: dict[str, Any] | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILE_NAME
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB UNIQUE,
                header BLOB NOT NULL, round INTEGER NOT NULL, proposer BLOB NOT NULL,
                seals BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
            CREATE TABLE IF NOT EXISTS governance (number INTEGER PRIMARY KEY, hash BLOB NOT NULL,
                section BLOB NOT NULL, state_digest BLOB NOT NULL);
            """
        )
        self.chain_id = chain_id
        self.validators = validators
        row = self.db.execute("SELECT value FROM meta WHERE key = 'genesis'").fetchone()
        self.genesis: bytes | None = None if row is None else bytes(row[0])
        # governance: the terms name members (else the validators are the terms' fixed set)
        self.terms = terms if terms is not None and "members" in terms else None
        self._governance: gs.GovernanceState | None = None
        stored = self._meta(GOVERNANCE_STATE_META)
        if self.terms is not None and stored is not None:
            self._governance = gs.decode(stored)
        # what check() worked out for the block add() then stores: (number, hash, section,
        # state after it)
        self._checked: tuple[int, bytes, bytes, gs.GovernanceState] | None = None

    def _meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    @property
    def governed(self) -> bool:
        return self.terms is not None

    def governance(self) -> gs.GovernanceState | None:
        """The governance state at the stored head (block 0's from the terms until a block
        changes it); None on a chain without governance or before the genesis is known."""
        if self.terms is None:
            return None
        if self._governance is None and self.genesis is not None:
            self._governance = gs.genesis_from_terms(self.terms, self.genesis)
        return self._governance

    def validators_for(self, number: int) -> list[bytes]:
        """The validators whose commit seals finalize block ``number`` (the head's governance
        schedule on a governed chain, else the terms' set)."""
        state = self.governance()
        if state is None:
            return self.validators
        return list(state.validators_at(number))

    def governance_row(self, number: int) -> tuple[bytes, bytes, bytes] | None:
        row = self.db.execute(
            "SELECT hash, section, state_digest FROM governance WHERE number = ?", (number,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), bytes(row[2]))

    def pin_genesis(self, genesis: bytes) -> None:
        """The consortium's genesis hash, as its first authenticated member told it."""
        if self.genesis is not None and self.genesis != genesis:
            raise BlockRefused("wrong-genesis", "a peer names another genesis than the pinned one")
        self.genesis = genesis
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('genesis', ?)", (genesis,))

    @property
    def head(self) -> int:
        row = self.db.execute("SELECT MAX(number) FROM blocks").fetchone()
        return -1 if row[0] is None else int(row[0])

    def row(self, number: int) -> tuple[Any, ...] | None:
        return self.db.execute(  # type: ignore[no-any-return]
            "SELECT number, hash, header, round, proposer, seals FROM blocks WHERE number = ?",
            (number,),
        ).fetchone()

    def number_of(self, block_hash: bytes) -> int | None:
        row = self.db.execute("SELECT number FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        return None if row is None else int(row[0])

    def check(self, block: dict[str, Any], terms_hash: bytes | None) -> None:
        """Refuse a block whose finality or place in the chain does not hold."""
        number, header = int(block["number"]), bytes(block["header"])
        if keccak(header) != block["hash"]:
            raise BlockRefused("bad-hash", f"block {number}: the hash is not the header's")
        fields = decode_header(header)
        if int(fields["number"], 16) != number:
            raise BlockRefused("bad-number", f"block {number}: the header says another number")
        if number == 0:
            if self.genesis is not None and block["hash"] != self.genesis:
                raise BlockRefused("wrong-genesis", "block 0 is not the pinned genesis")
            if terms_hash is not None and fields["extraData"] != "0x" + terms_hash.hex():
                raise BlockRefused(
                    "wrong-terms", "the genesis header does not commit to these consortium terms"
                )
            return
        parent = self.row(number - 1)
        parent_hash = self.genesis if parent is None and number == 1 else None
        if parent is not None:
            parent_hash = bytes(parent[1])
        if parent_hash is None:
            raise BlockRefused("gap", f"block {number}: its parent is not here yet")
        if fields["parentHash"] != "0x" + parent_hash.hex():
            raise BlockRefused("bad-parent", f"block {number} does not extend block {number - 1}")
        digest = Block(number, bytes(block["proposer"]), header).digest
        seal_digest = commit_seal_digest(digest, int(block["round"]))
        validators = self.validators_for(number)
        signers = {recover_signer(seal_digest, bytes(seal)) for seal in block["seals"]}
        valid = signers & set(validators)
        need = quorum(len(validators))
        if len(valid) < need:
            raise BlockRefused(
                "no-quorum",
                f"block {number}: {len(valid)} valid commit seal(s) of validators, {need} needed",
            )
        state = self.governance()
        if state is not None:
            self._checked = (number, bytes(block["hash"]), *self._apply(block, fields, state))

    def _apply(
        self, block: dict[str, Any], fields: dict[str, Any], before: gs.GovernanceState
    ) -> tuple[bytes, gs.GovernanceState]:
        """The block's governance section, checked against its header's extraData and
        applied to the state before it, as every node applies it ("bad-governance")."""
        number = int(block["number"])
        section = block.get("gov")
        if not isinstance(section, bytes):
            raise BlockRefused(
                "bad-governance", f"block {number} came without its governance section"
            )
        extra = bytes.fromhex(fields["extraData"][2:])
        try:
            records = gsec.records_of(section)
            after, _ = gsec.apply_section(
                before, records, number, int(fields["timestamp"], 16), extra
            )
        except gsec.SectionRefused as exc:
            raise BlockRefused("bad-governance", f"block {number}: {exc}") from None
        return section, after

    def add(self, block: dict[str, Any]) -> None:
        number, block_hash = int(block["number"]), bytes(block["hash"])
        checked, self._checked = self._checked, None
        if (
            self.governed
            and number > 0
            and (checked is None or checked[:2] != (number, block_hash))
        ):
            raise BlockRefused("bad-governance", f"block {number} was not checked")
        with self.db:
            if checked is not None and number > 0:
                _, _, section, after = checked
                self.db.execute(
                    "INSERT OR REPLACE INTO governance VALUES (?, ?, ?, ?)",
                    (number, block_hash, section, gs.state_digest(after)),
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    (GOVERNANCE_STATE_META, gs.encode(after)),
                )
                self._governance = after
            self.db.execute(
                "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                (
                    int(block["number"]),
                    bytes(block["hash"]),
                    bytes(block["header"]),
                    int(block["round"]),
                    bytes(block["proposer"]),
                    msgpack.packb([bytes(s) for s in block["seals"]], use_bin_type=True),
                ),
            )

    def exported(self, start: int, count: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT number, hash, header, round, proposer, seals FROM blocks "
            "WHERE number >= ? ORDER BY number LIMIT ?",
            (start, count),
        ).fetchall()
        out = [_exported(row) for row in rows]
        for block in out:
            gov = self.governance_row(block["number"]) if self.governed else None
            block["gov"] = None if gov is None else gov[1]
        return out

    def close(self) -> None:
        self.db.close()


def _exported(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "number": int(row[0]),
        "hash": bytes(row[1]),
        "header": bytes(row[2]),
        "body": None,
        "round": int(row[3]),
        "proposer": bytes(row[4]),
        "seals": list(msgpack.unpackb(row[5], raw=False)),
        "gov": None,  # HeaderStore.exported fills it in on a chain with governance
    }


def block_summary(block: dict[str, Any]) -> dict[str, Any]:
    """What block listeners (newHeads) get: BuildBlock's summary shape, without transactions."""
    header = decode_header(bytes(block["header"]))
    return {
        "number": int(block["number"]),
        "hash": bytes(block["hash"]),
        "timestamp": int(header["timestamp"], 16),
        "header": header,
        "transactions": [],
        "gasPrice": 0,
        "executablePending": 0,
    }


class ObserverBackend:
    """Stands where an enclave would: answers GetStatus, GetBlock, GetFinality and GovQuery
    from the header store, and refuses everything else (``ObserverRefusal``)."""

    def __init__(self, store: HeaderStore, terms: dict[str, Any]) -> None:
        self.store = store
        self.terms = terms

    async def start(self, opened: m.Open) -> None:
        return None

    async def start_identity(self, message: m.MakeIdentity | m.GenesisOf) -> dict[str, Any]:
        raise ObserverRefusal()  # an observer has no identity

    async def close(self) -> None:
        self.store.close()

    def _privacy(self) -> str:
        """The privacy in force at the stored head: on a governed chain the governance
        state's ``privacy`` policy (members vote it), else the terms'."""
        default = str(self.terms.get("privacy", "open"))
        state = self.store.governance()
        if state is None:
            return default
        return str(state.policies.get("privacy", default))

    async def request(self, message: Any) -> Any:
        if isinstance(message, m.GetStatus):
            return {
                "chainId": self.store.chain_id,
                "head": {"number": max(self.store.head, 0)},
                "finalized": max(self.store.head, 0),
                "privacy": self._privacy(),
                "fork": str(self.terms.get("fork", m.DEFAULT_FORK)),
                "validators": self.store.validators_for(max(self.store.head, 0) + 1),
                "gasPrice": 0,
                "poolSize": 0,
                "state": "observing",
                "genesisHash": self.store.genesis or b"",
            }
        if isinstance(message, m.GetBlock):
            row = self._resolve(message.ref)
            if row is None:
                return None
            out = decode_header(bytes(row[2]))
            out["transactions"] = []
            out["uncles"] = []
            if "withdrawalsRoot" in out:
                out["withdrawals"] = []
            return out
        if isinstance(message, m.GetFinality):
            row = self._resolve(message.ref)
            if row is None:
                return None
            block = _exported(row)
            validators = self.store.validators_for(block["number"])
            digest = Block(block["number"], block["proposer"], block["header"]).digest
            return {
                **{k: block[k] for k in ("number", "hash", "header", "round", "proposer")},
                "scheme": "qbft-commit-seal-v1",
                "digest": commit_seal_digest(digest, block["round"]),
                "seals": block["seals"],
                "validators": validators,
                "quorum": quorum(len(validators)),
            }
        if isinstance(message, m.GovQuery):
            state = self.store.governance()
            if state is None:
                raise ServerError(
                    "this consortium has no governance: its terms name no members "
                    "(docs/GOVERNANCE.md)",
                    reason="no-governance",
                )
            try:
                return gsec.query(
                    state,
                    max(self.store.head, 0),
                    message.what,
                    message.arg,
                    self.store.governance_row,
                )
            except gsec.BadQuery as exc:
                raise InvalidParams(str(exc), reason="bad-params") from None
        raise ObserverRefusal()

    def _resolve(self, ref: m.BlockRef) -> tuple[Any, ...] | None:
        head = self.store.head
        if isinstance(ref, dict):
            number = self.store.number_of(bytes(ref["hash"]))
            return None if number is None else self.store.row(number)
        if isinstance(ref, str):
            if ref == "earliest":
                return self.store.row(0)
            if ref in ("latest", "safe", "finalized", "pending"):
                return None if head < 0 else self.store.row(head)
            raise ServerError(f"unknown block tag {ref!r}")
        return self.store.row(int(ref))
