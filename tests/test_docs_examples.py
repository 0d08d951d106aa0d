"""The Python examples of docs/sdk.md and README.md run as written, on an open and a strict node.

The fenced ``python`` blocks of each document are taken out of the document itself, joined
in order into one script, and run by a separate Python process from the repository root.
The only change is the node's URL: the documents use ``http://127.0.0.1:8545`` (the dev
node's default), which is replaced by the test node's URL, and nothing else. A ``print``
whose line ends in a comment holding a single number must print that number.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, NodeProcess

DOC_URL = "http://127.0.0.1:8545"
DOCS = ["docs/sdk.md", "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
DOCUMENTED_VALUE = re.compile(r"print\(.*\)\s*#\s*(-?\d+)\s*$")


def python_blocks(doc: str) -> list[str]:
    return BLOCK.findall((REPO / doc).read_text())


def expected_prints(script: str) -> list[str | None]:
    """Per print() call in the script, in order: the number its comment promises, or None."""
    expected: list[str | None] = []
    for line in script.splitlines():
        if re.match(r"\s*print\(", line):
            found = DOCUMENTED_VALUE.search(line)
            expected.append(found.group(1) if found else None)
    return expected


@pytest.fixture(scope="module", params=["open", "strict"])
def doc_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeProcess]:
    node = NodeProcess(
        tmp_path_factory.mktemp(f"docs-{request.param}") / "data", "--privacy", request.param
    ).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.parametrize("doc", DOCS)
def test_the_documented_python_runs_as_written(
    doc: str, doc_node: NodeProcess, tmp_path: Path
) -> None:
    blocks = python_blocks(doc)
    assert blocks, f"{doc} has no python example"
    script = "\n\n".join(blocks)
    assert DOC_URL in script, f"{doc}'s examples do not name the dev node's URL {DOC_URL}"
    path = tmp_path / "example.py"
    path.write_text(script.replace(DOC_URL, doc_node.url))
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{doc} on {doc_node.extra}:\n{done.stdout}\n{done.stderr}"
    printed = done.stdout.splitlines()
    expected = expected_prints(script)
    assert len(printed) == len(expected), (printed, expected)
    for line, value in zip(printed, expected, strict=True):
        if value is not None:
            assert line == value, (doc, printed, expected)
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr
