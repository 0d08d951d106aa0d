"""`coco-gateway` as an operator meets it: a start-up that cannot work is refused with one
line, before anything is written and before the banner; a data directory is locked by the
node that opened it; every option says what it does.

The CLI runs as a real process; "nothing written" is checked by comparing every file of
the directories involved (size, modification time, content) before and after.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, NodeProcess, free_port, rpc

from gateway.cli import build_parser
from gateway.startup import LOCK_FILE, public_url

Snapshot = dict[str, tuple[int, int, str]]


def cli(*args: str, timeout: float = 60, **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
        **popen,  # type: ignore[call-overload]
    )


def refused(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a refused command printed (on stderr; nothing on stdout: no banner)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "", done.stdout
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def snapshot(*roots: Path) -> Snapshot:
    files: Snapshot = {}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []:
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files[str(path)] = (stat.st_size, stat.st_mtime_ns, digest)
    return files


@pytest.fixture(scope="module")
def cancun_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a stopped chain made with non-default --chain-id and --fork."""
    data_dir = tmp_path_factory.mktemp("startup") / "cancun"
    node = NodeProcess(data_dir, "--chain-id", "1337", "--fork", "cancun").start()
    assert node.stop() == 0
    return data_dir


# ------------------------------------------------------------------ one line, nothing written


def test_port_in_use_is_refused_before_the_data_directory_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "new"
        line = refused(cli("dev", "--port", str(port), "--data-dir", str(data_dir)))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line, line
    assert not data_dir.exists()


def test_data_dir_naming_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a chain\n")
    before = snapshot(tmp_path)
    line = refused(cli("dev", "--port", str(free_port()), "--data-dir", str(path)))
    assert str(path) in line and "is a file" in line, line
    line = refused(cli("dev", "--port", str(free_port()), "--data-dir", str(path / "below")))
    assert str(path) in line and "is a file" in line, line
    assert snapshot(tmp_path) == before


def _without_dac_override() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override = 24, 1
    if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def test_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    popen: dict[str, object] = {}
    if os.geteuid() == 0:
        # root writes anywhere; without CAP_DAC_OVERRIDE it obeys the mode bits like anyone
        try:
            subprocess.run(["true"], preexec_fn=_without_dac_override, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here to test an unwritable directory: {exc}")
        popen["preexec_fn"] = _without_dac_override
    try:
        before = snapshot(tmp_path)
        for data_dir in (readonly, readonly / "data"):
            line = refused(
                cli("dev", "--port", str(free_port()), "--data-dir", str(data_dir), **popen)
            )
            assert str(data_dir) in line and "not writable" in line, line
        assert snapshot(tmp_path) == before
        assert not (readonly / "data").exists() and not (readonly / LOCK_FILE).exists()
    finally:
        readonly.chmod(0o755)


def test_fork_or_chain_id_differing_from_the_chain_is_refused(cancun_dir: Path) -> None:
    before = snapshot(cancun_dir)
    port = str(free_port())
    line = refused(cli("dev", "--port", port, "--data-dir", str(cancun_dir), "--fork", "prague"))
    assert "a cancun chain, not prague" in line and str(cancun_dir) in line, line
    assert "--fork cancun" in line, line
    line = refused(cli("dev", "--port", port, "--data-dir", str(cancun_dir), "--chain-id", "31337"))
    assert "holds chain 1337, not 31337" in line and "--chain-id 1337" in line, line
    both = ["--chain-id", "1337", "--fork", "shanghai"]
    line = refused(cli("dev", "--port", port, "--data-dir", str(cancun_dir), *both))
    assert "a cancun chain, not shanghai" in line, line
    assert snapshot(cancun_dir) == before


def test_a_crashed_chain_is_checked_from_its_write_ahead_log(tmp_path: Path) -> None:
    """Killed at once, a new chain's genesis is still in SQLite's log, not the main file."""
    data_dir = tmp_path / "data"
    NodeProcess(data_dir, "--chain-id", "4242").start().kill9()
    assert (data_dir / "ledger.sqlite-wal").stat().st_size > 0
    content = ("ledger.sqlite", "ledger.sqlite-wal", "sealing.key", LOCK_FILE)
    before = {name: (data_dir / name).read_bytes() for name in content}
    port = str(free_port())
    line = refused(cli("dev", "--port", port, "--data-dir", str(data_dir), "--chain-id", "1"))
    assert "holds chain 4242, not 1: drop --chain-id" in line, line  # the host's check
    # the ledger and its log as they were (SQLite may rebuild the log's index, -shm)
    assert {name: (data_dir / name).read_bytes() for name in content} == before


def test_verify_seal_against_a_node_that_does_not_answer() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = refused(cli("verify-seal", "--rpc", url), code=1)
    assert line.startswith("seal NOT checked: cannot reach " + url), line
    line = refused(cli("verify-seal", "not-a-block", "--rpc", url), code=1)
    assert "'not-a-block' is not a block number or tag" in line, line


# ------------------------------------------------------------------ the data directory's lock


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _exited(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


@pytest.fixture
def node_a(cancun_dir: Path) -> Iterator[NodeProcess]:
    # no --chain-id or --fork: the chain keeps its own (1337, cancun), not the defaults
    node = NodeProcess(cancun_dir, "--host", "0.0.0.0").start()
    yield node
    node.stop()


def test_a_second_node_on_a_locked_directory_is_refused_and_kill9_releases_it(
    node_a: NodeProcess, cancun_dir: Path
) -> None:
    assert rpc(node_a.url, "eth_chainId")["result"] == hex(1337)
    assert rpc(node_a.url, "coco_nodeInfo")["result"]["fork"] == "cancun"
    assert node_a.proc is not None
    host = node_a.proc.pid
    assert (cancun_dir / LOCK_FILE).read_text().split() == [str(host)]
    # the banner names a URL one can paste, not the wildcard address
    banner = node_a.log()
    assert f"RPC URL:        http://127.0.0.1:{node_a.port} (listening on all IPv4" in banner
    assert "0.0.0.0" not in banner

    before = snapshot(cancun_dir)
    started = time.monotonic()
    line = refused(cli("dev", "--port", str(free_port()), "--data-dir", str(cancun_dir)))
    assert time.monotonic() - started < 20
    assert str(cancun_dir.resolve()) in line and f"process {host}" in line, line
    assert snapshot(cancun_dir) == before  # the second node wrote nothing
    assert "result" in rpc(node_a.url, "eth_blockNumber")  # and the first one still serves

    # kill -9 of the host alone: its enclave child sees the end of its input and exits,
    # which releases the lock it inherited
    (enclave,) = _children(host)
    lock = (cancun_dir / LOCK_FILE).resolve()
    held = [fd for fd in Path(f"/proc/{enclave}/fd").iterdir() if fd.resolve() == lock]
    assert held, "the enclave process does not hold the data directory's lock"
    os.kill(host, signal.SIGKILL)
    node_a.proc.wait(30)
    node_a.proc = None
    deadline = time.monotonic() + 30
    while not _exited(enclave):
        assert time.monotonic() < deadline, "the enclave process outlived its killed host"
        time.sleep(0.05)
    again = NodeProcess(cancun_dir).start()
    try:
        assert rpc(again.url, "eth_chainId")["result"] == hex(1337)
        assert again.proc is not None
        assert (cancun_dir / LOCK_FILE).read_text().split() == [str(again.proc.pid)]
    finally:
        assert again.stop() == 0


# ------------------------------------------------------------------ the CLI's own surface


def test_every_option_of_every_command_has_help() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{parser.prog}: {name}")
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{parser.prog}: command {choice.dest}")
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    assert not missing, "options without help text: " + ", ".join(missing)


def test_banner_urls_for_wildcard_and_ipv6_hosts() -> None:
    assert public_url("0.0.0.0", 8545) == (
        "http://127.0.0.1:8545",
        "listening on all IPv4 interfaces",
    )
    assert public_url("::", 8545) == ("http://[::1]:8545", "listening on all IPv6 interfaces")
    assert public_url("::1", 8545) == ("http://[::1]:8545", None)
    assert public_url("localhost", 8545) == ("http://localhost:8545", None)
