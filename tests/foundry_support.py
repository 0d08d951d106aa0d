"""Running Foundry's cast and forge from tests/clients/foundry (npm-installed, offline).

The binaries come from the npm packages @foundry-rs/cast-linux-amd64 and
@foundry-rs/forge-linux-amd64, and the compiler is ``tests/clients/foundry/solc``, a wrapper
that gives the pinned solc-js package the command-line face forge expects. ``ensure_installed``
runs ``npm ci`` there when the packages are missing or are not the pinned versions.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

FOUNDRY_DIR = Path(__file__).resolve().parent / "clients" / "foundry"
NODE_MODULES = FOUNDRY_DIR / "node_modules"
CAST = NODE_MODULES / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
FORGE = NODE_MODULES / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
SOLC = FOUNDRY_DIR / "solc"

# Variables that cast and forge read and that must not leak in from the developer's shell.
_FOREIGN_PREFIXES = ("ETH_", "FOUNDRY_", "DAPP_", "CHAIN")


def pinned_versions() -> dict[str, str]:
    return dict(json.loads((FOUNDRY_DIR / "package.json").read_text())["dependencies"])


def _installed_version(package: str) -> str | None:
    manifest = NODE_MODULES / package / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text()).get("version"))


def _installed_ok() -> bool:
    if not (CAST.exists() and FORGE.exists()):
        return False
    return all(_installed_version(name) == want for name, want in pinned_versions().items())


def ensure_installed() -> None:
    """Skip the caller unless Foundry can run here; run `npm ci` if the pins are not installed."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the Foundry npm binaries pinned here are for linux-amd64")
    if _installed_ok():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the Foundry client tests")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=FOUNDRY_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not _installed_ok():
        raise RuntimeError(f"npm ci in {FOUNDRY_DIR} failed:\n{done.stdout}\n{done.stderr}")


class ToolError(AssertionError):
    pass


class Foundry:
    """cast and forge, run in the Foundry project directory with a clean environment."""

    def __init__(self, rpc_url: str) -> None:
        self.rpc_url = rpc_url
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}
        env.update(NO_COLOR="1", FOUNDRY_DISABLE_NIGHTLY_WARNING="1")
        self.env = env

    def run(
        self,
        tool: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(tool), *args],
            cwd=FOUNDRY_DIR,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ToolError(
                f"{tool.name} {' '.join(args)} exited with {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def cast(self, command: str, *args: str, **kwargs: Any) -> str:
        """`cast COMMAND --rpc-url URL ARGS...`: the URL goes first, since some commands
        take every later word as an argument."""
        return self.run(CAST, command, "--rpc-url", self.rpc_url, *args, **kwargs).stdout.strip()

    def cast_json(self, command: str, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.cast(command, "--json", *args, **kwargs))

    def forge(self, *args: str, **kwargs: Any) -> str:
        return self.run(FORGE, *args, **kwargs).stdout.strip()


def first_number(text: str) -> int:
    """cast prints a uint as `1000 [1e3]`; the first word is the exact value."""
    return int(text.split()[0], 0)
