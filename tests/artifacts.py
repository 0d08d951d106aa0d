"""Load the committed contract artifacts (contracts/build/<Name>.json) from tests.

    from artifacts import load_artifact
    token = load_artifact("Token")
    token["abi"], token["bytecode"], token["deployedBytecode"]

The artifacts are built by `python contracts/build.py`; tests/test_contracts_build.py
checks that they match contracts/src.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "build"


def artifact_names() -> list[str]:
    """Names of all committed artifacts, e.g. ["Counter", "Events", "Token"]."""
    return sorted(path.stem for path in ARTIFACTS_DIR.glob("*.json"))


def load_artifact(name: str) -> dict[str, Any]:
    """Return the artifact for contract `name` (a fresh dict each call).

    Keys: contractName, sourceName, abi, bytecode ("0x..."), deployedBytecode ("0x..."),
    compiler {"name", "version", "settings"}.
    """
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no artifact {path}; known artifacts: {', '.join(artifact_names()) or 'none'} "
            "(run `python contracts/build.py`)"
        )
    return json.loads(path.read_text(encoding="utf-8"))
