"""The node's sign-in page in a real browser (Debian's headless Chromium, driven by
playwright-core), with a test EIP-1193 wallet injected into the page that signs with a dev
key: connect, Sign-In with Ethereum, personal RPC URL, add the network, own activity; the
governance section says that the dev node has none (tests/test_signin_governance.py: a
governed consortium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from clients_support import ensure_npm_packages
from conftest import DEV_KEYS, REPO, NodeProcess, rpc
from eth_account import Account

BROWSER_DIR = REPO / "tests" / "clients" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = DEV_KEYS[1]


def chromium_problem() -> str | None:
    """Why Chromium cannot be had here, or None when it runs."""
    if not os.path.exists(CHROMIUM):
        return (
            "Chromium is not installed: scripts/setup installs Debian's chromium system-wide "
            "with apt-get only when run as root and without COCO_NO_APT=1; install it "
            "(apt-get install chromium) to run this test"
        )
    try:
        done = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{CHROMIUM} does not run: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"{CHROMIUM} does not run: {last}"
    return None


def test_sign_in_page_in_chromium(tmp_path: Path) -> None:
    problem = chromium_problem()
    if problem is not None:
        pytest.skip(problem)
    ensure_npm_packages(BROWSER_DIR)
    node = NodeProcess(tmp_path / "data", "--privacy", "strict").start()
    try:
        account = Account.from_key(KEY)
        tx = account.sign_transaction(
            {
                "chainId": 31337,
                "nonce": 0,
                "to": Account.create().address,
                "value": 1,
                "gas": 21000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        tx_hash = rpc(node.url, "eth_sendRawTransaction", ["0x" + tx.raw_transaction.hex()])[
            "result"
        ]
        screenshot = tmp_path / "signin.png"
        done = subprocess.run(
            ["node", str(BROWSER_DIR / "signin.mjs")],
            env={
                **os.environ,
                "NODE_URL": node.url,
                "PRIVATE_KEY": KEY,
                "CHROMIUM": CHROMIUM,
                "SCREENSHOT": str(screenshot),
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=BROWSER_DIR,
        )
        report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        assert done.returncode == 0 and report.get("ok"), (report, done.stderr[-3000:])
        assert report["contentType"].startswith("text/html")
        assert "31337" in report["chainText"]
        # the dev node's consortium has no governance: the page says so, and shows no view
        assert "has no governance" in report["governanceText"]
        assert not report["governanceBodyShown"]
        assert account.address in report["accountText"]
        rpc_url = report["rpcUrl"]
        assert rpc_url.startswith(node.url + "/rpc/")
        calls = report["walletCalls"]
        (signing,) = [c for c in calls if c["method"] == "personal_sign"]
        message = bytes.fromhex(signing["params"][0][2:]).decode()
        assert "wants you to sign in with your Ethereum account" in message
        assert "Chain ID: 31337" in message and account.address in message
        (added,) = [c for c in calls if c["method"] == "wallet_addEthereumChain"]
        assert added["params"][0]["chainId"] == "0x7a69"
        assert added["params"][0]["rpcUrls"] == [rpc_url]
        assert [row[1] for row in report["activityRows"]] == [tx_hash]
        assert not report["errorShown"]
        assert not [line for line in report["console"] if line.startswith(("error", "pageerror"))]
        assert screenshot.stat().st_size > 0
        # the page signed out at the end: its personal URL no longer reads the balance
        assert rpc(rpc_url, "eth_getBalance", [account.address])["error"]["code"] == -32002
    finally:
        node.stop()
