"""The only package that knows byte layouts of kernel messages.

`types` re-exports `_generated`, the ctypes mirror of
bpf/include/kerneye/abi.h generated from BTF by tools/gen_abi.py (`make abi`);
`btfcheck` verifies it against the shipped objects (in tests and at agent
start). Importing this package itself loads nothing, so the generator can
run while the mirror is stale or broken.
"""
