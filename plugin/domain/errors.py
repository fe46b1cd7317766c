"""Errors the domain and store layers raise for bad input.

Every rejected input names the field and the problem in plain words, so the middleware API
(``ValidationErrors.add(field, message)``), the CLI and the UI can show it as is. Nothing
here carries a traceback's worth of internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


def printable(text: str) -> str:
    """``text`` with control characters written as escapes: input echoed in a message on a
    terminal must never move the cursor, clear the screen or forge a line of output (the
    API keeps the text as it is: JSON carries it safely)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class FieldError(NamedTuple):
    """One problem with one field: ``("policy.match.name_regex", "invalid regular ...")``."""

    field: str
    message: str


class InvalidInput(ValueError):
    """Input rejected; ``errors`` lists every problem found, not just the first."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors: list[FieldError] = [FieldError(str(f), str(m)) for f, m in errors]
        if not self.errors:
            # An empty error list would be a bug in the caller: refuse it loudly.
            raise ValueError("InvalidInput needs at least one (field, message) pair")
        super().__init__(str(self))

    @classmethod
    def single(cls, field: str, message: str) -> InvalidInput:
        return cls([(field, message)])

    def __str__(self) -> str:
        # For terminals: each field and message escaped (the errors keep the text as given).
        shown = [f"{printable(field)}: {printable(message)}" for field, message in self.errors]
        if len(shown) == 1:
            return shown[0]
        return "\n".join([f"{len(shown)} problems:", *(f"  {line}" for line in shown)])


class NotFound(LookupError):
    """A stored object (policy, endpoint, ...) with this id or name does not exist."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} does not exist")


class StateError(Exception):
    """The product's own state (journal, policy store) cannot be used. The message names the
    file, what is wrong with it and how to repair it; it never carries a traceback."""
