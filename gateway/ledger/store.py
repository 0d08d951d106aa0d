"""The ledger: one SQLite file, written by the enclave process only.

Everything a block changes (trie nodes, header, body, receipts, the block's seal row and the
removal of its transactions from the pool) is written in a single SQLite transaction, so a
crash at any instant leaves the file at the previous committed block or the new one, never
in between. SQLite runs in WAL mode: a commit that returned survives a kill -9 of the
process; with ``synchronous=FULL`` (the ``durable_fsync`` option) it also survives a power
failure, at the cost of an fsync per commit.

Tables:
  kv      opaque key/value pairs: py-evm's chain database (state trie, headers, bodies,
          receipts, lookups). Writes are buffered in memory until ``commit_block``.
  blocks  the public header chain: number, hash, RLP header, seal, sealer.
  pool    transactions accepted but not yet in a block (raw bytes), in arrival order.
  meta    small named values: genesis parameters, the node key, format version.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL,
    seal BLOB NOT NULL,
    sealer BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class LedgerError(Exception):
    """The ledger file is unusable (wrong version, foreign chain, corrupt)."""


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    number: int
    hash: bytes
    header: bytes
    seal: bytes
    sealer: bytes


@dataclass(frozen=True, slots=True)
class PoolEntry:
    hash: bytes
    raw: bytes


_MISSING = object()


class BufferedKV(MutableMapping[bytes, bytes]):
    """A key/value view of the ``kv`` table whose writes stay in memory until flushed.

    py-evm writes trie nodes and chain records through this object while a block is being
    built; ``Ledger.commit_block`` flushes the buffer inside the block's transaction and
    ``discard`` drops it when building fails.
    """

    def __init__(self, conn: sqlite3.Connection, cache_entries: int = 200_000) -> None:
        self._conn = conn
        self._pending: dict[bytes, bytes | None] = {}
        # committed values recently read or written: this process is the file's only
        # writer, so the cache cannot go stale (flushes update it)
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_entries = cache_entries

    def __getitem__(self, key: bytes) -> bytes:
        value = self._pending.get(key, _MISSING)
        if value is None:
            raise KeyError(key)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        found = bytes(row[0])
        self._remember(key, found)
        return found

    def _remember(self, key: bytes, value: bytes) -> None:
        self._cache[key] = value
        if len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        self._pending[bytes(key)] = None

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError("the ledger's key/value store cannot be iterated")

    def __len__(self) -> int:
        raise NotImplementedError("the ledger's key/value store has no cheap length")

    @property
    def dirty(self) -> bool:
        return bool(self._pending)

    def discard(self) -> None:
        self._pending.clear()

    def _flush_into(self, cur: sqlite3.Cursor) -> None:
        upserts = [(k, v) for k, v in self._pending.items() if v is not None]
        deletes = [(k,) for k, v in self._pending.items() if v is None]
        if upserts:
            cur.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", upserts)
        if deletes:
            cur.executemany("DELETE FROM kv WHERE k = ?", deletes)

    def _flushed(self) -> None:
        """The flushed writes are committed: they become cached committed values."""
        for key, value in self._pending.items():
            if value is None:
                self._cache.pop(key, None)
            else:
                self._remember(key, value)
        self._pending.clear()


class Ledger:
    """The node's storage. Not thread-safe by design: one owner (the enclave) uses it."""

    def __init__(self, path: Path, *, durable_fsync: bool = False) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable_fsync else 'NORMAL'}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        version = self.get_meta("format_version")
        if version is None:
            self.put_meta("format_version", str(FORMAT_VERSION).encode())
        elif int(version) != FORMAT_VERSION:
            raise LedgerError(
                f"{path} has ledger format {int(version)}, this node reads format "
                f"{FORMAT_VERSION}; use a node of the matching version or a new data directory"
            )
        self.kv = BufferedKV(self._conn)

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_meta(self, name: str, value: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
            )

    # -- blocks -------------------------------------------------------------------------
    def commit_block(self, block: CommittedBlock, included: Iterable[bytes]) -> None:
        """Atomically store the buffered state writes, the block row, and prune the pool."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self.kv._flush_into(cur)
                cur.execute(
                    "INSERT INTO blocks (number, hash, header, seal, sealer) VALUES (?,?,?,?,?)",
                    (block.number, block.hash, block.header, block.seal, block.sealer),
                )
                cur.executemany("DELETE FROM pool WHERE hash = ?", [(h,) for h in included])
                cur.execute("COMMIT")
                self.kv._flushed()
            except BaseException:
                cur.execute("ROLLBACK")
                self.kv.discard()
                raise

    def commit_genesis(self, block: CommittedBlock, meta: dict[str, bytes]) -> None:
        """Store the genesis state and header together with the chain's parameters."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self.kv._flush_into(cur)
                cur.execute(
                    "INSERT INTO blocks (number, hash, header, seal, sealer) VALUES (?,?,?,?,?)",
                    (block.number, block.hash, block.header, block.seal, block.sealer),
                )
                cur.executemany(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", meta.items()
                )
                cur.execute("COMMIT")
                self.kv._flushed()
            except BaseException:
                cur.execute("ROLLBACK")
                self.kv.discard()
                raise

    def head(self) -> CommittedBlock | None:
        row = self._conn.execute(
            "SELECT number, hash, header, seal, sealer FROM blocks ORDER BY number DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _block(row)

    def block_by_number(self, number: int) -> CommittedBlock | None:
        row = self._conn.execute(
            "SELECT number, hash, header, seal, sealer FROM blocks WHERE number = ?", (number,)
        ).fetchone()
        return None if row is None else _block(row)

    def block_by_hash(self, block_hash: bytes) -> CommittedBlock | None:
        row = self._conn.execute(
            "SELECT number, hash, header, seal, sealer FROM blocks WHERE hash = ?", (block_hash,)
        ).fetchone()
        return None if row is None else _block(row)

    # -- pool ---------------------------------------------------------------------------
    def pool_add(self, tx_hash: bytes, raw: bytes, replaces: bytes | None = None) -> None:
        """Durably record an accepted transaction (and drop the one it replaces)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if replaces is not None:
                    cur.execute("DELETE FROM pool WHERE hash = ?", (replaces,))
                cur.execute("INSERT OR IGNORE INTO pool (hash, raw) VALUES (?, ?)", (tx_hash, raw))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def pool_remove(self, hashes: Iterable[bytes]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM pool WHERE hash = ?", [(h,) for h in hashes])

    def pool_entries(self) -> list[PoolEntry]:
        rows = self._conn.execute("SELECT hash, raw FROM pool ORDER BY seq").fetchall()
        return [PoolEntry(bytes(h), bytes(r)) for h, r in rows]

    def check_integrity(self) -> None:
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise LedgerError(f"{self.path} failed SQLite's integrity check: {row}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _block(row: tuple[int, bytes, bytes, bytes, bytes]) -> CommittedBlock:
    number, block_hash, header, seal, sealer = row
    return CommittedBlock(number, bytes(block_hash), bytes(header), bytes(seal), bytes(sealer))
