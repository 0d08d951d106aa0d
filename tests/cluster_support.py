"""A local consortium for tests: identities made in each node's enclave, consortium.json and
node.json files as PLAN8 lays them out, and `coco-gateway node --config` processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
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


def make_consortium(
    root: Path, validators: int = 4, observers: int = 1, **terms_over: Any
) -> list[Path]:
    """Write a consortium under ``root``; the node.json paths, validators first."""

    async def identities() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(
                *(_identity(root / f"node{i + 1}" / "data") for i in range(validators))
            )
        )

    idents = asyncio.run(identities())
    names = [f"node{i + 1}" for i in range(validators)]
    ports = [(free_port(), free_port()) for _ in range(validators + observers)]
    addrs = ["0x" + ident["address"].hex() for ident in idents]
    terms: dict[str, Any] = {
        "version": 1,
        "chainId": CHAIN_ID,
        "fork": "osaka",
        "gasLimit": 30_000_000,
        "genesisTimestamp": 1_764_000_000,
        "alloc": {FUNDED.lower(): str(10**24)},
        "privacy": "open",
        "validation": "attested-diff",
        "blockPeriod": 1,
        "roundTimeout": 2.0,
        "maxRoundTimeout": 30.0,
        "epochPeriod": 86400,
        "validators": addrs,
        "genesisNode": addrs[0],
        "nodes": [
            {
                "name": names[i],
                "address": addrs[i],
                "role": "validator",
                "rpc": f"127.0.0.1:{ports[i][0]}",
                "p2p": f"127.0.0.1:{ports[i][1]}",
            }
            for i in range(validators)
        ],
        "measurements": ["0x" + idents[0]["measurement"].hex()],
        "platforms": ["virtual"],
        "allowVirtual": True,
    }
    terms.update(terms_over)
    (root / "consortium.json").write_text(json.dumps(terms, indent=2))
    p2p = [f"127.0.0.1:{p2p_port}" for _, p2p_port in ports[:validators]]
    configs: list[Path] = []
    for i in range(validators + observers):
        name = names[i] if i < validators else f"observer{i - validators + 1}"
        role = "validator" if i < validators else "observer"
        here = root / name
        here.mkdir(exist_ok=True)
        doc = {
            "version": 1,
            "name": name,
            "role": role,
            "consortium": "../consortium.json",
            "dataDir": "data",
            "rpc": {"host": "127.0.0.1", "port": ports[i][0]},
            "p2p": {"host": "127.0.0.1", "port": ports[i][1]},
            "peers": [p for j, p in enumerate(p2p) if j != i],
            "enclave": "process",
            "privacy": "open",
        }
        (here / "node.json").write_text(json.dumps(doc, indent=2))
        configs.append(here / "node.json")
    return configs


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
