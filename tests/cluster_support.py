"""A local consortium for tests: `coco-gateway init` (identities made in each node's enclave,
consortium.json and node.json files), and `coco-gateway node --config` processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import REPO, free_port, rpc
from eth_account import Account

from gateway.enclave import messages as m
from gateway.enclave.runtime import ProcessEnclave

CHAIN_ID = 4343
FUNDED_KEY = "0x" + "42" * 32
FUNDED = Account.from_key(FUNDED_KEY).address


async def _identity(data_dir: Path) -> dict[str, Any]:
    enclave = ProcessEnclave()
    try:
        return await enclave.start_identity(m.MakeIdentity(str(data_dir)))
    finally:
        await enclave.close()


def make_identity(data_dir: Path) -> dict[str, Any]:
    """A node identity made in a fresh enclave process for ``data_dir``."""
    return asyncio.run(_identity(data_dir))


def free_range(count: int) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def make_consortium(
    root: Path,
    validators: int = 4,
    observers: int = 1,
    members: int = 0,
    block_period: float | None = None,
) -> list[Path]:
    """``coco-gateway init`` a consortium under ``root`` (identities made in each node's
    enclave); the node.json paths: validators, members, observers."""
    count = validators + members + observers
    rpc_base = free_range(count)
    p2p_base = free_range(count)
    while set(range(p2p_base, p2p_base + count)) & set(range(rpc_base, rpc_base + count)):
        p2p_base = free_range(count)
    done = subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "init", "--dir", str(root),
            "--validators", str(validators), "--observers", str(observers),
            "--members", str(members),
            "--chain-id", str(CHAIN_ID), "--base-rpc-port", str(rpc_base),
            "--base-p2p-port", str(p2p_base), "--alloc", f"{FUNDED}={10**24}",
            *([] if block_period is None else ["--block-period", str(block_period)]),
        ],
        capture_output=True, text=True, cwd=str(REPO), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"init failed:\n{done.stdout}\n{done.stderr}"
    names = [f"node{i + 1}" for i in range(validators + members)]
    names += [f"observer{i + 1}" for i in range(observers)]
    return [root / name / "node.json" for name in names]


class ClusterNode:
    """One `coco-gateway node --config FILE` process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        doc = json.loads(config.read_text())
        self.name = doc["name"]
        self.url = f"http://127.0.0.1:{doc['rpc']['port']}"
        self.data_dir = config.parent / doc["dataDir"]
        self.log_path = config.parent / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ClusterNode:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child process owns it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "node", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            cwd=str(REPO),
            start_new_session=True,
        )
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
        try:
            return "result" in rpc(self.url, "eth_chainId")
        except OSError:
            return False

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        answer = rpc(self.url, method, params)
        assert "result" in answer, f"{self.name} {method}: {answer}"
        return answer["result"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the host and its enclave child
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def wait_for(condition: Any, timeout: float, what: str, nodes: list[ClusterNode]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"==== {n.name}\n{n.log()[-6000:]}" for n in nodes)
            raise AssertionError(f"{what} within {timeout:g} s\n{logs}")
        time.sleep(0.1)
