"""What ``coco-gateway dev`` checks before it writes anything or prints its banner.

Each check either passes or raises ``StartupError`` with one line for the operator, in this
order: the listening sockets are bound (a port in use is refused before a data directory is
made); the data directory is a directory this process may write; it is locked against
every other node; the chain it holds matches the ``--chain-id`` and ``--fork`` the operator
gave. The node then starts on the sockets and the lock taken here.

The lock is an advisory lock (``flock``) on ``<data dir>/LOCK``, which holds the PID of the
node that took it (written once every check has passed: a refused start writes nothing,
beyond an empty LOCK in a directory that had none). The kernel releases the lock when the
last process holding the file closes it or dies: the node's host process and its enclave
child, which inherits it (so the lock lasts as long as the enclave may write, even if the
host is killed first; the enclave exits when its standard input, from the host, ends).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.ledger import LEDGER_FILE, read_meta

LOCK_FILE = "LOCK"
# a holder that has exited may leave an enclave child closing the ledger: wait that long
EXITED_HOLDER_WAIT = 10.0


class StartupError(Exception):
    """The node cannot start; the message is one line for the operator."""


# ------------------------------------------------------------------ the listening sockets


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for ``host:port``, as asyncio would bind them."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in bound:
            sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen on {host}:{port}: the port is in use (another node?); "
                "choose another with --port"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return bound


def public_url(host: str, port: int, scheme: str = "http") -> tuple[str, str | None]:
    """A URL a user on this machine can paste, and a note when ``host`` is a wildcard."""
    if host in ("", "0.0.0.0"):
        return f"{scheme}://127.0.0.1:{port}", "listening on all IPv4 interfaces"
    if host == "::":
        return f"{scheme}://[::1]:{port}", "listening on all IPv6 interfaces"
    if ":" in host:
        return f"{scheme}://[{host}]:{port}", None
    return f"{scheme}://{host}:{port}", None


# ------------------------------------------------------------------ the data directory


def check_data_dir(data_dir: Path) -> None:
    """Refuse a path that is not a directory, or a directory this process cannot write."""
    if data_dir.exists() and not data_dir.is_dir():
        raise StartupError(f"--data-dir {data_dir} is a file, not a directory")
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StartupError(f"--data-dir {data_dir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the data directory" if existing == data_dir else f"{existing}, where it would go,"
        raise StartupError(f"cannot use --data-dir {data_dir}: {what} is not writable")


@dataclass
class DataDirLock:
    """The held lock on a data directory; ``fd`` is inherited by the enclave process."""

    data_dir: Path
    fd: int

    def announce(self) -> None:
        """Write this process's PID into the lock file, for a node that is refused."""
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(self.fd, pid, 0)
        os.ftruncate(self.fd, len(pid))

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = -1


def lock_data_dir(data_dir: Path, *, wait_for_exited: float = EXITED_HOLDER_WAIT) -> DataDirLock:
    """Take the data directory's lock (making the directory if it is new), or refuse."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(f"cannot use --data-dir {data_dir}: {exc.strerror or exc}") from None
    deadline = time.monotonic() + wait_for_exited
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(fd)
            if holder is not None and not _alive(holder) and time.monotonic() < deadline:
                # the holder was killed; its enclave process is finishing: it lets go soon
                time.sleep(0.05)
                continue
            os.close(fd)
            raise StartupError(_busy(data_dir, holder)) from None
    return DataDirLock(data_dir, fd)


def _holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy(data_dir: Path, holder: int | None) -> str:
    where = data_dir.resolve()
    if holder is None:
        return f"the data directory {where} is in use by another node (locked)"
    if _alive(holder):
        return (
            f"the data directory {where} is in use by another node (process {holder}); "
            "stop it, or choose another --data-dir"
        )
    return (
        f"the data directory {where} is still locked by the enclave of node process "
        f"{holder}, which has exited; wait until it closes the ledger and try again"
    )


# ------------------------------------------------------------------ the chain it holds


@dataclass(frozen=True)
class StoredChain:
    chain_id: int
    fork: str


@dataclass(frozen=True)
class ChainChoice:
    """The chain id and fork to start with; None: the node's default (a new chain)."""

    chain_id: int | None
    fork: str | None


def stored_chain(data_dir: Path) -> StoredChain | None:
    """The chain id and fork of the chain in ``data_dir`` (public genesis), or None."""
    raw = read_meta(data_dir / LEDGER_FILE, "genesis")
    if raw is None:
        return None
    try:
        genesis = json.loads(raw)
        return StoredChain(int(genesis["chainId"]), str(genesis["fork"]))
    except (ValueError, KeyError, TypeError):
        return None  # the enclave reports a damaged ledger with its own message


def resolve_chain(data_dir: Path, chain_id: int | None, fork: str | None) -> ChainChoice:
    """The chain to run: the stored one (refused if a given flag differs), or a new one."""
    stored = stored_chain(data_dir)
    if stored is None:
        return ChainChoice(chain_id, fork)
    where = data_dir.resolve()
    if chain_id is not None and chain_id != stored.chain_id:
        raise StartupError(
            f"the data directory {where} holds chain {stored.chain_id}, not {chain_id}: drop "
            f"--chain-id (or pass --chain-id {stored.chain_id}), or choose another --data-dir"
        )
    if fork is not None and fork != stored.fork:
        raise StartupError(
            f"the data directory {where} holds a {stored.fork} chain, not {fork}: a chain's "
            f"fork is fixed at its genesis; drop --fork (or pass --fork {stored.fork}), or "
            "choose another --data-dir"
        )
    return ChainChoice(stored.chain_id, stored.fork)


# ------------------------------------------------------------------ all of it, in order


@dataclass
class Ready:
    """What the checks took: the bound sockets, the held lock, the chain to run."""

    sockets: list[socket.socket]
    lock: DataDirLock
    chain: ChainChoice
    port: int
    url: str
    listening_note: str | None

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.lock.release()


def prepare(
    host: str,
    port: int,
    data_dir: Path,
    chain_id: int | None,
    fork: str | None,
) -> Ready:
    """Run every check, in order; ``StartupError`` (one line) at the first that fails.

    ``chain_id`` and ``fork`` are None when the operator did not give them: an existing
    chain then keeps its own, a new one takes the defaults.
    """
    sockets = bind_listeners(host, port)
    lock: DataDirLock | None = None
    try:
        check_data_dir(data_dir)
        lock = lock_data_dir(data_dir)
        chain = resolve_chain(data_dir, chain_id, fork)
        lock.announce()  # every check passed: from here on, this node holds the directory
    except BaseException:
        for sock in sockets:
            sock.close()
        if lock is not None:
            lock.release()
        raise
    bound_port = sockets[0].getsockname()[1]
    url, note = public_url(host, bound_port)
    return Ready(sockets, lock, chain, bound_port, url, note)
