"""SQLite's and the file system's failures in plain words, for the files this product keeps
(the journal, the policy store): which file, what is wrong, what to do about it."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

FULL_BELOW = 64 * 1024   # bytes free under which a write error is the disk being full


def corrupt(exc: BaseException) -> bool:
    text = str(exc)
    return "not a database" in text or "malformed" in text or "file is encrypted" in text


def _full(path: Path, exc: BaseException) -> bool:
    """SQLite reports a full disk as an I/O error when it cannot grow its shared-memory file
    (SQLITE_IOERR_SHMSIZE): ask the file system."""
    if not str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_IOERR"):
        return False
    try:
        return shutil.disk_usage(path.parent).free < FULL_BELOW
    except OSError:
        return False


def explain(path: Path, exc: BaseException, *, corrupt_fix: str) -> str:
    """``<path> <what is wrong and the fix>``."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if corrupt(exc):
        why = f"is not a usable SQLite database ({text}); {corrupt_fix}"
    elif "readonly" in text or "read-only" in text or code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = f"cannot be written ({text}): make {path.parent} writable by this user"
    elif "disk is full" in text or code in (errno.ENOSPC, errno.EDQUOT) or _full(path, exc):
        why = f"cannot be written: the file system holding {path.parent} is full; free some space"
    elif "unable to open" in text:
        why = f"cannot be opened ({text}): check that {path.parent} exists and is writable"
    elif "locked" in text:
        why = f"is locked by another process for too long ({text})"
    else:
        why = f"failed: {type(exc).__name__}: {text}"
    return f"{path} {why}"
