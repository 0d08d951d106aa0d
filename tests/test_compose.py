"""docker-compose.yml is right by construction: run its topology as local processes.

Docker's engine does not run on the CI machines, so each service's command (the image's
entrypoint plus the compose `command`) is started here as a process, with the container's
port mapped to a free local port and its volume to a temporary directory, and the service's
own healthcheck is run against it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO, free_port, rpc


def _dockerfile() -> dict[str, Any]:
    text = (REPO / "Dockerfile").read_text()
    import json

    entry = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    volume = json.loads(re.search(r"^VOLUME (.+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return {"entrypoint": entry, "cmd": cmd, "volume": volume}


def test_compose_services_run_as_local_processes(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
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
        [sys.executable, "-m", "gateway.cli", *local], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                assert rpc(url, "eth_chainId")["result"] == hex(31337)
                break
            except OSError:
                assert time.time() < deadline, (tmp_path / "node.log").read_text()
                time.sleep(0.2)
        # the compose healthcheck, pointed at the mapped port
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        argv = [a.replace("127.0.0.1:8545", f"127.0.0.1:{port}") for a in test[1:]]
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        assert subprocess.run(argv, timeout=30).returncode == 0
    finally:
        proc.send_signal(2)  # the compose stop_signal
        assert proc.wait(30) == 0
        log.close()
