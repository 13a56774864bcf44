"""The only package that talks to libbpf and the bpf(2) syscall.

Everything above it sees specs (`ObjectSpec`), loaded objects
(`LoadedObject`), links and ring-buffer readers, never raw pointers.
"""
