"""docs/concepts/enforcement.md carries the table generated from
kerneye.enforce.capabilities; it must be current."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from kerneye.enforce import capabilities as C

ROOT = Path(__file__).resolve().parents[2]


def _gen():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_enforce_docs", ROOT / "tools" / "gen_enforce_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_doc_matches_the_capability_map() -> None:
    gen = _gen()
    text = Path(gen.DOC).read_text()
    assert gen.regenerate(text) == text, "docs/concepts/enforcement.md is stale: run python3 tools/gen_enforce_docs.py"


def test_every_operation_lists_known_mechanisms_in_order_of_preference() -> None:
    # what prevents and is implemented first (in the order kerneye prefers),
    # then what is planned, then reactions
    rank = {"implemented": 0, "planned": 1, "action": 2}
    for op, caps in C.CAPABILITIES.items():
        assert caps, op
        keys = [c.mechanism for c in caps]
        assert set(keys) <= set(C.MECHANISMS), op
        assert len(set(keys)) == len(keys), op
        ranks = [rank[c.status] for c in caps]
        assert ranks == sorted(ranks), f"{op}: implemented, planned, action is the order"
        for c in caps:
            assert c.operation == op
            assert c.prevents in ("yes", "reaction")
            assert c.status in ("implemented", "planned", "action")
            assert (c.status == "implemented") == bool(c.module), op
            assert c.prevents == "reaction" or c.mechanism != "signal"


def test_implemented_modules_exist() -> None:
    for caps in C.CAPABILITIES.values():
        for c in caps:
            if c.module:
                assert importlib.util.find_spec(c.module) is not None, c.module


def test_best_picks_the_strongest_available() -> None:
    here = {"fanotify", "cgroup-bpf", "signal"}
    assert C.best("file open", here).mechanism == "fanotify"  # type: ignore[union-attr]
    assert C.best("connect", here).mechanism == "cgroup-bpf"  # type: ignore[union-attr]
    assert C.best("file open", {"bpf-lsm", "fanotify"}).mechanism == "bpf-lsm"  # type: ignore[union-attr]
    assert C.best("kernel module load", here) is None  # only a reaction is left
    assert C.best("exec", lambda m: m == "fanotify").hook.startswith("`FAN_OPEN_EXEC_PERM`")  # type: ignore[union-attr]
