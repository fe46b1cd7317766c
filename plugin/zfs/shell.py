"""A port for running ``zfs`` commands: locally here, over SSH or recorded elsewhere.

Like zettarepl's Shell, it only runs argument vectors (never a shell string), so dataset
names and property values cannot be interpreted by a shell.
"""

from __future__ import annotations

import subprocess
from typing import Protocol


class ShellError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


class Shell(Protocol):
    def run(self, args: list[str]) -> str:
        """Run ``args``; return stdout, raise ShellError on a non-zero exit."""
        ...


class LocalShell:
    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout

    def run(self, args: list[str]) -> str:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=self.timeout)
        if proc.returncode != 0:
            raise ShellError(args, proc.returncode, proc.stderr)
        return proc.stdout
