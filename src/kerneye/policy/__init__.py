"""Tetragon-compatible TracingPolicy front end: typed model and strict loader.

Stage one of the policy pipeline (STYLE.md §6.5 principle 7): ``loader``
turns YAML into the frozen dataclasses of ``model`` or raises a coded
``errors.PolicyError`` that points at the offending line and column. Nothing
here touches the kernel; symbol, BTF and kernel-version checks belong to the
later validate/compile stages that consume the model.
"""
