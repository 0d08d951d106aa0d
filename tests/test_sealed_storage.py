"""Sealed storage: the enclave's AES-256-GCM sealer and the ledger that stores through it.

Unit tests, no node: the sealer round-trips, every altered byte and every moved value is
detected, a wrong key fails with a clear message, and the ledger keeps kv values and pooled
transactions sealed in the file (plaintext only in its caches), refuses old plaintext
files, and refuses to mix the sealed and the --insecure-plaintext-storage modes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from gateway.enclave.storage import OVERHEAD, StorageSealer
from gateway.errors import RpcError
from gateway.ledger import (
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
    return CommittedBlock(number, bytes([number]) * 32, b"header", b"seal", b"sealer")


def sealed_ledger(path: Path, key: bytes = KEY) -> Ledger:
    ledger = Ledger(path)
    ledger.set_sealer(StorageSealer(key))
    return ledger


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
    assert ledger.get_meta("format_version") == b"2"
    assert ledger.get_meta("storage") == b"sealed"
    ledger.kv[b"key-1"] = SECRET
    ledger.kv[b"key-2"] = SECRET + b"!"
    ledger.commit_genesis(block(0), {"genesis": b"{}"})
    ledger.pool_add(b"\x11" * 32, b"raw tx carrying " + SECRET)
    # the cache holds the plaintext, so reads after a write need no opening
    assert ledger.kv._cache[b"key-1"] == SECRET
    assert SECRET not in file_bytes(path)
    stored = sqlite3.connect(str(path)).execute("SELECT v FROM kv WHERE k = ?", (b"key-1",))
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

    conn = sqlite3.connect(str(path), isolation_level=None)
    bob = conn.execute("SELECT v FROM kv WHERE k = ?", (b"bob",)).fetchone()[0]
    conn.execute("UPDATE kv SET v = ? WHERE k = ?", (bob, b"alice"))
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


def test_ledger_refuses_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE name = 'format_version'", (b"3",))
    conn.close()
    with pytest.raises(LedgerRefused, match="format 3"):
        Ledger(path)


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
