#!/usr/bin/env python3
"""Compile contracts/src/*.sol with the pinned solc-js and write contracts/build/<Name>.json.

Usage:
    python contracts/build.py              rebuild the artifacts in contracts/build/
    python contracts/build.py --check      rebuild into a temporary directory and exit 1 if
                                           the committed artifacts differ from the sources
    python contracts/build.py --out DIR    write (or, with --check, compare against) DIR

The compiler is solc-js, pinned exactly in contracts/package.json and installed into
contracts/node_modules. If it is missing (or is not the pinned version) this script runs
`npm ci` in contracts/ first, so a fresh clone needs only node and npm.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONTRACTS_DIR = Path(__file__).resolve().parent
SRC_DIR = CONTRACTS_DIR / "src"
DEFAULT_OUT = CONTRACTS_DIR / "build"
COMPILE_JS = CONTRACTS_DIR / "solc-compile.js"
SOLC_PACKAGE_JSON = CONTRACTS_DIR / "node_modules" / "solc" / "package.json"

EVM_VERSION = "osaka"  # solc's default target since 0.8.37; the node's default fork
OPTIMIZER = {"enabled": True, "runs": 200}

# The settings given to solc. No metadata is requested and none is appended to the
# bytecode, so the output depends only on the code, not on comments or file paths.
SETTINGS = {
    "evmVersion": EVM_VERSION,
    "optimizer": OPTIMIZER,
    "metadata": {"bytecodeHash": "none", "appendCBOR": False},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]},
    },
}

SUBPROCESS_TIMEOUT = 600


class BuildError(Exception):
    """A failure with a message meant for the person running the build."""


def log(message: str) -> None:
    print(f"build.py: {message}", file=sys.stderr, flush=True)


def pinned_solc_version() -> str:
    package = json.loads((CONTRACTS_DIR / "package.json").read_text(encoding="utf-8"))
    try:
        return package["dependencies"]["solc"]
    except KeyError as exc:
        raise BuildError("contracts/package.json does not list solc in dependencies") from exc


def installed_solc_version() -> str | None:
    if not SOLC_PACKAGE_JSON.is_file():
        return None
    return json.loads(SOLC_PACKAGE_JSON.read_text(encoding="utf-8")).get("version")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"`{name}` was not found on PATH; install Node.js (with npm) first")
    return path


def ensure_solc() -> None:
    """Install the pinned solc into contracts/node_modules unless it is already there."""
    pinned = pinned_solc_version()
    installed = installed_solc_version()
    if installed == pinned:
        return
    if installed is None:
        log("contracts/node_modules/solc is missing; running `npm ci` in contracts/")
    else:
        log(f"installed solc is {installed} but {pinned} is pinned; running `npm ci` in contracts/")
    npm = require_tool("npm")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=CONTRACTS_DIR,
        stdout=sys.stderr,
        stderr=sys.stderr,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"`npm ci` in contracts/ failed with exit code {result.returncode}")
    installed = installed_solc_version()
    if installed != pinned:
        raise BuildError(f"after `npm ci`, solc is {installed!r}, not the pinned {pinned!r}")


def run_node(args: list[str], stdin: str | None = None) -> str:
    node = require_tool("node")
    result = subprocess.run(
        [node, str(COMPILE_JS), *args],
        cwd=CONTRACTS_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"solc-compile.js exited with code {result.returncode}:\n{result.stderr.strip()}"
        )
    return result.stdout


def source_files() -> list[Path]:
    files = sorted(SRC_DIR.glob("*.sol"))
    if not files:
        raise BuildError(f"no Solidity sources found in {SRC_DIR}")
    return files


def compile_sources() -> tuple[str, dict]:
    """Return (compiler version, solc standard-JSON output)."""
    version = run_node(["--version"]).strip()
    sources = {
        f"src/{path.name}": {"content": path.read_text(encoding="utf-8")} for path in source_files()
    }
    standard_input = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    raw = run_node([], stdin=json.dumps(standard_input))
    try:
        output = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BuildError(f"solc printed something that is not JSON: {raw[:500]!r}") from exc

    diagnostics = output.get("errors", [])
    errors = [d for d in diagnostics if d.get("severity") == "error"]
    for diagnostic in diagnostics:
        if diagnostic.get("severity") != "error":
            print(diagnostic.get("formattedMessage", diagnostic.get("message")), file=sys.stderr)
    if errors:
        text = "\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors)
        raise BuildError(f"solc {version} reported {len(errors)} error(s):\n{text}")
    return version, output


def make_artifacts(version: str, output: dict) -> dict[str, dict]:
    """Map artifact file name -> artifact."""
    artifacts: dict[str, dict] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for contract_name, compiled in sorted(contracts.items()):
            file_name = f"{contract_name}.json"
            if file_name in artifacts:
                other = artifacts[file_name]["sourceName"]
                raise BuildError(
                    f"contract {contract_name} is defined in both {other} and {source_name}; "
                    "artifact names must be unique"
                )
            evm = compiled["evm"]
            artifacts[file_name] = {
                "contractName": contract_name,
                "sourceName": source_name,
                "abi": compiled["abi"],
                "bytecode": "0x" + evm["bytecode"]["object"],
                "deployedBytecode": "0x" + evm["deployedBytecode"]["object"],
                "compiler": {
                    "name": "solc-js",
                    "version": version,
                    "settings": {"evmVersion": EVM_VERSION, "optimizer": OPTIMIZER},
                },
            }
    if not artifacts:
        raise BuildError("solc produced no contracts")
    return artifacts


def render(artifact: dict) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def build() -> dict[str, str]:
    """Compile everything; map artifact file name -> file text."""
    ensure_solc()
    version, output = compile_sources()
    return {name: render(artifact) for name, artifact in make_artifacts(version, output).items()}


def write_artifacts(rendered: dict[str, str], out_dir: Path, quiet: bool = False) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out_dir.glob("*.json")):
        if stale.name not in rendered:
            log(f"removing stale artifact {stale}")
            stale.unlink()
    for name, text in sorted(rendered.items()):
        path = out_dir / name
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.write_text(text, encoding="utf-8", newline="\n")
        if not quiet:
            log(f"wrote {path}")


def describe_difference(name: str, expected_text: str, actual_text: str) -> str:
    try:
        expected = json.loads(expected_text)
        actual = json.loads(actual_text)
    except json.JSONDecodeError:
        return f"{name}: committed file is not valid JSON"
    keys = sorted(
        key
        for key in set(expected) | set(actual)
        if expected.get(key, None) != actual.get(key, None)
    )
    if keys:
        return f"{name}: differs in {', '.join(keys)}"
    return f"{name}: same content but different formatting"


def check(out_dir: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="coco-contracts-") as tmp:
        write_artifacts(build(), Path(tmp), quiet=True)
        rendered = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).glob("*.json")}
    problems: list[str] = []
    committed = {p.name for p in out_dir.glob("*.json")} if out_dir.is_dir() else set()
    for name in sorted(set(rendered) | committed):
        if name not in committed:
            problems.append(f"{name}: missing from {out_dir}")
        elif name not in rendered:
            problems.append(f"{name}: stale (no contract in contracts/src produces it)")
        else:
            actual = (out_dir / name).read_text(encoding="utf-8")
            if actual != rendered[name]:
                problems.append(describe_difference(name, rendered[name], actual))
    if problems:
        print(f"Contract artifacts in {out_dir} do not match contracts/src:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "Run `python contracts/build.py` and commit contracts/build/.",
            file=sys.stderr,
        )
        return 1
    print(f"OK: {len(rendered)} artifact(s) in {out_dir} match contracts/src")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compile into a temporary directory and fail if the artifacts differ",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="artifact directory (default: contracts/build)",
    )
    args = parser.parse_args(argv)
    out_dir = args.out.resolve()
    try:
        if args.check:
            return check(out_dir)
        rendered = build()
        write_artifacts(rendered, out_dir)
        print(f"Built {len(rendered)} artifact(s) into {out_dir}")
        return 0
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as exc:
        print(f"build.py: error: {exc.cmd[0]} timed out after {exc.timeout}s", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
