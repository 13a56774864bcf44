#!/usr/bin/env python3
"""Regenerate src/kerneye/abi/_generated.py from bpf/.output/abi_anchor.bpf.o."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from kerneye.abi.gen import generate  # noqa: E402

if __name__ == "__main__":
    text = generate(os.path.join(ROOT, "bpf/.output/abi_anchor.bpf.o"),
                    os.path.join(ROOT, "bpf/include/kerneye/abi.h"))
    with open(os.path.join(ROOT, "src/kerneye/abi/_generated.py"), "w") as f:
        f.write(text)
