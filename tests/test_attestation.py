"""Attestation as a user checks it: the report over RPC, `coco-gateway attest measure` and
`attest verify`, and what a verifier refuses."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from conftest import CHAIN_ID, DEV_KEYS, REPO, NodeProcess, rpc

from gateway.protocol.attestation import VIRTUAL, AttestationError, Report, verify


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def measured() -> str:
    done = cli("attest", "measure")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_report_binds_the_node_keys_to_the_measurement(node: NodeProcess, measured: str) -> None:
    answer = rpc(node.url, "coco_getAttestation")["result"]
    report = Report.from_json(answer["report"])
    signature = bytes.fromhex(answer["signature"][2:])
    assert report.platform == VIRTUAL and "virtual" in answer["report"]["warning"]
    assert report.chain_id == CHAIN_ID
    assert "0x" + report.measurement.hex() == measured  # this installation's code
    # the node key that signs the report is the one that seals blocks
    seal = rpc(node.url, "coco_getBlockSeal", ["0x0"])["result"]
    info = rpc(node.url, "coco_nodeInfo")["result"]
    assert info["validators"][0].lower() == "0x" + report.node_address.hex()
    assert seal is not None
    epochs = [k.epoch for k in report.tx_keys]
    assert epochs == [answer["currentEpoch"], answer["currentEpoch"] + 1]
    verify(report, signature, expected_measurement=report.measurement, allow_virtual=True)
    # a verifier refuses: a virtual platform unless allowed, another measurement, another
    # chain, and any change to the signed report
    with pytest.raises(AttestationError, match="virtual"):
        verify(report, signature)
    with pytest.raises(AttestationError, match="other code"):
        verify(report, signature, expected_measurement=b"\x01" * 32, allow_virtual=True)
    with pytest.raises(AttestationError, match="chain"):
        verify(report, signature, expected_chain_id=1, allow_virtual=True)
    forged: dict[str, Any] = dict(answer["report"])
    forged["txKeys"] = [{"epoch": epochs[0], "publicKey": "0x" + "22" * 32}]
    with pytest.raises(AttestationError, match="not signed by the node key"):
        verify(Report.from_json(forged), signature, allow_virtual=True)


def test_attest_verify_command(node: NodeProcess, measured: str) -> None:
    ok = cli("attest", "verify", node.url, "--measurement", measured, "--allow-virtual")
    assert ok.returncode == 0, ok.stderr
    assert "attestation accepted" in ok.stdout and "matches the expected value" in ok.stdout
    assert "does NOT prove" in ok.stdout  # it says what a virtual enclave cannot prove
    refused = cli("attest", "verify", node.url, "--measurement", measured)
    assert refused.returncode == 1 and "virtual" in refused.stderr
    other = cli("attest", "verify", node.url, "--measurement", "0x" + "00" * 32, "--allow-virtual")
    assert other.returncode == 1 and "other code" in other.stderr


def test_token_command_prints_a_working_personal_url(node: NodeProcess) -> None:
    done = cli("token", "--rpc", node.url, "--key", DEV_KEYS[1])
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(node.url + "/rpc/")
    assert "result" in rpc(url, "eth_getBalance", ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"])
    bad = cli("token", "--rpc", node.url, "--key", "0x1234")
    assert bad.returncode == 2 and "not a valid private key" in bad.stderr
