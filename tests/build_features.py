"""What the consortium tests (test_cluster, test_compose) need to know about this build."""

from __future__ import annotations

from conftest import REPO

# the enclave modules that would answer MakeIdentity (not the interface, codec or runtime,
# which name the message without serving it)
_INTERFACE = {"messages.py", "codec.py", "runtime.py"}


def enclave_makes_identities() -> bool:
    """The enclave serves MakeIdentity (the consortium's enclave work is in this build)."""
    return any(
        "MakeIdentity" in path.read_text()
        for path in (REPO / "gateway" / "enclave").glob("*.py")
        if path.name not in _INTERFACE
    )


def has_node_command() -> bool:
    """`coco-gateway node --config FILE` exists (the p2p node is in this build)."""
    from gateway.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return "node" in (sub.choices or {})  # type: ignore[operator]
