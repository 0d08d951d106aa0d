"""Sealed storage: the enclave's AES-256-GCM sealer and the ledger that stores through it.

Unit tests, no node: the sealer round-trips, every altered byte and every moved value is
detected, a wrong key fails with a clear message, and the ledger keeps kv values and pooled
transactions sealed in the file (plaintext only in its caches) under blinded kv keys,
refuses old files (format 1: plaintext, format 2: unblinded keys), and refuses to mix the
sealed and the --insecure-plaintext-storage modes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from gateway.enclave.storage import OVERHEAD, StorageSealer
from gateway.errors import RpcError
from gateway.ledger import (
    FORMAT_VERSION,
    CommittedBlock,
    Ledger,
    LedgerError,
    LedgerRefused,
    SealedValueError,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SECRET = b"the balance of alice is 1234567890"


def block(number: int) -> CommittedBlock:
    return CommittedBlock(number, bytes([number]) * 32, b"header", (b"seal",), b"sealer")


def sealed_ledger(path: Path, key: bytes = KEY) -> Ledger:
    ledger = Ledger(path)
    ledger.set_sealer(StorageSealer(key))
    return ledger


def stored_keys(path: Path) -> set[bytes]:
    conn = sqlite3.connect(str(path))
    try:
        return {bytes(row[0]) for row in conn.execute("SELECT k FROM kv")}
    finally:
        conn.close()


def file_bytes(path: Path) -> bytes:
    """Every byte SQLite wrote for this ledger: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


# ---------------------------------------------------------------------------- the sealer


def test_sealer_round_trip() -> None:
    sealer = StorageSealer(KEY)
    for plaintext in (b"", b"x", SECRET, os.urandom(5000)):
        blob = sealer.seal(plaintext, b"ad")
        assert len(blob) == len(plaintext) + OVERHEAD
        assert sealer.open(blob, b"ad") == plaintext
        # another sealer with the same storage key (a restarted node) opens it too
        assert StorageSealer(KEY).open(blob, b"ad") == plaintext


def test_sealer_nonce_is_fresh_per_write() -> None:
    sealer = StorageSealer(KEY)
    blobs = {sealer.seal(SECRET, b"ad") for _ in range(100)}
    assert len(blobs) == 100
    assert all(SECRET not in blob for blob in blobs)


def test_sealer_detects_every_altered_byte() -> None:
    sealer = StorageSealer(KEY)
    blob = sealer.seal(SECRET, b"ad")
    for i in range(len(blob)):  # version, key id, nonce, ciphertext, tag
        altered = bytearray(blob)
        altered[i] ^= 0x01
        with pytest.raises(SealedValueError):
            sealer.open(bytes(altered), b"ad")
    for cut in (0, 1, OVERHEAD - 1, len(blob) - 1):
        with pytest.raises(SealedValueError):
            sealer.open(blob[:cut], b"ad")
    with pytest.raises(SealedValueError):
        sealer.open(blob + b"\x00", b"ad")


def test_sealer_binds_the_associated_data() -> None:
    sealer = StorageSealer(KEY)
    blob = sealer.seal(SECRET, b"key-a")
    with pytest.raises(SealedValueError, match="moved to another key"):
        sealer.open(blob, b"key-b")


def test_wrong_key_fails_clearly() -> None:
    blob = StorageSealer(KEY).seal(SECRET, b"ad")
    with pytest.raises(SealedValueError, match="storage key is not the one it was sealed with"):
        StorageSealer(OTHER_KEY).open(blob, b"ad")
    with pytest.raises(ValueError, match="32 bytes"):
        StorageSealer(KEY[:16])


def test_plaintext_is_refused_as_a_sealed_value() -> None:
    with pytest.raises(SealedValueError, match=r"unknown format|truncated"):
        StorageSealer(KEY).open(SECRET, b"ad")


def test_sealer_rotates_session_keys_and_still_opens_old_values() -> None:
    sealer = StorageSealer(KEY, rotate_after=3)
    blobs = [sealer.seal(bytes([i]) * 40, b"ad%d" % i) for i in range(10)]
    key_ids = {blob[1:9] for blob in blobs}
    assert len(key_ids) == 4  # 3 + 3 + 3 + 1 writes
    for i, blob in enumerate(blobs):
        assert StorageSealer(KEY).open(blob, b"ad%d" % i) == bytes([i]) * 40


# ---------------------------------------------------------------------------- the ledger


def test_ledger_seals_kv_values_and_pool(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = sealed_ledger(path)
    assert ledger.get_meta("format_version") == b"4" == str(FORMAT_VERSION).encode()
    assert ledger.get_meta("storage") == b"sealed"
    ledger.kv[b"key-1"] = SECRET
    ledger.kv[b"key-2"] = SECRET + b"!"
    ledger.commit_genesis(block(0), {"genesis": b"{}"})
    ledger.pool_add(b"\x11" * 32, b"raw tx carrying " + SECRET)
    # the cache holds the plaintext, so reads after a write need no opening
    assert ledger.kv._cache[b"key-1"] == SECRET
    assert SECRET not in file_bytes(path)
    blinded = StorageSealer(KEY).blind(b"key-1")
    stored = sqlite3.connect(str(path)).execute("SELECT v FROM kv WHERE k = ?", (blinded,))
    assert len(stored.fetchone()[0]) == len(SECRET) + OVERHEAD
    ledger.close()

    again = sealed_ledger(path)
    assert again.kv[b"key-1"] == SECRET
    assert again.kv[b"key-2"] == SECRET + b"!"
    assert again.kv._cache[b"key-1"] == SECRET  # cached after opening
    assert b"key-3" not in again.kv
    assert [(e.hash, e.raw) for e in again.pool_entries()] == [
        (b"\x11" * 32, b"raw tx carrying " + SECRET)
    ]
    del again.kv[b"key-2"]
    again.commit_block(block(1), [b"\x11" * 32])
    assert b"key-2" not in again.kv
    assert again.pool_entries() == []
    again.close()


def test_ledger_detects_values_swapped_between_keys(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = sealed_ledger(path)
    ledger.kv[b"alice"] = b"balance 1"
    ledger.kv[b"bob"] = b"balance 1000000"
    ledger.commit_genesis(block(0), {})
    ledger.pool_add(b"\x01" * 32, b"tx one")
    ledger.pool_add(b"\x02" * 32, b"tx two")
    ledger.close()

    blind = StorageSealer(KEY).blind
    conn = sqlite3.connect(str(path), isolation_level=None)
    bob = conn.execute("SELECT v FROM kv WHERE k = ?", (blind(b"bob"),)).fetchone()[0]
    assert conn.execute("UPDATE kv SET v = ? WHERE k = ?", (bob, blind(b"alice"))).rowcount == 1
    two = conn.execute("SELECT raw FROM pool WHERE hash = ?", (b"\x02" * 32,)).fetchone()[0]
    conn.execute("UPDATE pool SET raw = ? WHERE hash = ?", (two, b"\x01" * 32))
    conn.close()

    again = sealed_ledger(path)
    assert again.kv[b"bob"] == b"balance 1000000"
    with pytest.raises(SealedValueError, match="moved to another key"):
        again.kv[b"alice"]
    with pytest.raises(SealedValueError):
        again.pool_entries()
    again.close()


def test_ledger_refuses_a_wrong_storage_key(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    sealed_ledger(path).close()
    ledger = Ledger(path)
    with pytest.raises(LedgerRefused, match="sealed under another consortium secret"):
        ledger.set_sealer(StorageSealer(OTHER_KEY))
    ledger.close()


def test_sealed_storage_is_locked_until_the_sealer_is_set(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = sealed_ledger(path)
    ledger.kv[b"k"] = b"v"
    ledger.commit_genesis(block(0), {"genesis": b"{}"})
    ledger.pool_add(b"\x01" * 32, b"tx")
    ledger.close()
    locked = Ledger(path)
    assert locked.get_meta("genesis") == b"{}"  # meta and headers stay readable
    assert locked.head() == block(0)
    with pytest.raises(LedgerError, match="locked"):
        locked.kv[b"k"]
    with pytest.raises(LedgerError, match="locked"):
        locked.pool_entries()
    locked.kv[b"k2"] = b"v2"
    with pytest.raises(LedgerError, match="locked"):
        locked.commit_block(block(1), [])
    assert not locked.kv.dirty  # a failed commit drops the buffered writes
    locked.close()


def test_ledger_refuses_format_1(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (b"1",))
    conn.close()
    with pytest.raises(LedgerRefused, match=r"older node.*plaintext.*Start a new data directory"):
        Ledger(path)
    with pytest.raises(LedgerRefused, match="older node"):
        Ledger(path, seal_storage=False)


@pytest.mark.parametrize("mode", [b"sealed", b"plaintext"])
def test_ledger_refuses_format_2(tmp_path: Path, mode: bytes) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path, seal_storage=mode == b"sealed").close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE name = 'format_version'", (b"2",))
    conn.close()
    pattern = r"older node \(ledger format 2\).*unblinded.*Start a new data directory"
    with pytest.raises(LedgerRefused, match=pattern):
        Ledger(path)
    with pytest.raises(LedgerRefused, match="ledger format 2"):
        Ledger(path, seal_storage=False)


def test_ledger_refuses_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE name = 'format_version'", (b"5",))
    conn.close()
    with pytest.raises(LedgerRefused, match="format 5"):
        Ledger(path)


def _format_3_file(path: Path, seals: list[bytes]) -> None:
    """A ledger file as a format-3 node left it: one block row per height with its v1 seal."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.executescript(
        "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE blocks (number INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE,"
        " header BLOB NOT NULL, seal BLOB NOT NULL, sealer BLOB NOT NULL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
    )
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)", [("format_version", b"3"), ("storage", b"sealed")]
    )
    for number, seal in enumerate(seals):
        conn.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
            (
                number,
                bytes([number]) * 32,
                b"header%d" % number,
                seal,
                b"\x11" * 20 if seal else b"",
            ),
        )
    conn.close()


def test_a_format_3_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    _format_3_file(path, [b"", b"\x01" * 65, b"\x02" * 65])
    ledger = Ledger(path)
    assert ledger.get_meta("format_version") == b"4"
    genesis, first, head = (ledger.block_by_number(n) for n in range(3))
    assert genesis is not None and genesis.seals == () and genesis.round == 0
    assert first is not None and first.seals == (b"\x01" * 65,) and first.proposer == b"\x11" * 20
    assert head == ledger.head() and head is not None and head.number == 2
    assert head.seal == b"\x02" * 65 and head.body is None and head.header == b"header2"
    assert ledger.block_by_hash(b"\x01" * 32) == first
    ledger.close()
    reopened = Ledger(path)  # format 4 now: opened as is
    assert reopened.head() == head
    reopened.close()


def test_commit_moves_the_canonical_index(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite", seal_storage=False)
    ledger.commit_genesis(CommittedBlock(0, b"\x00" * 32, b"g"), {})
    one = CommittedBlock(1, b"\x01" * 32, b"h1", (b"a" * 65, b"b" * 65), b"\x22" * 20, 3, b"body")
    ledger.commit_block(one, [])
    assert ledger.head() == one and ledger.block_by_number(1) == one
    assert [b.number for b in ledger.blocks_range(0, 10)] == [0, 1]
    ledger.close()


def test_refusals_reach_the_operator_as_rpc_errors() -> None:
    assert issubclass(LedgerRefused, RpcError)
    assert issubclass(LedgerRefused, LedgerError)
    assert LedgerRefused("why").message == "why"


def test_plaintext_mode_is_marked_and_never_mixed(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "ledger.sqlite"
    ledger = Ledger(plain, seal_storage=False)
    assert ledger.get_meta("storage") == b"plaintext"
    ledger.kv[b"k"] = SECRET
    ledger.commit_genesis(block(0), {})
    ledger.pool_add(b"\x01" * 32, b"tx " + SECRET)
    with pytest.raises(LedgerError, match="takes no sealer"):
        ledger.set_sealer(StorageSealer(KEY))
    ledger.close()
    assert SECRET in file_bytes(plain)  # what the flag means
    assert stored_keys(plain) == {b"k"}  # plaintext storage keeps py-evm's keys
    with pytest.raises(LedgerRefused, match="created with --insecure-plaintext-storage"):
        Ledger(plain)
    reopened = Ledger(plain, seal_storage=False)
    assert reopened.kv[b"k"] == SECRET
    assert reopened.pool_entries()[0].raw == b"tx " + SECRET
    reopened.close()

    sealed = tmp_path / "sealed" / "ledger.sqlite"
    sealed_ledger(sealed).close()
    with pytest.raises(LedgerRefused, match="cannot be opened with --insecure-plaintext"):
        Ledger(sealed, seal_storage=False)


# ---------------------------------------------------------------------------- key blinding


def test_blinded_keys_are_keyed_stable_and_separate() -> None:
    sealer = StorageSealer(KEY)
    keys = [b"", b"k", b"\x00" * 32, b"transaction-hash-to-block:" + b"\x11" * 32]
    blinded = [sealer.blind(k) for k in keys]
    assert all(len(b) == 32 for b in blinded)
    assert len(set(blinded)) == len(keys)
    assert not set(blinded) & set(keys)
    # stable: a restarted node (a new sealer, same storage key) finds the same rows
    assert [StorageSealer(KEY).blind(k) for k in keys] == blinded
    # keyed: another storage key gives other rows
    assert not {StorageSealer(OTHER_KEY).blind(k) for k in keys} & set(blinded)


def test_ledger_stores_only_blinded_keys(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    keccak_like = bytes(range(100, 132))
    lookup = b"transaction-hash-to-block:" + bytes(range(32))
    ledger = sealed_ledger(path)
    ledger.kv[keccak_like] = b"trie node"
    ledger.kv[lookup] = b"block and index"
    ledger.commit_genesis(block(0), {})
    ledger.close()
    blind = StorageSealer(KEY).blind
    assert stored_keys(path) == {blind(keccak_like), blind(lookup)}
    data = file_bytes(path)
    assert keccak_like not in data
    assert lookup not in data and b"transaction-hash-to-block" not in data

    # stable across restarts: the reopened ledger reads, replaces and deletes the same rows
    again = sealed_ledger(path)
    assert again.kv[keccak_like] == b"trie node"
    again.kv[keccak_like] = b"trie node 2"
    del again.kv[lookup]
    again.commit_block(block(1), [])
    again.close()
    assert stored_keys(path) == {blind(keccak_like)}
    third = sealed_ledger(path)
    assert third.kv[keccak_like] == b"trie node 2"
    third.close()

    # under another storage key the same chain would use other rows
    other = tmp_path / "other" / "ledger.sqlite"
    ledger = sealed_ledger(other, OTHER_KEY)
    ledger.kv[keccak_like] = b"trie node"
    ledger.commit_genesis(block(0), {})
    ledger.close()
    other_blind = StorageSealer(OTHER_KEY).blind(keccak_like)
    assert stored_keys(other) == {other_blind}
    assert other_blind != blind(keccak_like)


def test_a_value_copied_to_another_blinded_key_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = sealed_ledger(path)
    ledger.kv[b"alice"] = b"balance 1000000"
    ledger.commit_genesis(block(0), {})
    ledger.close()
    blind = StorageSealer(KEY).blind
    conn = sqlite3.connect(str(path), isolation_level=None)
    value = conn.execute("SELECT v FROM kv WHERE k = ?", (blind(b"alice"),)).fetchone()[0]
    conn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (blind(b"bob"), value))
    conn.close()
    again = sealed_ledger(path)
    assert again.kv[b"alice"] == b"balance 1000000"
    with pytest.raises(SealedValueError, match="moved to another key"):
        again.kv[b"bob"]
    again.close()


class CountingSealer:
    def __init__(self, key: bytes) -> None:
        self.inner = StorageSealer(key)
        self.blinds = 0

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self.inner.seal(plaintext, associated_data)

    def open(self, blob: bytes, associated_data: bytes) -> bytes:
        return self.inner.open(blob, associated_data)

    def blind(self, key: bytes) -> bytes:
        self.blinds += 1
        return self.inner.blind(key)


def test_cache_hits_cost_no_blinding(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    sealer = CountingSealer(KEY)
    ledger.set_sealer(sealer)
    ledger.kv[b"k"] = b"v"
    assert ledger.kv[b"k"] == b"v" and sealer.blinds == 0  # pending writes: no HMAC
    ledger.commit_genesis(block(0), {})
    assert sealer.blinds == 1  # one per written row
    for _ in range(10):
        assert ledger.kv[b"k"] == b"v"  # cached, by py-evm's key
    assert sealer.blinds == 1
    ledger.kv._cache.clear()
    assert ledger.kv[b"k"] == b"v"  # a miss: one HMAC, then cached again
    assert ledger.kv[b"k"] == b"v"
    assert sealer.blinds == 2
    ledger.close()
