"""coco-gateway init and cluster: the consortium's files, identities made in the enclaves,
a local cluster run as processes with its status view, and a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from build_features import enclave_makes_identities, has_node_command
from conftest import REPO, rpc

from gateway.cluster import NodeView, find_nodes, plain_line, render, render_line
from gateway.config import ConsortiumTerms
from gateway.devaccounts import DEV_BALANCE_WEI, derive
from gateway.p2p.tls import load_identity as load_tls_identity
from gateway.scaffold import (
    Identity,
    InitError,
    InitOptions,
    build_files,
    make_identity,
    parse_alloc,
    plan_nodes,
)

needs_identities = pytest.mark.skipif(
    not enclave_makes_identities(), reason="the enclave does not answer MakeIdentity yet"
)
needs_nodes = pytest.mark.skipif(
    not (enclave_makes_identities() and has_node_command()),
    reason="`coco-gateway node` (or the enclave's MakeIdentity) is not in this build yet",
)


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def gov(key: bytes, *args: str) -> Any:
    """``coco-gateway gov ...`` as a member runs it (its key in $COCO_GOV_KEY); its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gov", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "COCO_GOV_KEY": "0x" + key.hex()},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def free_range(count: int, avoid: set[int] | None = None) -> int:
    """A base port with ``count`` consecutive free ports (none of them in ``avoid``)."""
    for base in range(20000 + os.getpid() % 97 * 101, 60000, 97):
        ports = range(base, base + count)
        if avoid and avoid & set(ports):
            continue
        free = True
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free port range")


# ------------------------------------------------------------------ the plan (pure)


def test_plan_names_roles_and_ports() -> None:
    opts = InitOptions(Path("/x"), validators=3, members=2, observers=2)
    plan = plan_nodes(opts)
    assert [(p.name, p.role, p.rpc_port, p.p2p_port) for p in plan] == [
        ("node1", "validator", 8545, 30301),
        ("node2", "validator", 8546, 30302),
        ("node3", "validator", 8547, 30303),
        ("node4", "member", 8548, 30304),
        ("node5", "member", 8549, 30305),
        ("observer1", "observer", 8550, 30306),
        ("observer2", "observer", 8551, 30307),
    ]
    with pytest.raises(InitError, match="at least one validator"):
        plan_nodes(InitOptions(Path("/x"), validators=0))
    with pytest.raises(InitError, match="overlap"):
        plan_nodes(InitOptions(Path("/x"), base_rpc_port=30299))
    with pytest.raises(InitError, match=r"must lie in 1\.\.65535"):
        plan_nodes(InitOptions(Path("/x"), base_p2p_port=65534))


def test_files_from_the_plan() -> None:
    opts = InitOptions(Path("/c"), validators=2, members=1, observers=1, block_period=2.0)
    plan = plan_nodes(opts)
    identities = {f"node{i}": Identity("0x" + f"{i:02x}" * 20, None, "virtual") for i in (1, 2, 3)}
    terms, nodes = build_files(opts, plan, identities, ["0x" + "ab" * 32], {})
    assert terms.validators == ["0x" + "01" * 20, "0x" + "02" * 20]
    assert terms.genesis_node == terms.validators[0]
    assert [(e.name, e.role) for e in terms.nodes] == [
        ("node1", "validator"),
        ("node2", "validator"),
        ("node3", "member"),
    ]
    assert terms.block_period == 2 and isinstance(terms.block_period, int)
    assert terms.platforms == ["virtual"] and terms.allow_virtual
    assert nodes["node1"].peers == ["127.0.0.1:30302", "127.0.0.1:30303"]
    assert nodes["node3"].peers == ["127.0.0.1:30301", "127.0.0.1:30302"]
    # observers dial the others; nobody dials an observer (it is not in the terms)
    assert nodes["observer1"].peers == ["127.0.0.1:30301", "127.0.0.1:30302", "127.0.0.1:30303"]
    assert nodes["observer1"].path == Path("/c/observer1/node.json")
    for node in nodes.values():
        node.check_against(terms)


def test_parse_alloc() -> None:
    address = "0x" + "Ab" * 20
    assert parse_alloc(f"{address}=123") == (address.lower(), "123")
    assert parse_alloc(f"{address}=5ether") == (address.lower(), str(5 * 10**18))
    for bad in ("0x12=1", f"{address}", f"{address}=-1", f"{address}=1.5", f"{address}={2**256}"):
        with pytest.raises(ValueError):
            parse_alloc(bad)


def test_status_lines() -> None:
    names = {"0x" + "01" * 20: "node1"}
    up = NodeView(
        "node1",
        "validator",
        "http://x",
        {
            "role": "validator",
            "state": "running",
            "height": 12,
            "finalized": "0xc",
            "round": 0,
            "proposer": "0x" + "01" * 20,
            "peers": [  # links, as the consortium node lists them: one each way
                {"name": "node2", "address": "0x" + "02" * 20},
                {"name": "node2", "address": "0x" + "02" * 20},
                {"name": "node3", "address": "0x" + "03" * 20},
                {"name": "", "role": "observer", "address": None},
            ],
            "lastError": None,
        },
    )
    down = NodeView("node2", "validator", "http://y", None, "not listening")
    line = render_line(up, names)
    assert line.split() == ["node1", "validator", "running", "12", "12", "0", "node1", "3"]
    assert render_line(down).split()[:3] == ["node2", "validator", "down"]
    assert render_line(down).endswith("not listening")
    assert render([up, down], names)[0].split()[:3] == ["node", "role", "state"]
    plain = plain_line([up, down])
    assert "node1 h=12 f=12 r=0 peers=3" in plain and "node2 down (not listening)" in plain
    weird = NodeView("n", "member", "u", {"height": "nonsense", "peers": 4, "lastError": "a\nb"})
    assert render_line(weird).split() == ["n", "member", "-", "-", "-", "-", "-", "4", "a", "b"]
    observer = NodeView("o", "observer", "u", {"height": 5, "finalized": 5, "round": None})
    assert "o h=5 f=5 r=- peers=-" in plain_line([observer])


# ------------------------------------------------------------------ init (real enclaves)


@needs_identities
def test_init_makes_a_consortium(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    alloc = "0x" + "11" * 20
    args = ["--dir", str(directory), "--validators", "2", "--members", "1", "--observers", "1"]
    args += ["--chain-id", "4242", "--validation", "re-execute", "--dev-alloc"]
    args += ["--alloc", f"{alloc}=7ether"]
    done = cli("init", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for name in ("node1", "node2", "node3", "observer1"):
        assert f"node --config {directory / name / 'node.json'}" in out
    assert "WARNING: allowVirtual is true" in out
    assert f"cluster up --dir {directory}" in out

    terms, nodes = find_nodes(directory)
    assert [n.name for n in nodes] == ["node1", "node2", "node3", "observer1"]
    assert terms.chain_id == 4242 and terms.validation == "re-execute"
    assert len(terms.validators) == 2 and len({e.address for e in terms.nodes}) == 3
    assert terms.alloc[alloc] == str(7 * 10**18)
    for account in derive():
        assert terms.alloc[account.address.lower()] == str(DEV_BALANCE_WEI)
    measured = cli("attest", "measure")
    assert terms.measurements == [measured.stdout.split()[0]]
    for node in nodes:
        assert node.data_path == directory / node.name / "data"
        mode = stat.S_IMODE(os.stat(node.data_path).st_mode)
        assert node.role == "observer" or mode == 0o700
        # every node, observers too, has its p2p TLS key (0600) and certificate
        tls_files = load_tls_identity(node.data_path)
        assert stat.S_IMODE(tls_files.key_path.stat().st_mode) == 0o600
    fingerprints = {load_tls_identity(n.data_path).fingerprint for n in nodes}
    assert len(fingerprints) == len(nodes)
    # an unfinished init (no consortium.json yet) is finished by running it again: the
    # identity keys live in the nodes' enclaves, which reopen them
    (directory / "consortium.json").unlink()
    rerun = cli("init", *args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    again = ConsortiumTerms.load(directory / "consortium.json")
    assert again.nodes == terms.nodes and again.alloc == terms.alloc
    reopened = asyncio.run(make_identity(directory / "node2" / "data"))
    assert reopened.address == terms.nodes[1].address
    assert {load_tls_identity(n.data_path).fingerprint for n in nodes} == fingerprints
    # nothing is overwritten
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    refused = cli("init", "--dir", str(directory))
    assert refused.returncode == 2 and "already holds a consortium" in refused.stderr
    skipped = cli("init", "--dir", str(directory), "--if-absent")
    assert skipped.returncode == 0 and "leaving it as it is" in skipped.stdout
    assert {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()} == before


def test_init_refusals(tmp_path: Path) -> None:
    for args, reason in [
        (["--host", "0.0.0.0"], "give an address they can reach"),
        (["--base-rpc-port", "30300"], "overlap"),
        (["--validators", "0"], "at least 1"),
        (["--alloc", "nonsense"], "expected ADDR=WEI"),
        (["--measurement", "0x12"], "32-byte hex measurement"),
    ]:
        done = cli("init", "--dir", str(tmp_path / "c"), *args)
        assert done.returncode == 2 and reason in done.stderr, (args, done.stderr)
    assert not (tmp_path / "c").exists()  # refused before anything was made


def test_cluster_status_without_nodes_running(tmp_path: Path) -> None:
    """The view names every node as down when none answers (and a bad dir is refused)."""
    directory = tmp_path / "c"
    opts = InitOptions(directory, validators=2, observers=1, base_rpc_port=free_range(3))
    plan = plan_nodes(opts)
    identities = {
        p.name: Identity("0x" + f"{i + 1:02x}" * 20, None, "virtual") for i, p in enumerate(plan)
    }
    terms, nodes = build_files(opts, plan, identities, ["0x" + "ab" * 32], {})
    terms.save(directory / "consortium.json")
    for node in nodes.values():
        node.save()
    done = cli("cluster", "status", "--dir", str(directory), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["node", "node1", "node2", "observer1"]
    assert all(" down " in line and "not listening" in line for line in lines[1:])
    missing = cli("cluster", "status", "--dir", str(tmp_path / "none"), timeout=60)
    assert missing.returncode == 2 and "no consortium" in missing.stderr
    (directory / "node2" / "node.json").unlink()
    broken = cli("cluster", "status", "--dir", str(directory), timeout=60)
    assert broken.returncode == 2 and "no node.json for node2" in broken.stderr


# ------------------------------------------------------------------ cluster up (real nodes)


@needs_nodes
def test_cluster_up_runs_the_consortium_and_stops_it(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    rpc_base = free_range(5)
    p2p_base = free_range(5, avoid=set(range(rpc_base, rpc_base + 5)))
    out_path = tmp_path / "cluster.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "cluster",
                "up",
                "--nodes",
                "4",
                "--observers",
                "1",
                "--dir",
                str(directory),
                "--base-rpc-port",
                str(rpc_base),
                "--base-p2p-port",
                str(p2p_base),
                "--dev-alloc",
                "--dev-members",
                "3",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )

    def output() -> str:
        return out_path.read_text(errors="replace")

    def node_logs() -> str:
        return "\n".join(
            f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-20:])
            for p in sorted(directory.glob("*/node.log"))
        )

    try:
        urls = [f"http://127.0.0.1:{rpc_base + i}" for i in range(5)]
        # every node, the observer too, past block 1: the consortium makes blocks
        deadline = time.monotonic() + 240
        for url in urls:
            while True:
                assert proc.poll() is None, output()
                try:
                    if int(rpc(url, "eth_blockNumber")["result"], 16) >= 2:
                        break
                except (OSError, KeyError, ValueError):
                    pass
                assert time.monotonic() < deadline, (
                    f"{url} makes no progress\n{output()}\n{node_logs()}"
                )
                time.sleep(0.5)
        hashes = {
            rpc(url, "eth_getBlockByNumber", ["0x1", False])["result"]["hash"] for url in urls
        }
        assert len(hashes) == 1, hashes
        # the plain status line (stdout is not a terminal) shows every node's height
        deadline = time.monotonic() + 30
        while not any(
            all(f"{name} h=" in line for name in ("node1", "node4", "observer1"))
            for line in output().splitlines()
        ):
            assert time.monotonic() < deadline, output()
            time.sleep(0.5)
        status = cli("cluster", "status", "--dir", str(directory), timeout=60)
        assert status.returncode == 0, status.stderr
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
        assert set(rows) == {"node1", "node2", "node3", "node4", "observer1"}
        for name, row in rows.items():
            assert row[1] == ("observer" if name == "observer1" else "validator")
            assert int(row[3]) >= 2, status.stdout  # height
        # the dev members govern it from a terminal, as the README shows: a proposal at
        # node1, ballots at node2 and node3, the outcome read from the observer
        keys = [a.private_key for a in derive()[:2]]
        target = derive()[0].address.lower()
        action = "set_member_data=" + json.dumps({"address": target, "data": {"team": "up"}})
        pid = gov(keys[0], "propose", "--rpc", urls[0], "--action", action)["proposal"]
        for url, key in ((urls[1], keys[0]), (urls[2], keys[1])):
            deadline = time.monotonic() + 60
            while rpc(url, "coco_govProposal", [pid]).get("result") is None:
                assert time.monotonic() < deadline, f"{pid} not recorded at {url}"
                time.sleep(0.5)
            gov(key, "vote", pid, "--approve", "--rpc", url)
        deadline = time.monotonic() + 90
        while (rpc(urls[4], "coco_govProposal", [pid]).get("result") or {}).get("status") != (
            "accepted"
        ):
            assert time.monotonic() < deadline, f"{pid} not accepted on the observer"
            time.sleep(0.5)
        member = rpc(urls[4], "coco_govMembers")["result"][target]
        assert member["data"] == {"team": "up"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    assert code == 0, output()
    text = output()
    assert "stopping the nodes (SIGTERM)" in text
    for name in ("node1", "node2", "node3", "node4", "observer1"):
        assert f"{name}: exit code 0" in text, text
    # each node logged as it does on its own (init, run first, had quieted only the keys'
    # enclaves), and no catch-up waited out its timeout: a node not ready yet says so at once
    for log_path in sorted(directory.glob("*/node.log")):
        log = log_path.read_text(errors="replace")
        assert "INFO" in log and "stopped cleanly" in log, f"{log_path}:\n{log[-2000:]}"
        assert "sent no blocks" not in log, f"{log_path}:\n{log[-2000:]}"
    # every node has stopped: nothing answers on their ports
    for i in range(5):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", rpc_base + i)) != 0
