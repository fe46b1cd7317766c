"""Reading what people hand the command line: files and JSON/TOML documents, bounded, with
every problem named by its field (never a traceback, never a hang on ``/dev/zero``)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, BinaryIO

from ..domain.errors import InvalidInput

MAX_DOCUMENT_BYTES = 1 << 20   # a configuration or a policy is a few kilobytes


def read_file(path: Path, field: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A regular file's text (UTF-8), at most ``max_bytes``."""
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            raise InvalidInput.single(field, f"{path} {what}")
        with path.open("rb") as handle:
            return decode(_bounded(handle, field, max_bytes), field, str(path))
    except OSError as exc:
        raise InvalidInput.single(field, f"cannot read {path}: {exc.strerror or exc}") from None


def read_stream(stream: BinaryIO, field: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    return decode(_bounded(stream, field, max_bytes), field, "standard input")


def _bounded(stream: BinaryIO, field: str, max_bytes: int) -> bytes:
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInput.single(field, f"is larger than {max_bytes // 1024} KiB")
    return data


def decode(data: bytes, field: str, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput.single(field, f"{where} is not UTF-8 text (byte {exc.start})") from None


def parse_json(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput.single(field, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput.single(field, "is nested too deeply") from None
    except ValueError as exc:   # an integer of thousands of digits
        raise InvalidInput.single(field, f"holds a number that is too large ({exc})") from None


def parse_toml(text: str, field: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput.single(field, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidInput.single(field, "is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput.single(field, f"holds a number that is too large ({exc})") from None
