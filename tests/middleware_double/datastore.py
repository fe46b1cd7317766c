"""``middlewared.sqlalchemy`` and the ``datastore`` service over a real SQLite file.

Mirrors, at TS-25.10.6:
- ``sqlalchemy.py``: the declarative ``Model`` (``sqlite_autoincrement``, naming convention),
  ``Column`` (NOT NULL unless said otherwise), ``JSON`` (text, ``type_()`` on bad data) and
  ``EncryptedText``. The real one encrypts with the NAS's pwenc secret
  (``plugins/pwenc.py``); this double uses a reversible encoding so tests can see that the
  column never holds the clear text, and that reads return it decrypted, as ``datastore.query``
  does for internal callers.
- ``plugins/datastore/read.py, write.py, schema.py, connection.py``: table names are the
  datastore names with '.' -> '_'; ``query(name, filters, options)`` with ``prefix``,
  ``extend`` (a method name called per row), ``order_by``, ``get``; ``insert`` fills column
  defaults and returns the new id; ``update``/``delete`` by id; ``execute(sql)`` runs raw SQL
  on the connection (no HA sync), which is how a plugin creates its own table.
- ``utils/filter_list``: the filter operators the plugin uses.
"""

from __future__ import annotations

import base64
import json as _json
import threading
from typing import Any

from sqlalchemy import JSON as NativeJSON  # noqa: F401 - re-exported like the real module
from sqlalchemy import (  # noqa: F401 - re-exported like the real module
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    text,
)
from sqlalchemy import Column as _Column
from sqlalchemy.orm import declarative_base
from sqlalchemy.types import TypeDecorator, UserDefinedType

_PWENC_TAG = "pwenc-double:"


class Base:
    __table_args__ = {"sqlite_autoincrement": True}


Model = declarative_base(cls=Base)
Model.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}


class Column(_Column):
    inherit_cache = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("nullable", False)
        super().__init__(*args, **kwargs)


def encrypt(value: str) -> str:
    return _PWENC_TAG + base64.b64encode(value.encode()).decode()


def decrypt(value: str) -> str:
    return base64.b64decode(value.removeprefix(_PWENC_TAG)).decode() if value.startswith(_PWENC_TAG) else ""


class EncryptedText(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TEXT"

    def bind_processor(self, dialect):
        return lambda v: None if v is None else (encrypt(v) if v else "")

    def result_processor(self, dialect, coltype):
        return lambda v: None if v is None else (decrypt(v) if v else "")


class JSON(TypeDecorator):
    impl = Text
    cache_ok = True

    def __init__(self, type_: type = dict, encrypted: bool = False) -> None:
        super().__init__()
        self.type = type_

    def process_bind_param(self, value, dialect):
        if value is None and self.type is not None:
            value = self.type()
        return _json.dumps(value)

    def process_result_value(self, value, dialect):
        try:
            return _json.loads(value)
        except Exception:
            return self.type() if self.type is not None else None


class JSONNeedingItsType(JSON):
    """26.0's ``sa.JSON``: the type argument is required (TS-26.0.0-BETA.3 ``sqlalchemy.py:76``)."""

    def __init__(self, type_: type, encrypted: bool = False) -> None:
        super().__init__(type_, encrypted)


# --- utils/filter_list -----------------------------------------------------------------------

_OPS = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "in": lambda a, b: a in b,
    "nin": lambda a, b: a not in b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
    "^": lambda a, b: isinstance(a, str) and a.startswith(b),
    "$": lambda a, b: isinstance(a, str) and a.endswith(b),
}


def _matches(row: dict[str, Any], f: list) -> bool:
    if f[0] == "OR":
        return any(_matches(row, sub) for sub in f[1])
    name, op, value = f
    return _OPS[op](row.get(name), value)


def filter_list(rows: list[dict[str, Any]], filters: list | None, options: dict | None) -> Any:
    options = options or {}
    out = [r for r in rows if all(_matches(r, f) for f in (filters or []))]
    for key in reversed(options.get("order_by") or []):
        name = key.lstrip("-")
        out.sort(key=lambda r, k=name: (r.get(k) is None, r.get(k)), reverse=key.startswith("-"))
    if options.get("offset"):
        out = out[options["offset"]:]
    if options.get("limit"):
        out = out[:options["limit"]]
    if options.get("select"):
        out = [{k: r[k] for k in options["select"] if k in r} for r in out]
    if options.get("count"):
        return len(out)
    if options.get("get"):
        if not out:
            from .framework import CallError
            raise CallError("no row matches")  # real: MatchNotFound
        return out[0]
    return out


class DatastoreService:
    """The private ``datastore`` service: one SQLite connection used by one thread at a time
    (the real service runs on a one-thread pool, ``Config.thread_pool``; a lock here)."""

    def __init__(self, middleware: Any, path: str) -> None:
        self.middleware = middleware
        self.engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
        self.connection = self.engine.connect()
        self._lock = threading.RLock()

    def _locked(self, statement: Any) -> Any:
        with self._lock:
            return self.connection.execute(statement)

    def create_tables(self, *names: str) -> None:
        """What alembic migrations did at install time for the stock tables."""
        Model.metadata.create_all(self.engine, tables=[self._table(n) for n in names])

    def _table(self, name: str):
        return Model.metadata.tables[name.replace(".", "_").lower()]

    def execute(self, *args: Any) -> Any:
        with self._lock:
            return self.connection.execute(text(args[0]) if isinstance(args[0], str) else args[0], *args[1:])

    def query(self, name: str, filters: list | None = None, options: dict | None = None) -> Any:
        options = dict(options or {})
        table = self._table(name)
        prefix = options.get("prefix") or ""
        rows = []
        for row in self._locked(table.select()).mappings():
            rows.append({(k[len(prefix):] if prefix and k.startswith(prefix) else k): v
                         for k, v in dict(row).items()})
        if options.get("extend"):
            rows = [self.middleware.call_sync(options["extend"], r) for r in rows]
        return filter_list(rows, filters, options)

    def config(self, name: str, options: dict | None = None) -> dict[str, Any]:
        return self.query(name, [], dict(options or {}, get=True))

    def insert(self, name: str, data: dict[str, Any], options: dict | None = None) -> int:
        table = self._table(name)
        prefix = (options or {}).get("prefix") or ""
        values = {prefix + k if prefix + k in table.c else k: v for k, v in data.items()}
        for column in table.c:
            if column.default is not None:
                default = column.default.arg
                values.setdefault(column.name, default(None) if callable(default) else default)
        result = self._locked(table.insert().values(**values))
        return int(result.inserted_primary_key[0])

    def update(self, name: str, id_: int, data: dict[str, Any], options: dict | None = None) -> int:
        table = self._table(name)
        prefix = (options or {}).get("prefix") or ""
        values = {prefix + k if prefix + k in table.c else k: v for k, v in data.items()}
        result = self._locked(table.update().values(**values).where(table.c.id == id_))
        if result.rowcount != 1:
            raise RuntimeError("NoRowsWereUpdatedException")
        return id_

    def delete(self, name: str, id_: int, options: dict | None = None) -> bool:
        table = self._table(name)
        self._locked(table.delete().where(table.c.id == id_))
        return True
