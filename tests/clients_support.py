"""Running the JavaScript client scripts (tests/clients/js) from pytest.

    from clients_support import ensure_npm_packages, run_client_script
    ensure_npm_packages()                       # `npm ci` in tests/clients/js when needed
    report = run_client_script("ethers.mjs", ["reverts"], proxy)

A script runs the named scenarios against ``proxy.url`` / ``proxy.ws_url`` (env RPC_URL and
WS_URL), prints a JSON report as its last line of standard output and exits non-zero when
an expectation failed; ``run_client_script`` turns that into a pytest failure carrying the
script's own messages.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "clients" / "js"


def node_binary() -> str:
    """The `node` executable, or a skip when this machine has none."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the JavaScript client tests need Node.js 18+")
    return node


def _lock_hash(directory: Path = JS_DIR) -> str:
    return hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()


def ensure_npm_packages(directory: Path = JS_DIR, timeout: float = 300) -> None:
    """Run `npm ci` in ``directory`` (a folder under tests/clients) unless its installed
    packages match its lock file; the stamp is the one scripts/setup writes."""
    node_binary()
    want = _lock_hash(directory)
    stamp = directory / "node_modules" / ".coco-installed"
    if stamp.is_file() and stamp.read_text().strip() == want:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed; cannot install the JavaScript clients")
    # One installer at a time (pytest-xdist workers may all get here).
    with open(directory / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == want:
            return
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {directory} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        stamp.write_text(want + "\n")


def _report(stdout: str, kind: str | None = None) -> dict[str, Any] | None:
    """The last JSON line of a client script that is a report (of ``kind``, if given)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(document, dict)
                and "report" in document
                and (kind is None or document["report"] == kind)
            ):
                return document
    return None


def run_client_script(
    script: str, scenarios: Sequence[str], proxy: Any, timeout: float = 60
) -> dict[str, Any]:
    """Run `node <script> <scenarios...>` against the proxy; fail the test unless all passed.

    Returns the parsed report: {"report": script, "ok": true, "results": [{"scenario",
    "ok", "ms"}, ...]}.
    """
    env = dict(os.environ, RPC_URL=proxy.url, WS_URL=proxy.ws_url, NO_COLOR="1")
    command = [node_binary(), str(JS_DIR / script), *scenarios]
    try:
        done = subprocess.run(
            command, cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(f"{script} {' '.join(scenarios)} ran over {timeout} s; stderr:\n{err[-6000:]}")
    report = _report(done.stdout)
    if done.returncode != 0 or report is None or not report.get("ok"):
        failed = [r for r in (report or {}).get("results", []) if not r.get("ok")]
        summary = "\n\n".join(f"[{r['scenario']}] {r.get('error')}" for r in failed)
        pytest.fail(
            f"{script} {' '.join(scenarios)} exited {done.returncode}\n"
            f"{summary or '(no report)'}\n--- stderr ---\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    ran = [r["scenario"] for r in report["results"]]
    assert not scenarios or ran == list(scenarios), f"{script} ran {ran}, not {list(scenarios)}"
    return report
