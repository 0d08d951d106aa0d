"""The checking proxy itself: it forwards faithfully and it does catch bad shapes."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from conftest import rpc


def test_proxy_forwards_and_checks(checking_proxy: Any) -> None:
    assert rpc(checking_proxy.url, "eth_chainId")["result"] == hex(31337)
    block = rpc(checking_proxy.url, "eth_getBlockByNumber", ["latest", True])["result"]
    assert block["number"].startswith("0x")
    body = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_gasPrice"},
        ]
    ).encode()
    request = urllib.request.Request(
        checking_proxy.url, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        assert len(json.loads(response.read())) == 2
    checking_proxy.assert_clean()
    assert checking_proxy.calls["eth_getBlockByNumber"] == 1


def test_proxy_reports_a_bad_shape(checking_proxy: Any) -> None:
    checking_proxy._check_pair(
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "id": 1, "result": "0x01"},
    )
    assert checking_proxy.problems and "eth_blockNumber" in checking_proxy.problems[0]
