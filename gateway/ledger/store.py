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
          Sealed: each value encrypted, each key blinded (a keyed hash of py-evm's
          key); with --insecure-plaintext-storage both as py-evm makes them.
  blocks  every committed block, by hash: number, RLP header, the sealed block body (sealed
          by the enclave under the consortium's body key, gateway/enclave/blocks.py), the
          QBFT round, proposer and commit seals (the dev chain: round 0, one v1 seal).
  canonical  number -> hash of the canonical chain; ``commit_block`` moves it.
  pool    transactions accepted but not yet in a block, in arrival order: the hash in the
          clear (the pool is pruned by hash), the raw transaction sealed.
  meta    small named values, not sealed by the ledger: the format version, the storage
          mode, the public genesis parameters, the node key and consortium secret (which
          the enclave seals itself, under the local sealing key), the storage key check.

Sealed storage (ledger format 3 and later; format 4 added blocks by hash, a canonical
index, bodies, rounds and commit seals, and migrates a format-3 file in place when it opens
it). The ledger never holds a key and imports no cipher: the
enclave hands it a ``Sealer`` (``gateway.enclave.storage.StorageSealer``, AES-256-GCM under
the storage key) once its key ring is open. Each kv row is stored under ``blind(key)``, a
keyed hash (HMAC-SHA256 under a key derived from the storage key, separate from the
encryption keys) of py-evm's key, which is a content hash or a lookup key and would
otherwise let a copy of the file confirm guesses (below). py-evm never iterates its
database, so every read and write maps through ``blind`` and nothing else changes. Each kv
value is sealed with its original (unblinded) key as associated data and each pooled
transaction with its hash, so a value moved to another row or key fails to open: a moved
row is read for another original key, hence with other associated data. (Binding the
original key rather than the blinded one is as strong, since one determines the other; it
keeps the meaning of a sealed value "the value of py-evm's key K" independent of the
blinding, and sealing needs no blinded key.) The read cache of ``BufferedKV`` is keyed by
the original key and holds opened (plaintext) values: a cache hit costs no HMAC and no
opening; a miss costs one HMAC and one opening. Until ``set_sealer`` is called, a sealed
ledger serves meta and the header chain only.

A data directory made with ``--insecure-plaintext-storage`` is marked so in meta
(``storage = plaintext``) and is only opened in that mode; a sealed one only sealed.
Format 1 (plaintext) and format 2 (values sealed, keys as py-evm makes them) files are
refused, not converted; a format-3 file (one block row per height) is migrated in place.

What stays readable to whoever reads the file without the storage key:
  * the header chain and seals (public by design): roots, gas used, timestamps, and the
    logs bloom, which lets a guess "this block has a log from address A with topic T" be
    confirmed;
  * kv keys only as 32 bytes of keyed hash each: not the trie-node, code or header hashes
    nor the lookup keys (``transaction-hash-to-block:<tx hash>`` ...) py-evm uses, so a
    guessed value cannot be confirmed by hashing the trie node it implies. Blinding is
    deterministic: the same key is the same row in every copy of the file, so copies taken
    at different times show which rows each block added or replaced;
  * pooled transactions' hashes, every value's length (the plaintext's plus 37 bytes, so a
    row's length hints at what it is: a trie leaf, a branch node, a contract's code of a
    known size), the number of rows, and when they were written;
  * meta: the public genesis, the format and storage mode, the enclave's sealed secrets.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import InvalidParams

log = logging.getLogger("gateway.ledger")

LEDGER_FILE = "ledger.sqlite"  # the ledger's file in a node's data directory
FORMAT_VERSION = 4
STORAGE_SEALED = b"sealed"
STORAGE_PLAINTEXT = b"plaintext"

# associated-data prefixes: a sealed value is bound to its table and to its key
_KV_AD = b"coco-ledger/kv\x00"
_POOL_AD = b"coco-ledger/pool\x00"
_CHECK_AD = b"coco-ledger/storage-check\x00"
_CHECK_PLAINTEXT = b"coco-gateway sealed ledger storage v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hash BLOB NOT NULL UNIQUE,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS query_nonces (id BLOB PRIMARY KEY, expiry INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS query_nonces_expiry ON query_nonces (expiry);
CREATE TABLE IF NOT EXISTS governance (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    section BLOB NOT NULL,
    state_digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_sessions (id BLOB PRIMARY KEY, expiry INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revoked_sessions_expiry ON revoked_sessions (expiry);
"""
# governance, in the clear (docs/GOVERNANCE.md, "In the ledger"): per committed block its
# governance section (the records it carried, canonical JSON) and the digest of the state
# after it; the latest state itself in meta under GOVERNANCE_STATE_META
GOVERNANCE_STATE_META = "governance.state"

# format 4: blocks addressed by hash, the canonical chain an index that commit moves
_BLOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    hash BLOB PRIMARY KEY,
    number INTEGER NOT NULL,
    header BLOB NOT NULL,
    body BLOB,
    round INTEGER NOT NULL,
    proposer BLOB NOT NULL,
    seals BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS canonical (number INTEGER PRIMARY KEY, hash BLOB NOT NULL);
"""

# a sealed snapshot being received (docs/PROTOCOL.md, "Sealed snapshot v1"): rows staged
# here until the enclave has checked the whole snapshot and opens it in one transaction
_SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot_kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_blocks (
    number INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    header BLOB NOT NULL,
    body BLOB,
    round INTEGER NOT NULL,
    proposer BLOB NOT NULL,
    seals BLOB NOT NULL
);
"""
SNAPSHOT_META = "snapshot.pending"  # the staged snapshot's state (the enclave's msgpack)


def encode_seals(seals: Iterable[bytes]) -> bytes:
    """The seals column: each seal as a 2-byte big-endian length and its bytes."""
    out = bytearray()
    for seal in seals:
        if len(seal) > 0xFFFF:
            raise LedgerError("a seal longer than 65535 bytes")
        out += len(seal).to_bytes(2, "big") + seal
    return bytes(out)


def decode_seals(blob: bytes) -> tuple[bytes, ...]:
    seals = []
    pos = 0
    while pos < len(blob):
        if pos + 2 > len(blob):
            raise LedgerError("corrupt seals column")
        length = int.from_bytes(blob[pos : pos + 2], "big")
        end = pos + 2 + length
        if end > len(blob):
            raise LedgerError("corrupt seals column")
        seals.append(bytes(blob[pos + 2 : end]))
        pos = end
    return tuple(seals)


def read_meta(path: Path, name: str) -> bytes | None:
    """A public meta value of the ledger file at ``path``, read without writing anything.

    For the host's checks before a node starts, under the data directory's lock. The file
    is read as immutable, which makes no ``-wal``/``-shm`` files; a value not found there
    may still sit in the write-ahead log of a node that was killed, which is then read
    through a read-only connection (both files exist already). Such a read leaves the
    database file and its log as they were; SQLite may rebuild the log's index (``-shm``),
    as the next node to open the file would. None when the file, the table or the value is
    absent, or the file cannot be read.
    """
    if not path.is_file():
        return None
    uri = path.resolve().as_uri()
    modes = ["immutable=1"]
    if path.with_name(path.name + "-wal").exists() and path.with_name(path.name + "-shm").exists():
        modes.append("mode=ro")
    for mode in modes:
        try:
            conn = sqlite3.connect(f"{uri}?{mode}", uri=True)
            try:
                row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            continue
        if row is not None:
            return bytes(row[0])
    return None


class LedgerError(Exception):
    """The ledger file is unusable (wrong version, foreign chain, corrupt)."""


class LedgerRefused(LedgerError, InvalidParams):
    """This node, as configured, must not open this data directory.

    An ``RpcError`` too, so that the enclave's refusal to start reaches the operator as
    this message (``coco-gateway: cannot start: ...``), not as an internal error.
    """


class SealedValueError(LedgerError):
    """A sealed value does not open: wrong storage key, or the file was altered."""


class Sealer(Protocol):
    """Seals the ledger's confidential values; implemented inside the enclave."""

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def open(self, blob: bytes, associated_data: bytes) -> bytes:
        """The plaintext, or ``SealedValueError``."""
        ...

    def blind(self, key: bytes) -> bytes:
        """The key a kv row is stored under: deterministic, keyed, unlinkable to ``key``."""
        ...


class _Locked:
    """The sealer of a sealed ledger whose storage key is not known yet."""

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        raise LedgerError("the ledger's sealed storage is locked: set_sealer was not called")

    def open(self, blob: bytes, associated_data: bytes) -> bytes:
        raise LedgerError("the ledger's sealed storage is locked: set_sealer was not called")

    def blind(self, key: bytes) -> bytes:
        raise LedgerError("the ledger's sealed storage is locked: set_sealer was not called")


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A block row: the public header, its sealed body (None when not kept, e.g. blocks
    migrated from format 3), the QBFT round and proposer, and the commit seals (on the dev
    chain, the one v1 seal; none for genesis)."""

    number: int
    hash: bytes
    header: bytes
    seals: tuple[bytes, ...] = ()
    proposer: bytes = b""
    round: int = 0
    body: bytes | None = None

    @property
    def seal(self) -> bytes:
        """The first seal (the dev chain's v1 seal), b"" when there is none."""
        return self.seals[0] if self.seals else b""

    @property
    def sealer(self) -> bytes:
        return self.proposer


@dataclass(frozen=True, slots=True)
class PoolEntry:
    hash: bytes
    raw: bytes


_MISSING = object()


class BufferedKV(MutableMapping[bytes, bytes]):
    """A key/value view of the ``kv`` table whose writes stay in memory until flushed.

    py-evm writes trie nodes and chain records through this object while a block is being
    built; ``Ledger.commit_block`` flushes the buffer inside the block's transaction and
    ``discard`` drops it when building fails. Values are sealed on their way to the file
    and opened on their way back, and stored under blinded keys; the pending writes and the
    cache hold plaintext under py-evm's keys.
    """

    def __init__(
        self, conn: sqlite3.Connection, sealer: Sealer | None, cache_entries: int = 200_000
    ) -> None:
        self._conn = conn
        self._sealer = sealer  # None: the insecure plaintext mode
        self._pending: dict[bytes, bytes | None] = {}
        # committed values recently read or written, opened: this process is the file's
        # only writer, so the cache cannot go stale (flushes update it)
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
        sealer = self._sealer
        stored = key if sealer is None else sealer.blind(key)
        row = self._conn.execute("SELECT v FROM kv WHERE k = ?", (stored,)).fetchone()
        if row is None:
            raise KeyError(key)
        found = bytes(row[0])
        if sealer is not None:
            found = sealer.open(found, _KV_AD + key)
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

    def take(self) -> dict[bytes, bytes | None]:
        """The pending writes (None: a delete), removed from the buffer: a block's write set,
        captured to be committed later with ``restore``."""
        writes, self._pending = self._pending, {}
        return writes

    def restore(self, writes: dict[bytes, bytes | None]) -> None:
        """Buffer a write set taken earlier (the buffer must be empty)."""
        if self._pending:
            raise LedgerError("restoring a write set over pending writes")
        self._pending = dict(writes)

    def _rows(self) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes]]]:
        """The pending writes as rows for the file: sealed upserts, and deletes, by blinded key."""
        sealer = self._sealer
        if sealer is None:
            upserts = [(k, v) for k, v in self._pending.items() if v is not None]
            deletes = [(k,) for k, v in self._pending.items() if v is None]
        else:
            seal, blind = sealer.seal, sealer.blind
            upserts = [
                (blind(k), seal(v, _KV_AD + k)) for k, v in self._pending.items() if v is not None
            ]
            deletes = [(blind(k),) for k, v in self._pending.items() if v is None]
        return upserts, deletes

    @staticmethod
    def _write(
        cur: sqlite3.Cursor, rows: tuple[list[tuple[bytes, bytes]], list[tuple[bytes]]]
    ) -> None:
        upserts, deletes = rows
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
    """The node's storage. Not thread-safe by design: one owner (the enclave) uses it.

    ``seal_storage`` (the default) keeps kv values and pooled transactions sealed; they
    become readable and writable once ``set_sealer`` has been given the enclave's sealer.
    ``seal_storage=False`` is ``--insecure-plaintext-storage``: everything in the clear.
    """

    def __init__(
        self, path: Path, *, durable_fsync: bool = False, seal_storage: bool = True
    ) -> None:
        self.path = path
        self.sealed = seal_storage
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._nonces: int | None = None  # live rows of query_nonces, counted once
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable_fsync else 'NORMAL'}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            self._check_format()
            self._conn.executescript(_BLOCKS_SCHEMA)
            self._conn.executescript(_SNAPSHOT_SCHEMA)
        except BaseException:
            self._conn.close()
            raise
        self._sealer: Sealer | None = _Locked() if seal_storage else None
        self.kv = BufferedKV(self._conn, self._sealer)
        if not seal_storage:
            log.warning(
                "%s keeps state, transactions and receipts IN PLAINTEXT "
                "(--insecure-plaintext-storage): anyone who can read the data directory "
                "can read them",
                path,
            )

    def _check_format(self) -> None:
        mode = STORAGE_SEALED if self.sealed else STORAGE_PLAINTEXT
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            version = self.get_meta("format_version")
            if version is None:
                # a new file: stamp the format and the storage mode before anything else
                cur.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [("format_version", str(FORMAT_VERSION).encode()), ("storage", mode)],
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if version is None:
            return
        if int(version) == 1:
            raise LedgerRefused(
                f"the data directory {self.path.parent} was written by an older node "
                "(ledger format 1), which kept the chain's state, transactions and receipts "
                f"in plaintext; this node (format {FORMAT_VERSION}) keeps them sealed and "
                "does not convert old files. Start a new data directory (--data-dir), or "
                "keep running the older node on this one"
            )
        if int(version) == 2:
            raise LedgerRefused(
                f"the data directory {self.path.parent} was written by an older node "
                "(ledger format 2), which kept the keys of the chain's database unblinded "
                "(trie-node and code hashes, lookups by transaction hash), letting a copy of "
                f"the file confirm guessed balances and storage values; this node (format "
                f"{FORMAT_VERSION}) blinds them and does not convert old files. Start a new "
                "data directory (--data-dir), or keep running the older node on this one"
            )
        if int(version) == 3:
            self._migrate_3_to_4()
            version = str(FORMAT_VERSION).encode()
        if int(version) != FORMAT_VERSION:
            raise LedgerRefused(
                f"{self.path} has ledger format {int(version)}, this node reads format "
                f"{FORMAT_VERSION}; use a node of the matching version or a new data directory"
            )
        stored = self.get_meta("storage")
        if stored == mode:
            return
        if stored == STORAGE_PLAINTEXT:
            raise LedgerRefused(
                f"the data directory {self.path.parent} was created with "
                "--insecure-plaintext-storage: its state, transactions and receipts are not "
                "encrypted. Start the node with --insecure-plaintext-storage to use it, or "
                "start a new data directory to get sealed storage"
            )
        if stored == STORAGE_SEALED:
            raise LedgerRefused(
                f"the data directory {self.path.parent} keeps its state sealed (encrypted); "
                "it cannot be opened with --insecure-plaintext-storage. Start the node "
                "without that flag, or use a new data directory for a plaintext chain"
            )
        raise LedgerRefused(f"{self.path} declares an unknown storage mode {stored!r}")

    def _migrate_3_to_4(self) -> None:
        """Format 3 -> 4 in place, in one transaction (a crash leaves format 3): blocks
        become addressed by hash, each v3 row's v1 seal its only seal (round 0, the sealer
        its proposer, no stored body), and every v3 block canonical (one per height)."""
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            rows = cur.execute(
                "SELECT number, hash, header, seal, sealer FROM blocks ORDER BY number"
            ).fetchall()
            cur.execute("ALTER TABLE blocks RENAME TO blocks_v3")
            for stmt in _BLOCKS_SCHEMA.split(";"):
                if stmt.strip():
                    cur.execute(stmt)
            cur.executemany(
                "INSERT INTO blocks (hash, number, header, body, round, proposer, seals) "
                "VALUES (?, ?, ?, NULL, 0, ?, ?)",
                [
                    (h, n, header, sealer, encode_seals([bytes(seal)] if seal else []))
                    for n, h, header, seal, sealer in rows
                ],
            )
            cur.executemany(
                "INSERT INTO canonical (number, hash) VALUES (?, ?)", [(n, h) for n, h, *_ in rows]
            )
            cur.execute("DROP TABLE blocks_v3")
            cur.execute(
                "UPDATE meta SET value = ? WHERE name = 'format_version'",
                (str(FORMAT_VERSION).encode(),),
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        log.info("migrated %s from ledger format 3 to 4 (%d blocks)", self.path, len(rows))

    def set_sealer(self, sealer: Sealer) -> None:
        """Unlock sealed storage with the enclave's sealer (once its key ring is open).

        The first time, a check value is sealed into meta; later, it must open, so that a
        wrong storage key is refused here with a clear message, not on the first read.
        """
        if not self.sealed:
            raise LedgerError(
                f"{self.path} keeps plaintext storage (--insecure-plaintext-storage); "
                "it takes no sealer"
            )
        check = self.get_meta("storage_check")
        if check is None:
            self.put_meta("storage_check", sealer.seal(_CHECK_PLAINTEXT, _CHECK_AD))
        else:
            try:
                opened = sealer.open(check, _CHECK_AD)
            except SealedValueError:
                opened = None
            if opened != _CHECK_PLAINTEXT:
                raise LedgerRefused(
                    f"the storage key does not open the sealed storage of {self.path}: the "
                    "data directory was sealed under another consortium secret (or its "
                    "storage check in meta was altered)"
                )
        self._sealer = sealer
        self.kv._sealer = sealer

    # -- meta ---------------------------------------------------------------------------
    def get_meta(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_meta(self, name: str, value: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
            )

    def delete_meta(self, name: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM meta WHERE name = ?", (name,))

    # -- blocks -------------------------------------------------------------------------
    def commit_block(
        self,
        block: CommittedBlock,
        included: Iterable[bytes],
        governance: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        """Atomically store the buffered state writes, the block row, and prune the pool;
        ``governance``: (section, state, state digest) after this block, kept in the clear."""
        hashes = [(h,) for h in included]

        def also(cur: sqlite3.Cursor) -> None:
            cur.executemany("DELETE FROM pool WHERE hash = ?", hashes)
            if governance is not None:
                section, state, digest = governance
                cur.execute(
                    "INSERT OR REPLACE INTO governance (number, hash, section, state_digest) "
                    "VALUES (?, ?, ?, ?)",
                    (block.number, block.hash, section, digest),
                )
                cur.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    (GOVERNANCE_STATE_META, state),
                )

        self._commit(block, also)

    def governance_row(self, number: int) -> tuple[bytes, bytes, bytes] | None:
        """(block hash, section, state digest) of a committed block, or None."""
        row = self._conn.execute(
            "SELECT hash, section, state_digest FROM governance WHERE number = ?", (number,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), bytes(row[2]))

    def commit_genesis(self, block: CommittedBlock, meta: dict[str, bytes]) -> None:
        """Store the genesis state and header together with the chain's parameters."""
        self._commit(
            block,
            lambda cur: cur.executemany(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", meta.items()
            ),
        )

    def _commit(self, block: CommittedBlock, also: Callable[[sqlite3.Cursor], object]) -> None:
        """One SQLite transaction: the buffered kv writes, the block row, the canonical index
        moved to it, and ``also``."""
        with self._lock:
            try:
                rows = self.kv._rows()  # sealed before the write transaction begins
            except BaseException:
                self.kv.discard()
                raise
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self.kv._write(cur, rows)
                cur.execute(
                    "INSERT OR REPLACE INTO blocks "
                    "(hash, number, header, body, round, proposer, seals) VALUES (?,?,?,?,?,?,?)",
                    (
                        block.hash,
                        block.number,
                        block.header,
                        block.body,
                        block.round,
                        block.proposer,
                        encode_seals(block.seals),
                    ),
                )
                cur.execute(
                    "INSERT OR REPLACE INTO canonical (number, hash) VALUES (?, ?)",
                    (block.number, block.hash),
                )
                # a canonical index above the new block would name blocks of another branch
                cur.execute("DELETE FROM canonical WHERE number > ?", (block.number,))
                also(cur)
                cur.execute("COMMIT")
                self.kv._flushed()
            except BaseException:
                cur.execute("ROLLBACK")
                self.kv.discard()
                raise

    _COLUMNS = "b.number, b.hash, b.header, b.seals, b.proposer, b.round, b.body"

    def head(self) -> CommittedBlock | None:
        row = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "ORDER BY c.number DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _block(row)

    def block_by_number(self, number: int) -> CommittedBlock | None:
        """The canonical block at ``number``."""
        row = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "WHERE c.number = ?",
            (number,),
        ).fetchone()
        return None if row is None else _block(row)

    def blocks_range(self, start: int, count: int) -> list[CommittedBlock]:
        """Canonical blocks ``start`` .. ``start + count - 1`` (fewer at the head)."""
        rows = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "WHERE c.number >= ? AND c.number < ? ORDER BY c.number",
            (start, start + count),
        ).fetchall()
        return [_block(r) for r in rows]

    def block_by_hash(self, block_hash: bytes) -> CommittedBlock | None:
        """A stored block, canonical or not."""
        row = self._conn.execute(
            f"SELECT {self._COLUMNS} FROM blocks b WHERE b.hash = ?", (block_hash,)
        ).fetchone()
        return None if row is None else _block(row)

    # -- pool ---------------------------------------------------------------------------
    def pool_add(self, tx_hash: bytes, raw: bytes, replaces: bytes | None = None) -> None:
        """Durably record an accepted transaction (and drop the one it replaces)."""
        self.pool_add_many([(tx_hash, raw, replaces)])

    def pool_add_many(self, items: Sequence[tuple[bytes, bytes, bytes | None]]) -> None:
        """``pool_add`` for several (hash, raw, replaces) in one database transaction (a batch
        of forwarded transactions: one commit, not one per transaction)."""
        if not items:
            return
        sealer = self._sealer
        stored = [
            (h, raw if sealer is None else sealer.seal(raw, _POOL_AD + h), replaces)
            for h, raw, replaces in items
        ]
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if any(replaces is not None for _, _, replaces in stored):
                    for tx_hash, row, replaces in stored:  # in order: a replacement, then it
                        if replaces is not None:
                            cur.execute("DELETE FROM pool WHERE hash = ?", (replaces,))
                        cur.execute(
                            "INSERT OR IGNORE INTO pool (hash, raw) VALUES (?, ?)", (tx_hash, row)
                        )
                else:
                    cur.executemany(
                        "INSERT OR IGNORE INTO pool (hash, raw) VALUES (?, ?)",
                        [(tx_hash, row) for tx_hash, row, _ in stored],
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def pool_remove(self, hashes: Iterable[bytes]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM pool WHERE hash = ?", [(h,) for h in hashes])

    def pool_entries(self) -> list[PoolEntry]:
        rows = self._conn.execute("SELECT hash, raw FROM pool ORDER BY seq").fetchall()
        sealer = self._sealer
        if sealer is None:
            return [PoolEntry(bytes(h), bytes(r)) for h, r in rows]
        return [PoolEntry(bytes(h), sealer.open(bytes(r), _POOL_AD + bytes(h))) for h, r in rows]

    # -- signed-query nonces ------------------------------------------------------------
    def use_query_nonce(self, nonce_id: bytes, expiry: int, now: int, limit: int) -> str:
        """Record a signed query's nonce until ``expiry``, durably, before it is answered:
        "ok", "replayed" (recorded already and not expired) or "full" (``limit`` live
        nonces). Expired ones are pruned first. ``nonce_id`` is blinded by the enclave."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if self._nonces is None:
                    (self._nonces,) = cur.execute("SELECT COUNT(*) FROM query_nonces").fetchone()
                pruned = cur.execute("DELETE FROM query_nonces WHERE expiry <= ?", (now,))
                count = self._nonces - max(pruned.rowcount, 0)
                seen = cur.execute(
                    "SELECT 1 FROM query_nonces WHERE id = ?", (nonce_id,)
                ).fetchone()
                if seen is not None:
                    outcome = "replayed"
                elif count >= limit:
                    outcome = "full"
                else:
                    cur.execute(
                        "INSERT INTO query_nonces (id, expiry) VALUES (?, ?)", (nonce_id, expiry)
                    )
                    count += 1
                    outcome = "ok"
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                self._nonces = None
                raise
            self._nonces = count
        return outcome

    # -- revoked sessions (docs/PROTOCOL.md, "Session revocation") ----------------------
    def is_revoked(self, revocation_id: bytes, now: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM revoked_sessions WHERE id = ? AND expiry > ?", (revocation_id, now)
        ).fetchone()
        return row is not None

    def add_revocations(
        self, rows: list[tuple[bytes, int]], now: int, limit: int
    ) -> tuple[list[tuple[bytes, int]], bool]:
        """Keep revoked sessions (blinded ids, by the enclave) until their expiry, durably:
        the rows new here, and whether some were left out because ``limit`` live rows are
        kept. Expired rows are pruned first."""
        added: list[tuple[bytes, int]] = []
        full = False
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM revoked_sessions WHERE expiry <= ?", (now,))
                (count,) = cur.execute("SELECT COUNT(*) FROM revoked_sessions").fetchone()
                for rid, expiry in rows:
                    if cur.execute(
                        "SELECT 1 FROM revoked_sessions WHERE id = ?", (rid,)
                    ).fetchone():
                        continue
                    if count >= limit:
                        full = True
                        break
                    cur.execute(
                        "INSERT INTO revoked_sessions (id, expiry) VALUES (?, ?)", (rid, expiry)
                    )
                    count += 1
                    added.append((rid, expiry))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return added, full

    def live_revocations(self, now: int) -> list[tuple[bytes, int]]:
        rows = self._conn.execute(
            "SELECT id, expiry FROM revoked_sessions WHERE expiry > ? ORDER BY id", (now,)
        ).fetchall()
        return [(bytes(rid), int(expiry)) for rid, expiry in rows]

    # -- sealed snapshots (docs/PROTOCOL.md, "Sealed snapshot v1") ----------------------
    def snapshot_view(self) -> SnapshotView:
        """A consistent read-only view of this file as of now (its own connection holding
        one SQLite read transaction), for exporting a snapshot while commits go on."""
        return SnapshotView(self.path)

    def stage_snapshot(
        self,
        rows: list[tuple[bytes, bytes]],
        blocks: list[CommittedBlock],
        state: bytes,
        *,
        restart: bool = False,
    ) -> None:
        """Stage one chunk's kv rows (as stored: blinded key, sealed value) and block rows,
        and the enclave's record of the staged snapshot, in one transaction; ``restart``
        first empties what an earlier snapshot staged."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if restart:
                    cur.execute("DELETE FROM snapshot_kv")
                    cur.execute("DELETE FROM snapshot_blocks")
                cur.executemany("INSERT OR REPLACE INTO snapshot_kv (k, v) VALUES (?, ?)", rows)
                cur.executemany(
                    "INSERT OR REPLACE INTO snapshot_blocks "
                    "(number, hash, header, body, round, proposer, seals) VALUES (?,?,?,?,?,?,?)",
                    [
                        (b.number, b.hash, b.header, b.body, b.round, b.proposer,
                         encode_seals(b.seals))
                        for b in blocks
                    ],
                )  # fmt: skip
                cur.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    (SNAPSHOT_META, state),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def staged_row(self, stored_key: bytes) -> bytes | None:
        """A staged kv row's value, by the key it is stored under."""
        row = self._conn.execute("SELECT v FROM snapshot_kv WHERE k = ?", (stored_key,)).fetchone()
        return None if row is None else bytes(row[0])

    def staged_value(self, key: bytes) -> bytes | None:
        """The staged value of py-evm's ``key``: blinded and opened as ``BufferedKV`` reads
        the kv table (``SealedValueError`` when it does not open for that key)."""
        sealer = self._sealer
        stored = self.staged_row(key if sealer is None else sealer.blind(key))
        if stored is None or sealer is None:
            return stored
        return sealer.open(stored, _KV_AD + key)

    def staged_blocks(self) -> list[CommittedBlock]:
        rows = self._conn.execute(
            "SELECT number, hash, header, seals, proposer, round, body FROM snapshot_blocks "
            "ORDER BY number"
        ).fetchall()
        return [_block(r) for r in rows]

    def staged_counts(self) -> tuple[int, int]:
        """(kv rows, block rows) staged."""
        (rows,) = self._conn.execute("SELECT COUNT(*) FROM snapshot_kv").fetchone()
        (blocks,) = self._conn.execute("SELECT COUNT(*) FROM snapshot_blocks").fetchone()
        return int(rows), int(blocks)

    def open_snapshot(
        self, governance: tuple[list[tuple[int, bytes, bytes, bytes]], bytes] | None = None
    ) -> None:
        """Move the staged snapshot into the ledger in one transaction: its kv rows over
        the file's (content-addressed rows are the same; py-evm's lookups become the
        snapshot's), its blocks, and the canonical index replaced by the snapshot's chain.
        ``governance``: the governance rows (number, hash, section, state digest) of the
        snapshot's blocks and the state at its head, which replace the file's. The read
        cache is emptied (its lookups may be stale); the pool is kept."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                if governance is not None:
                    rows, state = governance
                    cur.execute("DELETE FROM governance")
                    cur.executemany(
                        "INSERT INTO governance (number, hash, section, state_digest) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    cur.execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                        (GOVERNANCE_STATE_META, state),
                    )
                cur.execute("INSERT OR REPLACE INTO kv (k, v) SELECT k, v FROM snapshot_kv")
                cur.execute(
                    "INSERT OR REPLACE INTO blocks "
                    "(hash, number, header, body, round, proposer, seals) "
                    "SELECT hash, number, header, body, round, proposer, seals "
                    "FROM snapshot_blocks"
                )
                cur.execute("DELETE FROM canonical")
                cur.execute(
                    "INSERT INTO canonical (number, hash) SELECT number, hash FROM snapshot_blocks"
                )
                cur.execute("DELETE FROM snapshot_kv")
                cur.execute("DELETE FROM snapshot_blocks")
                cur.execute("DELETE FROM meta WHERE name = ?", (SNAPSHOT_META,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self.kv.discard()
            self.kv._cache.clear()

    def drop_snapshot(self) -> None:
        """Forget a staged snapshot (refused, abandoned or superseded)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM snapshot_kv")
                cur.execute("DELETE FROM snapshot_blocks")
                cur.execute("DELETE FROM meta WHERE name = ?", (SNAPSHOT_META,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def check_integrity(self) -> None:
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise LedgerError(f"{self.path} failed SQLite's integrity check: {row}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _block(row: tuple[int, bytes, bytes, bytes, bytes, int, bytes | None]) -> CommittedBlock:
    number, block_hash, header, seals, proposer, round_, body = row
    return CommittedBlock(
        number,
        bytes(block_hash),
        bytes(header),
        decode_seals(bytes(seals)),
        bytes(proposer),
        int(round_),
        None if body is None else bytes(body),
    )


class SnapshotView:
    """The ledger file as of one instant: a second connection that holds a SQLite read
    transaction (WAL mode lets the node's own connection keep committing meanwhile). Rows are
    read in key order (kv) and number order (canonical blocks up to the view's head), so an
    export resumes from a cursor. ``close`` ends the read transaction; until then the WAL
    cannot be checkpointed past this view, which is why sessions are short-lived."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        try:
            self._conn.execute("BEGIN")
            row = self._conn.execute(
                "SELECT c.number, c.hash FROM canonical c ORDER BY c.number DESC LIMIT 1"
            ).fetchone()  # the first read fixes the transaction's snapshot of the file
            if row is None:
                raise LedgerError("the ledger has no blocks to export")
            self.height = int(row[0])
            self.hash = bytes(row[1])
            (self.kv_rows, self.kv_bytes) = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(k) + LENGTH(v)), 0) FROM kv"
            ).fetchone()
            (self.block_bytes,) = self._conn.execute(
                "SELECT COALESCE(SUM(LENGTH(b.header) + COALESCE(LENGTH(b.body), 0) "
                "+ LENGTH(b.seals) + 80), 0) FROM canonical c JOIN blocks b ON b.hash = c.hash"
            ).fetchone()
        except BaseException:
            self._conn.close()
            raise

    @property
    def total_bytes(self) -> int:
        return int(self.kv_bytes) + int(self.block_bytes)

    def kv_after(
        self, after: bytes, limit_bytes: int, limit_rows: int
    ) -> list[tuple[bytes, bytes]]:
        """kv rows with keys greater than ``after``, in key order, up to about
        ``limit_bytes`` (at least one row when any is left)."""
        out: list[tuple[bytes, bytes]] = []
        size = 0
        cursor = self._conn.execute(
            "SELECT k, v FROM kv WHERE k > ? ORDER BY k LIMIT ?", (after, limit_rows)
        )
        for k, v in cursor:
            out.append((bytes(k), bytes(v)))
            size += len(k) + len(v)
            if size >= limit_bytes:
                break
        cursor.close()
        return out

    def blocks_after(self, after: int, limit_bytes: int, limit_rows: int) -> list[CommittedBlock]:
        """Canonical blocks numbered above ``after`` (-1: from genesis), in order."""
        out: list[CommittedBlock] = []
        size = 0
        cursor = self._conn.execute(
            f"SELECT {Ledger._COLUMNS} FROM canonical c JOIN blocks b ON b.hash = c.hash "
            "WHERE c.number > ? ORDER BY c.number LIMIT ?",
            (after, limit_rows),
        )
        for row in cursor:
            block = _block(row)
            out.append(block)
            size += len(block.header) + len(block.body or b"") + 67 * len(block.seals) + 80
            if size >= limit_bytes:
                break
        cursor.close()
        return out

    def close(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self._conn.close()
