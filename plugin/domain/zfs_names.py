"""What ZFS accepts as a dataset or snapshot name (pure), so a bad name is refused before
anything is done to any VM rather than by ``zfs snapshot`` after every VM was prepared.

The rules are OpenZFS's ``zfs_namecheck``: components of letters, digits and ``_ - . :``
and space, separated by ``/``; a pool name starting with a letter; no component ``.`` or
``..``; the whole name, snapshot included, shorter than 256 bytes.
"""

from __future__ import annotations

import re

MAX_NAME_BYTES = 255
_COMPONENT = re.compile(r"[A-Za-z0-9_.: -]+")
_RESERVED_POOLS = re.compile(r"(mirror|raidz\d*|draid\d*|spare|log)$|c\d")


def _component_problem(part: str, what: str) -> str | None:
    if not part:
        return f"has an empty {what}"
    bad = sorted({c for c in part if not _COMPONENT.fullmatch(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"{what} '{part}' contains {shown}: ZFS allows letters, digits, '_', '-', '.', ':' and space"
    if part in (".", ".."):
        return f"{what} '{part}' is not allowed"
    return None


def dataset_problem(name: str) -> str | None:
    """Why ``name`` cannot be a dataset (or zvol) name, or None."""
    if not name:
        return "must not be empty"
    if name.startswith("-"):
        return "must not start with '-'"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"is longer than ZFS's {MAX_NAME_BYTES} bytes"
    if "@" in name or "#" in name:
        return "must be a dataset, without '@snapshot' or '#bookmark'"
    parts = name.split("/")
    if not parts[0][:1].isalpha():
        return "must start with the pool's name, which starts with a letter"
    if _RESERVED_POOLS.match(parts[0]):
        return f"'{parts[0]}' is a name ZFS reserves, not a pool"
    for part in parts:
        problem = _component_problem(part, "component")
        if problem:
            return problem
    return None


def snapshot_problem(dataset: str, name: str) -> str | None:
    """Why ``dataset@name`` cannot be a snapshot, or None (the dataset checked separately)."""
    problem = _component_problem(name, "name")
    if problem:
        return problem.replace("has an empty name", "must not be empty")
    if len(f"{dataset}@{name}".encode()) > MAX_NAME_BYTES:
        return f"makes '{dataset}@{name[:20]}...' longer than ZFS's {MAX_NAME_BYTES} bytes"
    return None
