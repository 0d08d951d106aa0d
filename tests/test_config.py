"""consortium.json and node.json: strict loading, stable saving, paths, canonical JSON."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, ConsortiumTerms, NodeFile, canonical_json, parse_hostport

V1 = "0x" + "11" * 20
V2 = "0x" + "22" * 20
M1 = "0x" + "33" * 20
MEASURE = "0x" + "ab" * 32


def terms_dict() -> dict[str, Any]:
    return {
        "version": 1,
        "chainId": 1337,
        "fork": "osaka",
        "gasLimit": 30_000_000,
        "genesisTimestamp": 1764000000,
        "alloc": {"0x" + "44" * 20: "1000000000000000000000"},
        "privacy": "open",
        "validation": "attested-diff",
        "blockPeriod": 1,
        "roundTimeout": 2.0,
        "maxRoundTimeout": 30.0,
        "epochPeriod": 86400,
        "validators": [V1, V2],
        "genesisNode": V1,
        "nodes": [
            {"name": "node1", "address": V1, "role": "validator", "rpc": "127.0.0.1:8545",
             "p2p": "127.0.0.1:30301"},
            {"name": "node2", "address": V2, "role": "validator", "rpc": "127.0.0.1:8546",
             "p2p": "127.0.0.1:30302"},
            {"name": "node3", "address": M1, "role": "member", "rpc": "127.0.0.1:8547",
             "p2p": "127.0.0.1:30303"},
        ],
        "measurements": [MEASURE],
        "platforms": ["virtual"],
        "allowVirtual": True,
    }  # fmt: skip


def node_dict() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "node1",
        "role": "validator",
        "consortium": "../consortium.json",
        "dataDir": "data",
        "rpc": {"host": "127.0.0.1", "port": 8545},
        "p2p": {"host": "127.0.0.1", "port": 30301},
        "peers": ["127.0.0.1:30302", "127.0.0.1:30303"],
        "enclave": "process",
        "privacy": "open",
    }


def test_terms_round_trip_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "consortium.json"
    path.write_text(json.dumps(terms_dict()))
    terms = ConsortiumTerms.load(path)
    assert terms.chain_id == 1337 and terms.genesis_node == V1
    assert [n.name for n in terms.nodes] == ["node1", "node2", "node3"]
    assert terms.to_dict() == terms_dict()
    terms.save(path)
    first = path.read_bytes()
    assert first.endswith(b"\n") and b'\n  "chainId": 1337,' in first  # pretty, documented order
    ConsortiumTerms.load(path).save(path)
    assert path.read_bytes() == first
    assert ConsortiumTerms.load(path) == terms


def test_canonical_json_sorted_no_spaces() -> None:
    terms = ConsortiumTerms.from_dict(terms_dict())
    text = terms.canonical_json()
    assert b" " not in text and b"\n" not in text
    assert text.startswith(b'{"alloc":{"0x4444')
    assert json.loads(text) == terms_dict()
    # key order in the file does not matter; content does
    shuffled = dict(reversed(list(terms_dict().items())))
    assert ConsortiumTerms.from_dict(shuffled).canonical_json() == text
    assert text == canonical_json(terms.to_open_terms())
    changed = terms_dict()
    changed["chainId"] = 1338
    assert ConsortiumTerms.from_dict(changed).canonical_json() != text


def test_addresses_are_normalised_to_lower_case() -> None:
    data = terms_dict()
    mixed = "0x" + "aB" * 20
    data["validators"][1] = mixed
    data["nodes"][1]["address"] = mixed.upper().replace("0X", "0x")
    terms = ConsortiumTerms.from_dict(data)
    assert terms.validators[1] == mixed.lower()
    assert terms.node_by_address(mixed) == terms.nodes[1]


def test_open_terms_are_plain_data() -> None:
    open_terms = ConsortiumTerms.from_dict(terms_dict()).to_open_terms()
    assert open_terms == terms_dict()

    def plain(v: Any) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, bool | int | float | str)

    assert plain(open_terms)


def _mutate(data: dict[str, Any], where: str, value: Any) -> None:
    """Set (or delete, for value ...) the field at a dotted path with [i] indices."""
    keys: list[Any] = []
    for part in where.split("."):
        if "[" in part:
            name, index = part[:-1].split("[")
            keys += [name, int(index)]
        else:
            keys.append(part)
    target: Any = data
    for key in keys[:-1]:
        target = target[key]
    if value is ...:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


def _refusal(
    load: Callable[[Path], object], path: Path, data: dict[str, Any], where: str, value: Any
) -> ConfigError:
    """The error ``load`` gives for ``data`` with ``where`` changed to ``value``, written to
    ``path``; it names the file and the field before its reason."""
    data = copy.deepcopy(data)
    _mutate(data, where, value)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert err.file == str(path), str(err)
    assert str(err) == f"{path}: {err.field}: {err.reason}"
    return err


@pytest.mark.parametrize(
    ("where", "value", "field", "reason"),
    [
        ("chainId", "1337", "chainId", "expected an integer 1..18446744073709551615"),
        ("chainId", True, "chainId", "expected an integer"),
        ("chainId", 0, "chainId", "expected an integer"),
        ("chainId", ..., "chainId", "missing"),
        ("version", 2, "version", "unsupported version 2"),
        ("fork", "london", "fork", 'expected one of "shanghai"'),
        ("gasLimit", 10, "gasLimit", "expected an integer 5000.."),
        ("alloc", [], "alloc", "expected a JSON object"),
        ("alloc", {"0x12": "1"}, "alloc.0x12", "expected a 0x-prefixed 20-byte hex address"),
        ("alloc", {V1: 5}, f"alloc.{V1}", "decimal string"),
        ("alloc", {V1: "-5"}, f"alloc.{V1}", "decimal string"),
        ("alloc", {V1: str(2**256)}, f"alloc.{V1}", "decimal string"),
        ("privacy", "closed", "privacy", 'expected one of "open", "strict"'),
        ("validation", "trust-me", "validation", '"attested-diff", "re-execute"'),
        ("blockPeriod", 0.5, "blockPeriod", "expected a number 1..3600"),
        ("blockPeriod", "1", "blockPeriod", "expected a number"),
        ("roundTimeout", 0, "roundTimeout", "expected a number"),
        ("maxRoundTimeout", 1.0, "maxRoundTimeout", "at least roundTimeout"),
        ("epochPeriod", 0.5, "epochPeriod", "expected an integer 1.."),
        ("validators", [], "validators", "at least 1 entry"),
        ("validators", V1, "validators", "expected a list"),
        ("validators[1]", V1, "validators[1]", "listed twice"),
        ("validators[1]", "0xzz", "validators[1]", "20-byte hex address"),
        ("genesisNode", M1, "genesisNode", "must be one of the validators"),
        ("nodes[0].name", "", "nodes[0].name", "non-empty string"),
        ("nodes[0].name", "a b", "nodes[0].name", "letters, digits"),
        ("nodes[1].name", "node1", "nodes[1].name", "also used by node 'node1'"),
        ("nodes[1].p2p", "127.0.0.1:30301", "nodes[1].p2p", "also used by node 'node1'"),
        ("nodes[1].rpc", "127.0.0.1", "nodes[1].rpc", 'expected "host:port"'),
        ("nodes[1].rpc", "127.0.0.1:0", "nodes[1].rpc", "port 1..65535"),
        ("nodes[1].role", "observer", "nodes[1].role", 'expected one of "validator", "member"'),
        ("nodes[1].role", "member", "validators[1]", "has no node of role validator"),
        ("nodes[2].role", "validator", "nodes[2].role", "validator not in validators"),
        ("nodes[2].colour", "red", "nodes[2].colour", "unknown field"),
        ("nodes[2].address", ..., "nodes[2].address", "missing"),
        ("measurements", [], "measurements", "at least 1 entry"),
        ("measurements[0]", "0x12", "measurements[0]", "32-byte hex measurement"),
        ("platforms[0]", "Virtual Box", "platforms[0]", "expected a platform name"),
        ("allowVirtual", "yes", "allowVirtual", "expected true or false"),
        ("allowVirtual", False, "allowVirtual", 'exactly when platforms lists "virtual"'),
        ("extra", 1, "extra", "unknown field"),
    ],
)
def test_terms_errors_name_file_field_reason(
    tmp_path: Path, where: str, value: Any, field: str, reason: str
) -> None:
    err = _refusal(ConsortiumTerms.load, tmp_path / "consortium.json", terms_dict(), where, value)
    assert err.field == field and reason in err.reason, str(err)


def test_unreadable_and_not_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ConsortiumTerms.load(tmp_path / "nope.json")
    assert info.value.code == "unreadable" and "no such file" in str(info.value)
    bad = tmp_path / "consortium.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as info:
        ConsortiumTerms.load(bad)
    assert info.value.code == "not-json" and str(info.value).startswith(f"{bad}: not valid JSON")
    bad.write_text('{"chainId": NaN}')
    with pytest.raises(ConfigError) as info:
        ConsortiumTerms.load(bad)
    assert info.value.code == "not-json"
    bad.write_text("[1, 2]")
    with pytest.raises(
        ConfigError, match=r"consortium.json: \(top level\): expected a JSON object"
    ):
        ConsortiumTerms.load(bad)


def test_node_file_round_trip_and_paths(tmp_path: Path) -> None:
    node_dir = tmp_path / "cluster" / "node1"
    node_dir.mkdir(parents=True)
    path = node_dir / "node.json"
    path.write_text(json.dumps(node_dict()))
    node = NodeFile.load(path)
    assert node.rpc.port == 8545 and str(node.p2p) == "127.0.0.1:30301"
    assert node.consortium_path == (tmp_path / "cluster" / "consortium.json").resolve()
    assert node.data_path == (node_dir / "data").resolve()
    assert node.peer_addresses == [("127.0.0.1", 30302), ("127.0.0.1", 30303)]
    assert node.has_identity
    assert node.to_dict() == node_dict()
    node.save()
    first = path.read_bytes()
    NodeFile.load(path).save(path)
    assert path.read_bytes() == first
    # absolute paths stay as they are; a relative load resolves against the file, not cwd
    absolute = dict(node_dict(), dataDir=str(tmp_path / "elsewhere"))
    path.write_text(json.dumps(absolute))
    assert NodeFile.load(path).data_path == tmp_path / "elsewhere"


def test_node_file_against_terms(tmp_path: Path) -> None:
    (tmp_path / "consortium.json").write_text(json.dumps(terms_dict()))
    node_dir = tmp_path / "node1"
    node_dir.mkdir()

    def load(**changes: Any) -> NodeFile:
        path = node_dir / "node.json"
        path.write_text(json.dumps(dict(node_dict(), **changes)))
        return NodeFile.load(path)

    terms = load().load_terms()
    assert terms.chain_id == 1337
    for changes, field, reason in [
        ({"role": "member"}, "role", "the terms make 'node1' a validator"),
        ({"name": "node9"}, "name", "not in the terms' nodes"),
        ({"role": "observer"}, "name", "is a validator in the terms"),
        ({"privacy": "strict"}, "privacy", 'the consortium\'s privacy is "open"'),
        ({"p2p": {"host": "127.0.0.1", "port": 30309}}, "p2p.port", "at 127.0.0.1:30301"),
    ]:
        with pytest.raises(ConfigError) as info:
            load(**changes).load_terms()
        assert info.value.field == field and reason in info.value.reason, str(info.value)
        assert info.value.code == "inconsistent"
    observer = load(name="observer1", role="observer")
    assert not observer.has_identity
    observer.load_terms()
    with pytest.raises(ConfigError, match=r"consortium\.json: no such file"):
        load(consortium="../missing/consortium.json").load_terms()


@pytest.mark.parametrize(
    ("where", "value", "field", "reason"),
    [
        ("p2p.port", 0, "p2p.port", "expected an integer 1..65535"),
        ("p2p.port", "30301", "p2p.port", "expected an integer 1..65535"),
        ("p2p.port", 8545, "p2p.port", "must differ from rpc.port"),
        ("rpc.port", 70000, "rpc.port", "expected an integer 1..65535"),
        ("rpc.host", "", "rpc.host", "non-empty string"),
        ("rpc.host", "a host", "rpc.host", "host name or IP address"),
        ("rpc.tls", True, "rpc.tls", "unknown field"),
        ("rpc", "127.0.0.1:8545", "rpc", "expected a JSON object"),
        ("role", "leader", "role", 'expected one of "validator", "member", "observer"'),
        ("peers", "127.0.0.1:1", "peers", "expected a list"),
        ("peers[0]", "nowhere", "peers[0]", 'expected "host:port"'),
        ("peers[1]", "127.0.0.1:30302", "peers[1]", "listed twice"),
        ("peers[1]", "127.0.0.1:30301", "peers[1]", "own p2p address"),
        ("enclave", "sgx", "enclave", 'expected one of "process", "inprocess"'),
        ("dataDir", ..., "dataDir", "missing"),
        ("consortium", 3, "consortium", "non-empty string"),
        ("version", 0, "version", "unsupported version 0"),
    ],
)
def test_node_errors_name_file_field_reason(
    tmp_path: Path, where: str, value: Any, field: str, reason: str
) -> None:
    err = _refusal(NodeFile.load, tmp_path / "node.json", node_dict(), where, value)
    assert err.field == field and reason in err.reason, str(err)


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:30301") == ("127.0.0.1", 30301)
    assert parse_hostport("[::1]:8545") == ("[::1]", 8545)
    assert parse_hostport("node-1.example:1") == ("node-1.example", 1)
    for bad in ("127.0.0.1", ":80", "host:", "host:x", "host:65536", "a b:80"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


def test_protocol_doc_terms_worked_example() -> None:
    """docs/PROTOCOL.md's worked example: the canonical JSON and its keccak, byte for byte."""
    import re

    from conftest import REPO
    from eth_utils import keccak

    doc = (REPO / "docs" / "PROTOCOL.md").read_text()
    section = doc[doc.index("## Consortium terms, version 1") :]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example is not None
    terms = ConsortiumTerms.from_dict(json.loads(example.group(1)), "PROTOCOL.md")
    canonical = terms.canonical_json().decode()
    begins = re.search(r"begins `(.*?)`", section, re.S)
    ends = re.search(r"ends `(.*?)`", section, re.S)
    assert begins is not None and ends is not None
    assert canonical.startswith(begins.group(1)) and canonical.endswith(ends.group(1))
    digest = re.search(r"^extraData\s+([0-9a-f]{64})$", section, re.M)
    assert digest is not None and digest.group(1) == keccak(canonical.encode()).hex()
