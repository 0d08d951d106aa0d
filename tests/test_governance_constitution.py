"""The constitution: thresholds, the strictest rule of a proposal, strict parsing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from governance_support import refused

from gateway.governance import constitution as c
from gateway.governance.actions import KINDS


@pytest.mark.parametrize(
    ("threshold", "members", "needed"),
    [
        ("majority", 1, 1),
        ("majority", 2, 2),
        ("majority", 3, 2),
        ("majority", 4, 3),
        ("majority", 5, 3),
        ("two-thirds", 1, 1),
        ("two-thirds", 2, 2),
        ("two-thirds", 3, 2),
        ("two-thirds", 4, 3),
        ("two-thirds", 5, 4),
        ("two-thirds", 6, 4),
        ("two-thirds", 7, 5),
        ("unanimity", 1, 1),
        ("unanimity", 7, 7),
        (3, 2, 3),
        (3, 9, 3),
    ],
)
def test_thresholds(threshold: c.Threshold, members: int, needed: int) -> None:
    assert c.required(threshold, members) == needed


def test_default_constitution() -> None:
    d = c.DEFAULT
    assert d.default == c.Rule("majority", 7 * 86_400)
    for kind in (
        "set_constitution",
        "add_member",
        "remove_member",
        "add_validator",
        "remove_validator",
        "allow_measurement",
        "set_recovery_threshold",
    ):
        assert d.rule(kind).threshold == "two-thirds", kind
    for kind in ("trust_node", "rotate_ledger_secret", "open_network", "disallow_measurement"):
        assert d.rule(kind) == d.default, kind
    assert c.parse(d.to_json()) == d
    assert d.digest() == c.parse(copy.deepcopy(c.DEFAULT_JSON)).digest()


def test_a_proposal_takes_the_strictest_rule_of_its_actions() -> None:
    con = c.parse(
        {
            "version": 1,
            "default": {"threshold": "majority", "openFor": 86_400},
            "actions": {
                "set_constitution": {"threshold": "unanimity"},
                "add_validator": {"threshold": 2, "openFor": 3_600},
            },
        }
    )
    assert con.rule("set_constitution") == c.Rule("unanimity", 86_400)  # openFor inherited
    assert con.rule("add_validator") == c.Rule(2, 3_600)
    assert con.needed(["trust_node", "add_validator"], 5) == 3  # majority 3 > count 2
    assert con.needed(["trust_node", "add_validator"], 2) == 2
    assert con.needed(["trust_node", "set_constitution"], 5) == 5
    assert con.open_for(["trust_node", "add_validator"]) == 3_600
    assert con.open_for(["trust_node"]) == 86_400


def _with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(c.DEFAULT_JSON)
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([], "JSON object"),
        (_with(version=2), "version 2"),
        (_with(extra=1), "unknown fields ['extra']"),
        ({"version": 1}, '"default" is missing'),
        (_with(default={"threshold": "majority"}), "both threshold and openFor"),
        (_with(default={"threshold": "most", "openFor": 600}), "'most' is not one of"),
        (_with(default={"threshold": 0, "openFor": 600}), "count threshold"),
        (_with(default={"threshold": True, "openFor": 600}), "a name or a count"),
        (_with(default={"threshold": "majority", "openFor": 59}), "openFor must be in"),
        (_with(default={"threshold": "majority", "openFor": 1.5e3}), "integer number"),
        (_with(default={"threshold": "majority", "openFor": 600, "veto": 1}), "unknown fields"),
        (_with(actions={"launch": {"threshold": "majority"}}), "'launch' is not an action"),
        (_with(actions={"add_member": "majority"}), "must be an object"),
        (_with(actions=[]), "map action kinds"),
    ],
)
def test_strict_parsing_names_what_is_wrong(raw: Any, says: str) -> None:
    err = refused("bad-constitution", c.parse, raw)
    assert says in err.message


def test_every_action_kind_can_be_ruled() -> None:
    raw = _with(actions={k: {"threshold": "unanimity"} for k in KINDS})
    con = c.parse(raw)
    assert all(con.rule(k).threshold == "unanimity" for k in KINDS)
    assert len(KINDS) >= 18
