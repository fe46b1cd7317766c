"""Permissive placeholders: what a stubbed C-library module hands out for any attribute.

middlewared imports these modules at the top of plugin files it never runs here (SMB,
directory services, enclosures, VMs...). Their names are used at import time as base
classes, exception types in ``except`` clauses, enum members, decorators and type hints, so
a placeholder is all of those: an ``Exception`` subclass whose class and instances return
further placeholders for any attribute, can be called, iterated (empty), used as a context
manager and combined with ``|``. ALL_CAPS names are distinct ints (C constants feeding
``enum.IntEnum`` definitions). Calling into one at run time does nothing useful, which is
the point: none of that code is on the path this suite exercises.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Any


class Constant(int):
    """An ALL_CAPS name: a distinct int that also looks like an enum member (``.name``/``.value``)."""

    name: str

    def __getattr__(self, attr: str) -> Any:
        if attr == "value":
            return int(self)
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return placeholder(f"{self.name}.{attr}")()


def _constant(qualname: str) -> Constant:
    value = Constant(zlib.crc32(qualname.encode()) % 1_000_000 + 1000)
    value.name = qualname.rsplit(".", 1)[-1]
    return value


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = (
            _constant(f"{cls.__qualname__}.{name}")
            if name.isupper()
            else placeholder(f"{cls.__qualname__}.{name}")
        )
        setattr(cls, name, value)
        return value

    def __iter__(cls) -> Any:
        return iter(())

    def __len__(cls) -> int:
        return 0


class Placeholder(Exception, metaclass=_PlaceholderMeta):  # noqa: N818 - it stands in for anything
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return placeholder(f"{type(self).__qualname__}.{name}")()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return type(self)()

    def __iter__(self) -> Any:
        return iter(())

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __bool__(self) -> bool:
        return False


def placeholder(qualname: str) -> type:
    name = qualname.rsplit(".", 1)[-1]
    return _PlaceholderMeta(
        name, (Placeholder,), {"__qualname__": qualname, "__module__": qualname.split(".")[0]}
    )


class AutoModule(ModuleType):
    """A module whose every attribute is a placeholder (or a constant for ALL_CAPS names)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = (
            _constant(f"{self.__name__}.{name}") if name.isupper() else placeholder(f"{self.__name__}.{name}")
        )
        setattr(self, name, value)
        return value
