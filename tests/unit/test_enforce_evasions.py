"""The evasion table (kerneye.enforce.evasions) names real kernel tests."""
from __future__ import annotations

import ast
import os

from kerneye.enforce.evasions import EVASIONS, OUTCOMES

MODULE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernel",
                      "test_enforce_evasion.py")


def _test_functions() -> set[str]:
    with open(MODULE) as f:
        tree = ast.parse(f.read())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_named_test_exists() -> None:
    names = _test_functions()
    missing = [e.test for e in EVASIONS if e.test not in names]
    assert not missing, f"evasions.py names tests that {MODULE} lacks: {missing}"


def test_every_evasion_test_is_in_the_table() -> None:
    listed = {e.test for e in EVASIONS}
    assert _test_functions() - listed == set()


def test_entries_are_well_formed() -> None:
    assert len({e.test for e in EVASIONS}) == len(EVASIONS), "one test per technique"
    for e in EVASIONS:
        assert e.outcome in OUTCOMES, e
        assert e.operation in ("exec", "open", "connect"), e
        assert e.technique and e.mechanism and e.reason, e
        assert e.to_dict()["test"] == e.test
