"""An observer's chain: public headers and commit seals, each block's finality checked here.

An observer has no enclave and no consortium secret. It receives finalized blocks in their
public form (header, QBFT round, proposer, commit seals; never the sealed body), checks each
one itself with the pure QBFT code (a quorum of distinct validators' commit seals over
``Block(number, proposer, header_rlp).digest`` and the round; the parent hash links it to the
block before) and stores the header and seals in its own SQLite file. Nothing in that file is
confidential: it is what any member could publish.

``HeaderStore`` is the file; ``ObserverBackend`` answers the few enclave requests the public
RPC methods make (GetStatus, GetBlock, GetFinality) from it, so the same ``Api`` serves them,
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
from gateway.errors import RpcError, ServerError

OBSERVER_REFUSAL = "this node is an observer: it serves public block headers and finality only"
FILE_NAME = "observer.sqlite"
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
    """The observer's SQLite file: verified headers and seals by number, nothing else."""

    def __init__(self, data_dir: Path, chain_id: int, validators: list[bytes]) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILE_NAME
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash BLOB UNIQUE,
                header BLOB NOT NULL, round INTEGER NOT NULL, proposer BLOB NOT NULL,
                seals BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
            """
        )
        self.chain_id = chain_id
        self.validators = validators
        row = self.db.execute("SELECT value FROM meta WHERE key = 'genesis'").fetchone()
        self.genesis: bytes | None = None if row is None else bytes(row[0])

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
        signers = {recover_signer(seal_digest, bytes(seal)) for seal in block["seals"]}
        valid = signers & set(self.validators)
        need = quorum(len(self.validators))
        if len(valid) < need:
            raise BlockRefused(
                "no-quorum",
                f"block {number}: {len(valid)} valid commit seal(s) of validators, {need} needed",
            )

    def add(self, block: dict[str, Any]) -> None:
        with self.db:
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
        return [_exported(row) for row in rows]

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
    """Stands where an enclave would: answers GetStatus, GetBlock and GetFinality from the
    header store, and refuses everything else (``ObserverRefusal``)."""

    def __init__(self, store: HeaderStore, terms: dict[str, Any]) -> None:
        self.store = store
        self.terms = terms

    async def start(self, opened: m.Open) -> None:
        return None

    async def start_identity(self, message: m.MakeIdentity | m.GenesisOf) -> dict[str, Any]:
        raise ObserverRefusal()  # an observer has no identity

    async def close(self) -> None:
        self.store.close()

    async def request(self, message: Any) -> Any:
        if isinstance(message, m.GetStatus):
            return {
                "chainId": self.store.chain_id,
                "head": {"number": max(self.store.head, 0)},
                "finalized": max(self.store.head, 0),
                "privacy": self.terms.get("privacy", "open"),
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
            digest = Block(block["number"], block["proposer"], block["header"]).digest
            return {
                **{k: block[k] for k in ("number", "hash", "header", "round", "proposer")},
                "scheme": "qbft-commit-seal-v1",
                "digest": commit_seal_digest(digest, block["round"]),
                "seals": block["seals"],
                "validators": self.store.validators,
                "quorum": quorum(len(self.store.validators)),
            }
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
