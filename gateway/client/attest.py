"""Fetch a node's attestation report and verify it before trusting its keys."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

from gateway.protocol.attestation import VIRTUAL, AttestationError, Report, verify


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 30) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            document = json.loads(response.read())
    except OSError as exc:
        raise AttestationError(f"cannot reach {url}: {exc}") from None
    if "error" in document:
        raise AttestationError(f"{method}: {document['error'].get('message')}")
    return document["result"]


def fetch_and_verify(
    url: str,
    *,
    expected_measurement: bytes | None = None,
    expected_chain_id: int | None = None,
    allow_virtual: bool = False,
) -> Report:
    answer = rpc_call(url, "coco_getAttestation")
    report = Report.from_json(answer["report"])
    signature = bytes.fromhex(str(answer["signature"]).removeprefix("0x"))
    verify(
        report,
        signature,
        expected_measurement=expected_measurement,
        expected_chain_id=expected_chain_id,
        allow_virtual=allow_virtual,
    )
    return report


def explain(report: Report, *, measurement_checked: bool) -> str:
    issued = datetime.fromtimestamp(report.issued_at, UTC).isoformat(timespec="seconds")
    keys = ", ".join(f"epoch {k.epoch}: 0x{k.public_key.hex()}" for k in report.tx_keys)
    lines = [
        "attestation accepted",
        f"  chain id:      {report.chain_id}",
        f"  platform:      {report.platform}",
        f"  measurement:   0x{report.measurement.hex()}"
        + ("  (matches the expected value)" if measurement_checked else "  (NOT checked)"),
        f"  code:          {report.code}",
        f"  node key:      0x{report.node_address.hex()}",
        f"  tx keys:       {keys}",
        f"  issued at:     {issued}",
        "",
        "What this proves: the holder of node key 0x"
        + report.node_address.hex()
        + " published these transaction keys and claims to run the measured code.",
    ]
    if report.platform == VIRTUAL:
        lines += [
            "What it does NOT prove: this is a software (virtual) enclave. No hardware vouches",
            "for the measurement, so the node's operator could run other code, read every key",
            "and every plaintext, and still produce this report. Use it for development only.",
        ]
    return "\n".join(lines)
