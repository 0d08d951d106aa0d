"""Foundry (cast and forge 1.7.1, offline, compiling with solc-js) against a dev node.

Every command talks to a CheckingProxy in front of a fresh node of this module's own, so
each JSON-RPC answer Foundry receives is also checked against the execution-apis shapes.
The Foundry project is tests/clients/foundry; see tests/foundry_support.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, rpc
from foundry_support import (
    CAST,
    FORGE,
    FOUNDRY_DIR,
    SOLC,
    Foundry,
    ensure_installed,
    first_number,
)
from rpc_proxy import CheckingProxy

pytestmark = pytest.mark.timeout(300)

DEV0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SUPPLY = 10**24
SCRIPT_SUPPLY = 1_000_000 * 10**18  # Deploy.s.sol's INITIAL_SUPPLY
SCRIPT_TRANSFER = 1_234 * 10**18  # Deploy.s.sol's TRANSFER_AMOUNT
SOLC_LOG_NAME = "solc-wrapper.log"


def fresh_address(n: int) -> str:
    """An address nobody has used: no balance, no code, nonce 0."""
    return "0x" + f"{0xC0C0_0000 + n:040x}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, CheckingProxy]]:
    ensure_installed()
    node = NodeProcess(tmp_path_factory.mktemp("foundry") / "data").start()
    proxy = CheckingProxy(node.url).start()
    yield node, proxy
    proxy.stop()
    node.stop()


@pytest.fixture(scope="module")
def proxy(chain: tuple[NodeProcess, CheckingProxy]) -> CheckingProxy:
    return chain[1]


@pytest.fixture(scope="module")
def foundry(proxy: CheckingProxy) -> Foundry:
    return Foundry(proxy.url)


@pytest.fixture(scope="module")
def solc_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("solc") / SOLC_LOG_NAME


@pytest.fixture(scope="module")
def built(foundry: Foundry, solc_log: Path) -> Path:
    """`forge build` with nothing but foundry.toml (solc = "./solc", offline = true)."""
    foundry.forge("build", env={"SOLC_WRAPPER_LOG": str(solc_log)}, timeout=240)
    return FOUNDRY_DIR / "out"


def forge_artifact(out: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((out / f"{name}.sol" / f"{name}.json").read_text()))


def forge_with_solc(foundry: Foundry, command: str, *args: str, **kwargs: Any) -> str:
    """`forge COMMAND --use ./solc ARGS...` (the compiler given on the command line)."""
    return foundry.forge(command, "--use", str(SOLC), *args, **kwargs)


@pytest.fixture(scope="module")
def token(foundry: Foundry, built: Path) -> str:
    """A Token deployed by `forge create` from dev account 0."""
    out = forge_with_solc(
        foundry,
        "create",
        "src/Token.sol:Token",
        "--rpc-url",
        foundry.rpc_url,
        "--private-key",
        DEV_KEYS[0],
        "--broadcast",
        "--json",
        # --constructor-args takes every later word, so it comes last
        "--constructor-args",
        "Coco",
        "COCO",
        str(SUPPLY),
        timeout=240,
    )
    # forge prints the compiler's progress before the JSON when it had to compile
    deployed = json.loads(out[out.index("{") :])
    assert deployed["deployer"].lower() == DEV0.lower()
    return str(deployed["deployedTo"])


def receipt(foundry: Foundry, tx_hash: str) -> dict[str, Any]:
    return dict(foundry.cast_json("receipt", tx_hash))


def test_pinned_versions(foundry: Foundry) -> None:
    pins = json.loads((FOUNDRY_DIR / "package.json").read_text())["dependencies"]
    contracts = json.loads((FOUNDRY_DIR.parents[2] / "contracts" / "package.json").read_text())
    assert pins["solc"] == contracts["dependencies"]["solc"]
    version = pins["@foundry-rs/forge-linux-amd64"]
    assert pins["@foundry-rs/cast-linux-amd64"] == version
    assert f"Version: {version}" in foundry.run(FORGE, "--version").stdout
    assert f"Version: {version}" in foundry.run(CAST, "--version").stdout
    wrapper = foundry.run(SOLC, "--version").stdout.splitlines()
    assert wrapper[-1].startswith(f"Version: {pins['solc']}+commit.")


def test_forge_build_offline_with_solc_js(built: Path, solc_log: Path) -> None:
    # forge asked the wrapper (it always checks the version; it compiles unless cached)
    calls = [json.loads(line) for line in solc_log.read_text().splitlines()]
    assert ["--version"] in calls
    # same compiler, same settings: the bytecode equals the committed artifacts
    for name in ("Token", "Counter", "Events"):
        ours = forge_artifact(built, name)
        theirs = load_artifact(name)
        assert ours["bytecode"]["object"] == theirs["bytecode"], name
        assert ours["deployedBytecode"]["object"] == theirs["deployedBytecode"], name


def test_cast_reads(foundry: Foundry, proxy: CheckingProxy) -> None:
    assert int(foundry.cast("chain-id")) == CHAIN_ID
    assert json.loads(foundry.cast("rpc", "eth_chainId")) == hex(CHAIN_ID)
    number = int(foundry.cast("block-number"))
    assert number >= 0

    text = foundry.cast("block", "latest")
    block = foundry.cast_json("block", "latest")
    assert int(block["number"], 16) >= number
    assert block["hash"] in text
    assert int(block["baseFeePerGas"], 16) > 0
    assert foundry.cast("block", "latest", "--field", "number") == str(int(block["number"], 16))

    assert int(foundry.cast("balance", DEV0)) > 10**21
    assert int(foundry.cast("balance", fresh_address(0))) == 0
    assert int(foundry.cast("nonce", fresh_address(0))) == 0
    assert int(foundry.cast("gas-price")) > 0
    assert foundry.cast("code", fresh_address(0)) == "0x"
    proxy.assert_clean()


def test_cast_send_with_private_key(foundry: Foundry, proxy: CheckingProxy) -> None:
    to = fresh_address(1)
    nonce = int(foundry.cast("nonce", DEV0))
    sent = foundry.cast_json("send", "--private-key", DEV_KEYS[0], to, "--value", "1ether")
    assert sent["status"] == "0x1"
    assert sent["type"] == "0x2"
    again = receipt(foundry, sent["transactionHash"])
    assert again["blockHash"] == sent["blockHash"]
    assert again["from"].lower() == DEV0.lower()
    assert int(foundry.cast("balance", to)) == 10**18
    assert int(foundry.cast("nonce", DEV0)) == nonce + 1
    tx = foundry.cast_json("tx", sent["transactionHash"])
    assert int(tx["chainId"], 16) == CHAIN_ID
    assert int(tx["maxFeePerGas"], 16) >= int(tx["maxPriorityFeePerGas"], 16)
    proxy.assert_clean()


def test_cast_send_unlocked(foundry: Foundry, proxy: CheckingProxy) -> None:
    to = fresh_address(2)
    sent = foundry.cast_json("send", "--unlocked", "--from", DEV0, to, "--value", "2ether")
    assert sent["status"] == "0x1"
    assert sent["from"].lower() == DEV0.lower()
    assert int(foundry.cast("balance", to)) == 2 * 10**18
    assert proxy.calls["eth_sendTransaction"] >= 1
    proxy.assert_clean()


def test_cast_send_legacy(foundry: Foundry, proxy: CheckingProxy) -> None:
    to = fresh_address(3)
    sent = foundry.cast_json("send", "--legacy", "--private-key", DEV_KEYS[1], to, "--value", "3")
    assert sent["status"] == "0x1"
    assert sent["type"] == "0x0"
    tx = foundry.cast_json("tx", sent["transactionHash"])
    assert tx["type"] == "0x0"
    assert int(tx["gasPrice"], 16) > 0
    assert int(foundry.cast("balance", to)) == 3
    proxy.assert_clean()


def test_forge_create_token(
    foundry: Foundry, proxy: CheckingProxy, token: str, built: Path
) -> None:
    code = foundry.cast("code", token)
    assert code == forge_artifact(built, "Token")["deployedBytecode"]["object"]
    assert code == load_artifact("Token")["deployedBytecode"]
    assert json.loads(foundry.cast("call", token, "name()(string)")) == "Coco"
    assert json.loads(foundry.cast("call", token, "symbol()(string)")) == "COCO"
    assert first_number(foundry.cast("call", token, "totalSupply()(uint256)")) == SUPPLY
    assert first_number(foundry.cast("call", token, "balanceOf(address)(uint256)", DEV0)) == SUPPLY
    proxy.assert_clean()


def test_cast_token_transfer_estimate_receipt_logs(
    foundry: Foundry, proxy: CheckingProxy, token: str
) -> None:
    to = fresh_address(4)
    amount = 5 * 10**18
    transfer = ("transfer(address,uint256)", to, str(amount))
    estimate = int(foundry.cast("estimate", "--from", DEV0, token, *transfer))
    assert 21_000 < estimate < 100_000

    sent = foundry.cast_json("send", "--private-key", DEV_KEYS[0], token, *transfer)
    assert sent["status"] == "0x1"
    assert int(sent["gasUsed"], 16) <= estimate
    tx_hash = sent["transactionHash"]

    full = receipt(foundry, tx_hash)
    assert full["to"].lower() == token.lower()
    [log] = full["logs"]
    assert log["address"].lower() == token.lower()
    assert int(log["data"], 16) == amount
    assert foundry.cast("receipt", tx_hash, "status") == "true"

    event = "Transfer(address indexed from,address indexed to,uint256 value)"
    logs = foundry.cast_json(
        "logs",
        "--from-block",
        sent["blockNumber"],
        "--to-block",
        "latest",
        "--address",
        token,
        event,
    )
    assert [entry["transactionHash"] for entry in logs] == [tx_hash]
    assert logs[0]["topics"][2] == "0x" + to[2:].lower().rjust(64, "0")
    everything = foundry.cast_json("logs", "--from-block", "0", "--address", token)
    assert len(everything) == 2  # the mint in the constructor, then this transfer

    assert first_number(foundry.cast("call", token, "balanceOf(address)(uint256)", to)) == amount
    assert first_number(foundry.cast("call", token, "balanceOf(address)(uint256)", DEV0)) == (
        SUPPLY - amount
    )
    assert proxy.calls["eth_feeHistory"] >= 1
    proxy.assert_clean()


def test_cast_send_create(foundry: Foundry, proxy: CheckingProxy, built: Path) -> None:
    artifact = forge_artifact(built, "Counter")
    sent = foundry.cast_json(
        "send", "--private-key", DEV_KEYS[2], "--create", artifact["bytecode"]["object"]
    )
    assert sent["status"] == "0x1"
    counter = sent["contractAddress"]
    assert foundry.cast("code", counter) == artifact["deployedBytecode"]["object"]
    bumped = foundry.cast_json("send", "--private-key", DEV_KEYS[2], counter, "increment()")
    assert bumped["status"] == "0x1"
    assert first_number(foundry.cast("call", counter, "number()(uint256)")) == 1
    proxy.assert_clean()


def test_forge_script_deploy(
    foundry: Foundry, proxy: CheckingProxy, chain: tuple[NodeProcess, CheckingProxy], built: Path
) -> None:
    deployer = DEV1
    recipient = fresh_address(5)
    before = int(foundry.cast("nonce", deployer))
    output = forge_with_solc(
        foundry,
        "script",
        "script/Deploy.s.sol",
        "--rpc-url",
        foundry.rpc_url,
        "--private-key",
        DEV_KEYS[1],
        "--broadcast",
        env={"PRIVATE_KEY": DEV_KEYS[1], "RECIPIENT": recipient},
        timeout=240,
    )
    assert "ONCHAIN EXECUTION COMPLETE & SUCCESSFUL" in output

    run = json.loads(
        (FOUNDRY_DIR / "broadcast" / "Deploy.s.sol" / str(CHAIN_ID) / "run-latest.json").read_text()
    )
    kinds = [(tx["transactionType"], tx["contractName"]) for tx in run["transactions"]]
    assert kinds == [
        ("CREATE", "Token"),
        ("CREATE", "Counter"),
        ("CALL", "Counter"),
        ("CALL", "Counter"),
        ("CALL", "Token"),
    ]
    assert [r["status"] for r in run["receipts"]] == ["0x1"] * 5
    token = run["transactions"][0]["contractAddress"]
    counter = run["transactions"][1]["contractAddress"]

    # what the script did is on chain
    assert int(foundry.cast("nonce", deployer)) == before + 5
    assert first_number(foundry.cast("call", counter, "number()(uint256)")) == 2
    balance = "balanceOf(address)(uint256)"
    assert first_number(foundry.cast("call", token, balance, recipient)) == SCRIPT_TRANSFER
    assert first_number(foundry.cast("call", token, balance, deployer)) == (
        SCRIPT_SUPPLY - SCRIPT_TRANSFER
    )
    assert (
        foundry.cast("code", counter)
        == forge_artifact(built, "Counter")["deployedBytecode"]["object"]
    )

    # forge asks whether this is anvil; the node says the method does not exist
    assert proxy.calls["anvil_nodeInfo"] >= 1
    node = chain[0]
    assert rpc(node.url, "anvil_nodeInfo")["error"]["code"] == -32601
    proxy.assert_clean()


def test_proxy_saw_no_bad_answers(proxy: CheckingProxy) -> None:
    """Every answer cast and forge got in this module had the execution-apis shape."""
    proxy.assert_clean()
