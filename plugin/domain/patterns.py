"""How policies match names: shell wildcards and regular expressions, in linear time.

A policy's regular expression is run against every VM name of every run, so it must never
be able to hang one: it is compiled with Google RE2 (``google-re2``), whose matching time
grows linearly with the name, whatever the pattern. RE2 refuses what cannot be matched that
way (backreferences, lookaround) and patterns whose compiled form would exceed
``REGEX_MEMORY`` bytes; both are refused as invalid input when a policy is saved. Names
compare ignoring case; a pattern may switch that off for a part with ``(?-i:...)``.
"""

from __future__ import annotations

import fnmatch
import functools
import re

import re2

REGEX_MEMORY = 1 << 20   # bytes RE2 may use for one compiled pattern


class PatternError(ValueError):
    """A pattern that cannot be used; the message says why in plain words."""


@functools.lru_cache(maxsize=1024)
def compiled_regex(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False   # the reason is raised to the caller, not printed on stderr
    options.max_mem = REGEX_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        if "perl operator" in reason or "escape sequence" in reason:
            reason += (" (backreferences and lookaround are not supported: they would let a "
                       "pattern take exponential time)")
        raise PatternError(f"invalid regular expression: {reason}") from None


def regex_matches(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the whole of ``name``, ignoring case."""
    return compiled_regex(pattern).fullmatch(name) is not None


@functools.lru_cache(maxsize=1024)
def _compiled_glob(pattern: str) -> re.Pattern[str]:
    # fnmatch's translation has no nested repetition: Python's engine runs it in linear time.
    return re.compile(fnmatch.translate(pattern.casefold()))


def glob_matches(pattern: str, name: str) -> bool:
    return _compiled_glob(pattern).match(name.casefold()) is not None


def regex_problem(pattern: str) -> str | None:
    try:
        compiled_regex(pattern)
    except PatternError as exc:
        return str(exc)
    return None


def glob_problem(pattern: str) -> str | None:
    # fnmatch takes an unclosed '[' literally; a user who typed one almost surely meant a set.
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                return (f"invalid wildcard: '[' at position {i} is never closed "
                        "(write '[[]' for a literal '[')")
            i = j
        i += 1
    return None
