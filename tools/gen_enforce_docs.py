#!/usr/bin/env python3
"""Regenerate the generated tables of docs/concepts/enforcement.md: the
capability table (kerneye.enforce.capabilities) and the evasion table
(kerneye.enforce.evasions). Only the text between each BEGIN/END GENERATED
marker pair is replaced; the rest of the page is written by hand.

    python3 tools/gen_enforce_docs.py          # rewrite the doc
    python3 tools/gen_enforce_docs.py --check  # exit 1 if it is stale
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from kerneye.enforce.capabilities import render_markdown  # noqa: E402
from kerneye.enforce.evasions import EVASIONS  # noqa: E402

DOC = os.path.join(ROOT, "docs", "concepts", "enforcement.md")
BEGIN = "<!-- BEGIN GENERATED: tools/gen_enforce_docs.py from src/kerneye/enforce/capabilities.py -->\n"
BEGIN_EVASIONS = "<!-- BEGIN GENERATED: tools/gen_enforce_docs.py from src/kerneye/enforce/evasions.py -->\n"
END = "<!-- END GENERATED -->\n"


def render_evasions() -> str:
    lines = ["| operation | technique | outcome | decided by | why | test |", "|---|---|---|---|---|---|"]
    for e in EVASIONS:
        outcome = "**blocked**" if e.outcome == "blocked" else e.outcome
        lines.append(f"| {e.operation} | {e.technique} | {outcome} | {e.mechanism} | {e.reason} | `{e.test}` |")
    return "\n".join(lines) + "\n"


def _replace(text: str, begin: str, body: str) -> str:
    try:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"{DOC}: the generated-section markers {begin.strip()} are missing") from None
    return head + begin + body + END + tail


def regenerate(text: str) -> str:
    return _replace(_replace(text, BEGIN, render_markdown()), BEGIN_EVASIONS, render_evasions())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the doc is stale")
    args = ap.parse_args()
    with open(DOC) as f:
        old = f.read()
    new = regenerate(old)
    if args.check:
        if new != old:
            print(f"{DOC} is stale: run python3 tools/gen_enforce_docs.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        with open(DOC, "w") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
