"""Coded, positioned policy errors.

Every problem found while loading a TracingPolicy is a :class:`PolicyError`
value with a short machine-readable ``code``, a human ``message``, the YAML
``path`` of the offending node (``spec.kprobes[0].selectors[1].matchArgs[0]
.operator``) and its 1-based ``line``/``col`` in ``file``. The loader collects
all problems of a document and raises them together as :class:`PolicyErrors`
(itself a ``PolicyError``, so one ``except PolicyError`` catches both; iterate
``err.errors`` to see each one).

``str(err)`` is always a single line: ``file:line:col: path: message``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerneye.errors import KerneyeError

if TYPE_CHECKING:
    from kerneye.policy.model import Loc

# The error codes, each with the one-line meaning shown in docs and `--help`
# output. Later stages (validate, compile) reuse this table; add a code here
# before raising it anywhere.
CODES: dict[str, str] = {
    "io": "the policy file or directory cannot be read",
    "yaml-parse": "the text is not well-formed YAML",
    "empty-document": "the file holds no YAML document",
    "multi-document": "the file holds more than one YAML document (one policy per file)",
    "duplicate-key": "a mapping repeats a key",
    "unknown-key": "a key is not part of the TracingPolicy schema at this place",
    "wrong-type": "a value has the wrong YAML type (string, integer, boolean, list, mapping)",
    "missing-field": "a required field is absent or empty",
    "bad-value": "a value has the right type but is not acceptable (format, range, combination)",
    "unknown-operator": "a selector operator is not one of the operators valid at this place",
    "unknown-action": "a matchActions/matchReturnActions action is not known",
    "unknown-arg-type": "an args/data/returnArg type is not a known argument type",
    "unknown-value": "a value from a closed set (namespace, capability, list type, ...) is not known",
    "unknown-list": "a list:NAME reference names no entry of spec.lists",
    "unknown-macro": "a selector uses a macro that spec.selectorsMacros does not define",
    "macro-conflict": "a selector field is set both by the selector and a macro, or by two macros",
    "bad-index": "an argument index does not refer to a declared argument",
    "limit": "a documented size limit is exceeded (selectors, values, tags, lengths ...)",
    "duplicate-name": "two policies (or two lists) share a name",
    "unsupported-filter": "a selector filter cannot be combined with Override (enforcement decides on less)",
    "unavailable-hook": "the policy uses a hook section this kerneye build or caller does not support",
}


class PolicyError(KerneyeError):
    """One problem in one policy, with its position.

    Attributes: ``code`` (a key of :data:`CODES`), ``message``, ``path``,
    ``file``, ``line`` and ``col`` (1-based; 0 when unknown).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        path: str = "",
        file: str = "<string>",
        line: int = 0,
        col: int = 0,
    ) -> None:
        if code not in CODES:  # a programming error, not a policy error
            raise ValueError(f"unregistered policy error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path or "<document>"
        self.file = file
        self.line = line
        self.col = col

    @property
    def errors(self) -> list[PolicyError]:
        """All problems carried by this exception (just itself here)."""
        return [self]

    @property
    def location(self) -> Loc:
        """The position as a :class:`kerneye.policy.model.Loc`."""
        from kerneye.policy.model import Loc

        return Loc(self.file, self.line, self.col, self.path)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, e.g. for the API or ``--output json``."""
        return {
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "file": self.file,
            "line": self.line,
            "col": self.col,
        }

    def __str__(self) -> str:
        msg = " ".join(self.message.split())  # always one line
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {msg}"

    def __repr__(self) -> str:
        return f"PolicyError({self.code!r}, {str(self)!r})"


class PolicyErrors(PolicyError):
    """Several problems at once. ``code``/``path``/``line``... are those of the
    first problem; ``errors`` lists them all in document order."""

    def __init__(self, errors: list[PolicyError]) -> None:
        if not errors:
            raise ValueError("PolicyErrors needs at least one error")
        first = errors[0]
        super().__init__(
            first.code, first.message, path=first.path, file=first.file, line=first.line, col=first.col
        )
        self._errors = list(errors)

    @property
    def errors(self) -> list[PolicyError]:
        return list(self._errors)

    def to_dict(self) -> dict[str, Any]:
        return {"errors": [e.to_dict() for e in self._errors]}

    def __str__(self) -> str:
        return "; ".join(PolicyError.__str__(e) for e in self._errors)

    def __repr__(self) -> str:
        return f"PolicyErrors({len(self._errors)} errors: {str(self)!r})"


def raise_collected(errors: list[PolicyError]) -> None:
    """Raise nothing, the single error, or a :class:`PolicyErrors`."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PolicyErrors(errors)
