"""The compose files are right by construction: run their topology as local processes.

Docker's engine does not run on the CI machines, so each service's command (the image's
entrypoint plus the compose ``command``) is started here as a process, with the container's
volume mapped to a temporary directory, and the services' own healthchecks are run against
them.

docker-compose.yml is a consortium (four validators and an observer, host networking): its
``init`` service runs first, exactly as written (twice: the second run must leave the first
one's consortium alone), then every node service's command, on the ports of the configs init
wrote, which are the ports the healthchecks name. They must form one chain. The single dev
node is docker-compose.dev.yml.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from build_features import enclave_makes_identities, has_node_command
from conftest import REPO, free_port, rpc, wait_receipt

from gateway.config import ConsortiumTerms, NodeFile

VOLUME = "/cluster"
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # dev account 0


def _dockerfile() -> dict[str, Any]:
    text = (REPO / "Dockerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    volume = json.loads(re.search(r"^VOLUME (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return {"entrypoint": entry, "cmd": cmd, "volume": volume}


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / name).read_text()))


def _healthcheck(service: dict[str, Any]) -> list[str]:
    test = list(service["healthcheck"]["test"])
    assert test[0] == "CMD"
    argv = test[1:]
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    return argv


def _healthcheck_port(service: dict[str, Any]) -> int:
    (port,) = re.findall(r"http://127\.0\.0\.1:(\d+)", " ".join(service["healthcheck"]["test"]))
    return int(port)


def _local(command: list[str], cluster: Path) -> list[str]:
    """The service's command as a local process: the volume's mount is the temporary dir."""
    args = [str(cluster) + a[len(VOLUME) :] if a.startswith(VOLUME) else a for a in command]
    return [sys.executable, "-m", "gateway.cli", *args]


# ------------------------------------------------------------------ the consortium


def test_consortium_compose_structure() -> None:
    compose = _compose()
    image = _dockerfile()
    assert image["entrypoint"] == ["coco-gateway"]
    services = compose["services"]
    assert set(services) == {"init", "node1", "node2", "node3", "node4", "observer1"}
    assert set(compose["volumes"]) == {"cluster"}
    init = services["init"]
    assert init["build"] == "."
    command = init["command"]
    assert command[0] == "init" and command[command.index("--dir") + 1] == VOLUME
    assert "--if-absent" in command  # runs once into the volume, then leaves it alone
    assert command[command.index("--validators") + 1] == "4"
    assert command[command.index("--observers") + 1] == "1"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    base_rpc = int(command[command.index("--base-rpc-port") + 1])
    for i, name in enumerate(["node1", "node2", "node3", "node4", "observer1"]):
        service = services[name]
        assert service["image"] == init["image"]  # the image init's build makes
        assert service["network_mode"] == "host" and init["network_mode"] == "host"
        assert "ports" not in service  # host networking: the configs' ports are the ports
        assert service["volumes"] == [f"cluster:{VOLUME}"] == init["volumes"]
        assert service["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        assert service["command"] == ["node", "--config", f"{VOLUME}/{name}/node.json"]
        assert _healthcheck_port(service) == base_rpc + i  # init's port layout
        assert service["stop_signal"] == "SIGINT"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run_init(command: list[str], cluster: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _local(command, cluster), capture_output=True, text=True, timeout=300, cwd=REPO
    )


@dataclass
class InitRuns:
    cluster: Path
    first: subprocess.CompletedProcess[str]
    made: dict[Path, bytes]  # every JSON file the first run wrote
    again: subprocess.CompletedProcess[str]  # a restarted compose project's init
    after: dict[Path, bytes]


@pytest.fixture(scope="module")
def compose_init(tmp_path_factory: pytest.TempPathFactory) -> InitRuns:
    """The consortium compose file's ``init`` service run twice into one volume (its
    identities are made in enclaves: the slow part), for both consortium tests."""
    if not enclave_makes_identities():
        pytest.skip("the enclave does not answer MakeIdentity yet")
    command = _compose()["services"]["init"]["command"]
    cluster = tmp_path_factory.mktemp("compose") / "cluster"
    first = _run_init(command, cluster)
    assert first.returncode == 0, first.stdout + first.stderr
    made = {p: p.read_bytes() for p in sorted(cluster.rglob("*.json"))}
    again = _run_init(command, cluster)
    after = {p: p.read_bytes() for p in sorted(cluster.rglob("*.json"))}
    return InitRuns(cluster, first, made, again, after)


def test_consortium_compose_init_matches_the_services(compose_init: InitRuns) -> None:
    services = _compose()["services"]
    again = compose_init.again
    assert again.returncode == 0, again.stdout + again.stderr
    assert "leaving it as it is" in again.stdout
    assert compose_init.made and compose_init.after == compose_init.made
    _check_init_output(services, compose_init.cluster)


def _check_init_output(services: dict[str, Any], cluster: Path) -> dict[str, NodeFile]:
    terms = ConsortiumTerms.load(cluster / "consortium.json")
    assert len(terms.validators) == 4 and terms.genesis_node == terms.validators[0]
    nodes: dict[str, NodeFile] = {}
    for name, service in services.items():
        if name == "init":
            continue
        config = Path(_local(service["command"], cluster)[-1])
        node = NodeFile.load(config)
        node.check_against(terms)
        assert node.name == name and node.rpc.host == node.p2p.host == "127.0.0.1"
        assert node.rpc.port == _healthcheck_port(service)
        assert node.role == ("observer" if name.startswith("observer") else "validator")
        nodes[name] = node
    on_disk = {p.parent.name for p in cluster.glob("*/node.json")}
    assert on_disk == set(nodes), "init made nodes that no service runs (or the reverse)"
    return nodes


@pytest.mark.skipif(
    not (has_node_command() and enclave_makes_identities()),
    reason="`coco-gateway node` (or the enclave's MakeIdentity) is not in this build yet",
)
def test_consortium_compose_runs_as_local_processes(compose_init: InitRuns, tmp_path: Path) -> None:
    services = _compose()["services"]
    cluster = compose_init.cluster
    nodes = _check_init_output(services, cluster)
    busy = [
        port
        for node in nodes.values()
        for port in (node.rpc.port, node.p2p.port)
        if not _port_free(port)
    ]
    assert not busy, f"the compose file's ports {busy} are in use on this machine"

    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in nodes}

    def tails() -> str:
        return "\n".join(
            f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:])
            for name, path in logs.items()
            if path.exists()
        )

    try:
        for name in nodes:  # after init, as depends_on orders them
            with open(logs[name], "wb") as log:
                procs[name] = subprocess.Popen(
                    _local(services[name]["command"], cluster),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                    start_new_session=True,
                )
        # every service's own healthcheck passes
        deadline = time.monotonic() + 180
        for name in nodes:
            while True:
                exited = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
                assert not exited, f"nodes exited: {exited}\n{tails()}"
                check = subprocess.run(
                    _healthcheck(services[name]), capture_output=True, timeout=30
                )
                if check.returncode == 0:
                    break
                assert time.monotonic() < deadline, f"{name} is not healthy\n{tails()}"
                time.sleep(0.5)
        urls = {name: f"http://127.0.0.1:{node.rpc.port}" for name, node in nodes.items()}
        start = {name: int(rpc(url, "eth_blockNumber")["result"], 16) for name, url in urls.items()}

        # a transaction sent to one validator is mined, and its receipt read from another
        from eth_account import Account

        terms = ConsortiumTerms.load(cluster / "consortium.json")
        tx = Account.sign_transaction(
            {
                "chainId": terms.chain_id,
                "nonce": 0,
                "to": "0x" + "42" * 20,
                "value": 1,
                "gas": 21_000,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**9,
            },
            DEV_KEY,
        )
        sent = rpc(urls["node2"], "eth_sendRawTransaction", ["0x" + tx.raw_transaction.hex()])
        assert "result" in sent, sent
        receipt = wait_receipt(urls["node3"], sent["result"], timeout=120, what=tails())
        assert receipt["status"] == "0x1"
        mined = int(receipt["blockNumber"], 16)

        # every node, the observer too, reaches that block and holds the same chain
        deadline = time.monotonic() + 120
        for name, url in urls.items():
            while int(rpc(url, "eth_blockNumber")["result"], 16) < mined:
                assert time.monotonic() < deadline, f"{name} stays behind block {mined}\n{tails()}"
                time.sleep(0.2)
        for number in sorted({1, mined}):
            hashes = {
                name: rpc(url, "eth_getBlockByNumber", [hex(number), False])["result"]["hash"]
                for name, url in urls.items()
            }
            assert len(set(hashes.values())) == 1, f"block {number} differs: {hashes}"
        assert all(mined > start[name] for name in urls), (start, mined)  # all advanced
        final = rpc(urls["observer1"], "eth_getBlockByNumber", ["finalized", False])["result"]
        assert int(final["number"], 16) >= 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the compose stop_signal
        codes = {}
        for name, proc in procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait()
    assert all(code == 0 for code in codes.values()), f"exit codes {codes}\n{tails()}"


# ------------------------------------------------------------------ the dev node


def test_dev_compose_services_run_as_local_processes(tmp_path: Path) -> None:
    compose = _compose("docker-compose.dev.yml")
    image = _dockerfile()
    assert image["entrypoint"] == ["coco-gateway"]
    service = compose["services"]["gateway"]
    assert service["build"] == "."
    command = list(service.get("command") or image["cmd"])
    # the published port and the volume must match what the command uses
    (mapping,) = service["ports"]
    host_ip, host_port, container_port = mapping.split(":")
    assert host_port == container_port == "8545"
    assert host_ip == "127.0.0.1"
    assert command[command.index("--port") + 1] == container_port
    volume_name, mount = service["volumes"][0].split(":")
    assert volume_name in compose["volumes"]
    assert command[command.index("--data-dir") + 1] == mount
    assert mount in image["volume"]
    assert service["stop_signal"] == "SIGINT"

    # run it: the container's interface and paths become local ones
    port = free_port()
    local = list(command)
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = str(port)
    local[local.index("--data-dir") + 1] = str(tmp_path / "data")
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *local],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),  # its log is there to read on a failure
    )
    try:
        url = f"http://127.0.0.1:{port}"
        # the harness's bound for a node to answer (tests/cluster_harness.py): its start is
        # CPU-bound, and the CI machine's two cores are shared
        deadline = time.monotonic() + 120
        while True:
            try:
                assert rpc(url, "eth_chainId")["result"] == hex(31337)
                break
            except OSError:
                assert proc.poll() is None, (
                    "the node exited:\n" + (tmp_path / "node.log").read_text()
                )
                assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()
                time.sleep(0.2)
        # the compose healthcheck, pointed at the mapped port
        argv = [a.replace("127.0.0.1:8545", f"127.0.0.1:{port}") for a in _healthcheck(service)]
        assert subprocess.run(argv, timeout=30).returncode == 0
    finally:
        proc.send_signal(2)  # the compose stop_signal
        assert proc.wait(30) == 0
        log.close()
