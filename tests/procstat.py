"""What a node's processes hold: the host process and its enclave child, read from /proc."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def enclave_pid(host_pid: int) -> int:
    """The enclave worker: the host's child running ``gateway.enclave.worker``."""
    for child in children(host_pid):
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"gateway.enclave.worker" in cmdline:
            return child
    raise LookupError(f"process {host_pid} has no enclave child")


def rss(pid: int) -> int:
    """Resident set size in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for process {pid}")
