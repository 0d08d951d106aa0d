"""Shared fixtures: real gateway nodes started as processes on free 127.0.0.1 ports."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web3.providers.rpc import HTTPProvider

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
]
CHAIN_ID = 31337


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, params: list[Any] | None = None) -> dict[str, Any]:
    """One raw JSON-RPC call; returns the whole response object."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def wait_receipt(url: str, tx_hash: str, timeout: float = 60, what: str = "") -> dict[str, Any]:
    """The transaction's receipt, polled every 50 ms; fails (``what`` first) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (receipt := rpc(url, "eth_getTransactionReceipt", [tx_hash])["result"]) is None:
        assert time.monotonic() < deadline, f"{what}no receipt for {tx_hash} within {timeout:g} s"
        time.sleep(0.05)
    return dict(receipt)


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    sig: int = signal.SIGTERM,
    timeout: float = 30,
    signalled: bool = False,
) -> int | None:
    """Stop a node process started with ``start_new_session=True`` (its own process group:
    the host and its enclave child): send ``sig`` (SIGKILL goes to the whole group), wait up
    to ``timeout`` s, then SIGKILL the group. Once the node has exited, whatever is left of
    its group (an orphaned enclave) is killed too. Returns its exit code (None: no process).
    ``signalled``: ``sig`` was sent already (``stop_processes``); only wait."""
    if proc is None:
        return None
    if proc.poll() is None:
        if sig == signal.SIGKILL:
            _kill_group(proc.pid)
        elif not signalled:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
    _kill_group(proc.pid)
    return proc.returncode


def stop_processes(
    procs: list[subprocess.Popen[bytes] | None], sig: int = signal.SIGTERM, timeout: float = 30
) -> list[int | None]:
    """``stop_process`` for several nodes at once: all get ``sig`` first, then each is
    waited for (within one shared ``timeout``), so they shut down side by side."""
    for proc in procs:
        if proc is not None and proc.poll() is None and sig != signal.SIGKILL:
            proc.send_signal(sig)
    deadline = time.monotonic() + timeout
    return [
        stop_process(proc, sig, max(0.0, deadline - time.monotonic()), signalled=True)
        if proc
        else None
        for proc in procs
    ]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class NodeProcess:
    """A `coco-gateway dev` process with its own data directory and port."""

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> NodeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child process owns it)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "dev",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited early:\n{self.log()}")
            try:
                if "result" in rpc(self.url, "eth_chainId"):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int | None:
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class TerminalProgress:
    """Catch-up and snapshot progress as an operator at a terminal sees it: ``start()``
    (in the test itself: pytest's capture puts its own stderr back between phases) puts a
    fake terminal in place of stderr and returns a new ``gateway.consortium_node.Progress``;
    ``terminal`` holds the bar output, ``lines()`` the log lines."""

    monkeypatch: pytest.MonkeyPatch
    caplog: pytest.LogCaptureFixture
    terminal: io.StringIO = field(default_factory=_Terminal)

    def start(self) -> Any:
        from gateway.consortium_node import Progress

        self.monkeypatch.setattr(sys, "stderr", self.terminal)
        self.caplog.set_level(logging.INFO, logger="gateway.consortium")
        return Progress()

    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.caplog.records]


@pytest.fixture
def terminal_progress(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> TerminalProgress:
    return TerminalProgress(monkeypatch, caplog)


@pytest.fixture(scope="session")
def cluster_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Consortia shared between tests and modules, one running at a time
    (tests/cluster_harness.py ``ClusterPool``)."""
    from cluster_harness import ClusterPool

    pool = ClusterPool(tmp_path_factory)
    _POOLS.append(pool)
    try:
        yield pool
    finally:
        _POOLS.remove(pool)
        pool.close()


_POOLS: list[Any] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that does not use the shared clusters gets the machine without them: the
    pool's cluster is closed first (tests that share one run next to each other)."""
    if _POOLS and "cluster_pool" not in getattr(item, "fixturenames", ()):
        _POOLS[0].close()


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One dev node shared by every test that only adds to the chain."""
    proc = NodeProcess(tmp_path_factory.mktemp("shared") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A node of the test's own, for tests that restart or kill it."""
    proc = NodeProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def w3(node: NodeProcess) -> Any:
    from web3 import Web3

    return Web3(checked_provider(node.url))


def checked_provider(url: str) -> Any:
    """web3's HTTPProvider, with every result checked against the execution-apis shapes."""
    from rpc_schemas import has_schema, validate_result
    from web3 import Web3

    class CheckedHTTPProvider(Web3.HTTPProvider):  # type: ignore[misc,name-defined]
        def make_request(self, method: Any, params: Any) -> Any:
            response = super().make_request(method, params)
            result = response.get("result") if isinstance(response, dict) else None
            if result is not None and has_schema(str(method)):
                pending = isinstance(result, dict) and result.get("blockHash", "x") is None
                validate_result(str(method), result, params=params, pending=pending)
            return response

    return CheckedHTTPProvider(url, request_kwargs={"timeout": 60})


@pytest.fixture
def checking_proxy(node: NodeProcess) -> Iterator[Any]:
    """A proxy in front of the shared node that checks every response's shape."""
    from rpc_proxy import CheckingProxy

    proxy = CheckingProxy(node.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(chain: NodeProcess) -> Iterator[Any]:
    """A checking proxy in front of the module's own `chain` node (the client suites)."""
    from rpc_proxy import CheckingProxy

    checking = CheckingProxy(chain.url).start()
    yield checking
    checking.stop()


# Every aiohttp ClientSession the tests open (web3's async providers, the checking proxy),
# with the test that opened it: one left open prints "Unclosed client session" when it is
# collected, after the summary, naming nobody. The run fails instead, naming the test.
_CLIENT_SESSIONS: list[tuple[weakref.ref[Any], str]] = []


def pytest_configure(config: pytest.Config) -> None:
    import aiohttp

    opened = aiohttp.ClientSession.__init__

    def recording_init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        test = os.environ.get("PYTEST_CURRENT_TEST", "outside a test").split(" ")[0]
        _CLIENT_SESSIONS.append((weakref.ref(self), test))

    aiohttp.ClientSession.__init__ = recording_init  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gc.collect()
    left = sorted(
        {test for ref, test in _CLIENT_SESSIONS if (s := ref()) is not None and not s.closed}
    )
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "aiohttp client sessions left open by: " + ", ".join(left)
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report on the item (``item.rep_setup``, ``rep_call``), so a fixture can
    tell in its teardown that its test failed (the cluster fixtures print node logs then)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
    if report.failed and report.when in ("setup", "call"):
        _FAILED.add(item.nodeid)


_FAILED: set[str] = set()  # node ids of the tests that failed in set-up or call


def any_failed(prefix: str) -> bool:
    """Whether a test whose node id starts with ``prefix`` (a test's, a module's: "" for
    all) failed in its set-up or call so far."""
    return any(nodeid.startswith(prefix) for nodeid in _FAILED)


class RecordingProvider(HTTPProvider):  # type: ignore[misc]
    """A web3 HTTPProvider that keeps every (method, params, response) it carried, for tests
    that look at what the SDK sent: ``.log`` and ``.sent(method)``."""

    def __init__(self, url: str) -> None:
        super().__init__(url, request_kwargs={"timeout": 60})
        self.log: list[tuple[str, Any, Any]] = []

    def make_request(self, method: Any, params: Any) -> Any:
        response = super().make_request(method, params)
        self.log.append((str(method), params, response))
        return response

    def sent(self, method: str) -> list[tuple[Any, Any]]:
        return [(params, response) for m, params, response in self.log if m == method]
