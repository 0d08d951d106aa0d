"""The constitution: declarative voting rules, one per kind of action, and a default.

A constitution is JSON (docs/GOVERNANCE.md, "The constitution")::

    {"version": 1,
     "default": {"threshold": "majority", "openFor": 604800},
     "actions": {"set_constitution": {"threshold": "two-thirds"},
                 "add_validator": {"threshold": 3, "openFor": 86400}}}

``threshold`` is ``"majority"`` (more than half of the active members), ``"two-thirds"``
(at least two thirds), ``"unanimity"`` (every active member) or a count (at least that many
members; a count above the number of members cannot be reached, and such a proposal is
rejected as soon as that is certain). ``openFor`` is how many seconds a proposal stays open
after the block that recorded it. A rule may give either field; the other comes from the
default. A proposal of several actions takes the strictest rule of its actions: the most
votes any of them needs, and the shortest time any of them allows.

The constitution lives in the governance state and is changed by a ``set_constitution``
proposal (which drops every other open proposal: they were made under the old rules).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from gateway.governance.actions import KINDS
from gateway.governance.errors import GovernanceError

CONSTITUTION_VERSION = 1
NAMED_THRESHOLDS = ("majority", "two-thirds", "unanimity")
MIN_OPEN_FOR = 60  # seconds: less would expire before the members could read it
MAX_OPEN_FOR = 365 * 86_400
MAX_COUNT = 1_000

Threshold = str | int


@dataclass(frozen=True)
class Rule:
    threshold: Threshold
    open_for: int  # seconds


def required(threshold: Threshold, members: int) -> int:
    """How many approvals of ``members`` active members the threshold needs."""
    if threshold == "majority":
        return members // 2 + 1
    if threshold == "two-thirds":
        return (2 * members + 2) // 3
    if threshold == "unanimity":
        return members
    assert isinstance(threshold, int)
    return threshold


@dataclass(frozen=True)
class Constitution:
    default: Rule
    rules: Mapping[str, Rule]  # kind -> its rule (only the kinds the constitution names)

    def rule(self, kind: str) -> Rule:
        return self.rules.get(kind, self.default)

    def needed(self, kinds: Iterable[str], members: int) -> int:
        """Approvals a proposal of these action kinds needs: the strictest of its actions."""
        return max(required(self.rule(k).threshold, members) for k in kinds)

    def open_for(self, kinds: Iterable[str]) -> int:
        """Seconds a proposal of these kinds stays open: the shortest of its actions."""
        return min(self.rule(k).open_for for k in kinds)

    def to_json(self) -> dict[str, Any]:
        def rule(r: Rule) -> dict[str, Any]:
            return {"threshold": r.threshold, "openFor": r.open_for}

        return {
            "version": CONSTITUTION_VERSION,
            "default": rule(self.default),
            "actions": {k: rule(self.rules[k]) for k in sorted(self.rules)},
        }

    def digest(self) -> bytes:
        return keccak(json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode())


def _bad(what: str) -> GovernanceError:
    return GovernanceError("bad-constitution", f"invalid constitution: {what}")


def _threshold(value: Any, where: str) -> Threshold:
    if isinstance(value, bool):
        raise _bad(f"{where}: threshold must be a name or a count, not {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= MAX_COUNT:
            raise _bad(f"{where}: a count threshold must be in [1, {MAX_COUNT}]")
        return value
    if value not in NAMED_THRESHOLDS:
        raise _bad(
            f"{where}: threshold {value!r} is not one of {', '.join(NAMED_THRESHOLDS)} or a count"
        )
    return str(value)


def _open_for(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{where}: openFor must be an integer number of seconds")
    if not MIN_OPEN_FOR <= value <= MAX_OPEN_FOR:
        raise _bad(f"{where}: openFor must be in [{MIN_OPEN_FOR}, {MAX_OPEN_FOR}] seconds")
    return value


def _rule(raw: Any, where: str, base: Rule | None) -> Rule:
    if not isinstance(raw, dict):
        raise _bad(f"{where} must be an object")
    unknown = sorted(set(raw) - {"threshold", "openFor"})
    if unknown:
        raise _bad(f"{where} has unknown fields {unknown}")
    if base is None and set(raw) != {"threshold", "openFor"}:
        raise _bad(f"{where} must give both threshold and openFor")
    threshold = _threshold(raw["threshold"], where) if "threshold" in raw else None
    open_for = _open_for(raw["openFor"], where) if "openFor" in raw else None
    return Rule(
        threshold if threshold is not None else base.threshold,  # type: ignore[union-attr]
        open_for if open_for is not None else base.open_for,  # type: ignore[union-attr]
    )


def parse(raw: Any) -> Constitution:
    """A constitution from its JSON, strictly; ``bad-constitution`` naming what is wrong."""
    if not isinstance(raw, dict):
        raise _bad("it must be a JSON object")
    if raw.get("version") != CONSTITUTION_VERSION:
        raise _bad(f"version {raw.get('version')!r} (this node reads {CONSTITUTION_VERSION})")
    unknown = sorted(set(raw) - {"version", "default", "actions"})
    if unknown:
        raise _bad(f"unknown fields {unknown}")
    if "default" not in raw:
        raise _bad('"default" is missing')
    default = _rule(raw["default"], '"default"', None)
    actions = raw.get("actions", {})
    if not isinstance(actions, dict):
        raise _bad('"actions" must map action kinds to rules')
    rules = {}
    for kind, rule in actions.items():
        if kind not in KINDS:
            raise _bad(f"{kind!r} is not an action kind")
        rules[kind] = _rule(rule, f"the rule of {kind}", default)
    return Constitution(default, rules)


WEEK = 7 * 86_400
DAY = 86_400

# Changing who decides, what code may hold the secret, the validators or the recovery
# terms needs two thirds; day-to-day actions (trusting a node that attested, rotating the
# secret, opening the network, retiring, disallowing) a majority.
DEFAULT_JSON: dict[str, Any] = {
    "version": CONSTITUTION_VERSION,
    "default": {"threshold": "majority", "openFor": WEEK},
    "actions": {
        kind: {"threshold": "two-thirds"}
        for kind in (
            "add_member",
            "remove_member",
            "add_validator",
            "remove_validator",
            "allow_measurement",
            "allow_platform",
            "set_allow_virtual",
            "set_recovery_threshold",
            "set_constitution",
        )
    },
}
DEFAULT = parse(DEFAULT_JSON)
