"""The committed contract artifacts match contracts/src and expose the expected ABI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from artifacts import ARTIFACTS_DIR, artifact_names, load_artifact

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "contracts" / "build.py"

EXPECTED = {
    "Token": {
        "function": {
            "name()",
            "symbol()",
            "decimals()",
            "totalSupply()",
            "balanceOf(address)",
            "allowance(address,address)",
            "transfer(address,uint256)",
            "approve(address,uint256)",
            "transferFrom(address,address,uint256)",
        },
        "event": {
            "Transfer(address,address,uint256)",
            "Approval(address,address,uint256)",
        },
        "error": {
            "InsufficientBalance(address,uint256,uint256)",
            "InsufficientAllowance(address,address,uint256,uint256)",
            "InvalidReceiver(address)",
            "InvalidSpender(address)",
        },
        "constructor": {"(string,string,uint256)"},
    },
    "Events": {
        "function": {
            "value()",
            "setValue(uint256)",
            "note(string)",
            "failRequire()",
            "failCustom(uint256)",
            "failPlain()",
            "failPanic()",
            "deposit()",
            "echo(bytes)",
            "spin(uint256)",
        },
        "event": {
            "ValueChanged(address,uint256,uint256)",
            "Note(address,string)",
            "Deposited(address,uint256)",
        },
        "error": {"Custom(uint256,string)"},
    },
    "Counter": {
        "function": {"number()", "increment()", "setNumber(uint256)"},
        "event": set(),
        "error": set(),
    },
    "BitMath": {
        "function": {"leadingZeros(uint256)", "log2(uint256)", "bitLength(uint256)"},
        "event": set(),
        "error": {"Log2OfZero()"},
    },
}


def signatures(abi: list[dict], kind: str) -> set[str]:
    found = set()
    for entry in abi:
        if entry["type"] != kind:
            continue
        types = ",".join(item["type"] for item in entry.get("inputs", []))
        found.add(f"{entry.get('name', '')}({types})")
    return found


def test_committed_artifacts_match_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (
        f"contracts/build.py --check failed (exit {result.returncode}):\n"
        f"{result.stdout}\n{result.stderr}"
    )


def test_every_expected_artifact_is_committed() -> None:
    assert set(EXPECTED) <= set(artifact_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_artifact_shape_and_abi(name: str) -> None:
    artifact = load_artifact(name)
    assert artifact["contractName"] == name
    assert artifact["sourceName"] == f"src/{name}.sol"
    assert artifact["compiler"]["name"] == "solc-js"
    assert artifact["compiler"]["version"]

    for key in ("bytecode", "deployedBytecode"):
        code = artifact[key]
        assert code.startswith("0x") and len(code) > 2, key
        bytes.fromhex(code[2:])

    abi = artifact["abi"]
    assert abi
    for kind, expected in EXPECTED[name].items():
        assert signatures(abi, kind) == expected, kind


def test_pinned_compiler_is_recorded() -> None:
    package = json.loads((REPO_ROOT / "contracts" / "package.json").read_text())
    pinned = package["dependencies"]["solc"]
    assert pinned[0].isdigit(), "solc must be pinned to an exact version"
    for path in ARTIFACTS_DIR.glob("*.json"):
        version = json.loads(path.read_text())["compiler"]["version"]
        assert version.split("+")[0] == pinned, path.name


def test_event_indexing() -> None:
    abi = load_artifact("Events")["abi"]
    value_changed = next(e for e in abi if e["type"] == "event" and e["name"] == "ValueChanged")
    assert [i["indexed"] for i in value_changed["inputs"]] == [True, True, False]
    transfer = next(
        e for e in load_artifact("Token")["abi"] if e["type"] == "event" and e["name"] == "Transfer"
    )
    assert [i["indexed"] for i in transfer["inputs"]] == [True, True, False]
