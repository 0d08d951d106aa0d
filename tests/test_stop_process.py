"""conftest's stop_process / stop_processes, which every node fixture and the cluster harness
stop nodes with: real child processes in their own process groups (as nodes are started),
each with a grandchild (as a node has its enclave)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import stop_process, stop_processes

# A "node": exits 0 a moment after SIGTERM (as a node finishing its shutdown), or ignores it;
# its "enclave" child ignores SIGTERM and lives until its group is killed. It prints the
# child's pid, then "ready" once its handler is in place.
NODE = """
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(child.pid, flush=True)
if sys.argv[1] == "clean":
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(float(sys.argv[2])), sys.exit(0)))
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def start(mode: str, linger: float = 0.0) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", NODE, mode, str(linger)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == b"ready"
    return proc, child


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its new parent) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_clean_exit_is_reported_and_the_group_is_reaped() -> None:
    proc, child = start("clean", 0.2)
    assert stop_process(proc, signal.SIGTERM, timeout=20) == 0
    assert wait_gone(child), "the enclave-like child outlived its node"
    assert stop_process(None) is None


def test_a_node_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    proc, child = start("stubborn")
    began = time.monotonic()
    assert stop_process(proc, signal.SIGTERM, timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5
    assert wait_gone(child)


def test_sigkill_takes_the_whole_group() -> None:
    proc, child = start("clean", 0.0)
    assert stop_process(proc, signal.SIGKILL) == -signal.SIGKILL
    assert wait_gone(child)


def test_several_nodes_stop_side_by_side() -> None:
    linger = 2.0
    started = [start("clean", linger) for _ in range(3)]
    began = time.monotonic()
    codes = stop_processes([p for p, _ in started], signal.SIGTERM, timeout=30)
    took = time.monotonic() - began
    assert codes == [0, 0, 0]
    # one after another would take at least 3 x 2 s; side by side a little over 2 s
    assert linger <= took < 3 * linger - 0.5, took
    assert all(wait_gone(child) for _, child in started)
    assert stop_processes([None]) == [None]
