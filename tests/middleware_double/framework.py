"""The service framework of middlewared 25.10, reduced to what the plugin uses.

Each piece mirrors a file of truenas/middleware at tag TS-25.10.6
(``src/middlewared/middlewared/...``); the rules that matter to a plugin are kept, the rest
(roles, audit, events, REST, process pools) is left out on purpose:

- ``service/base.py``: ``service_config`` defaults, ``ServiceBase`` turning ``class Config``
  into ``_config``, and ``validate_api_method_schema_class_names`` (public methods need
  ``@api_method``; models named ``{Service}{Method}Args/Result``).
- ``service/decorators.py``: ``private``, ``job`` (sets ``fn._job``; innermost decorator),
  ``periodic``.
- ``api/base/decorator.py``: ``api_method`` with ``check_model_module`` (public models must
  live in ``middlewared.api.*``, private ones must not), the one-field ``result`` rule, the
  "public methods need roles" rule, and argument validation through the model on every call
  (``api/base/handler/accept.py``: pydantic errors become ``ValidationErrors``).
- ``api/base/model.py``: ``BaseModel`` with the same ``model_config`` (extra forbid, strict,
  ``str_max_length=1024``).
- ``service/crud_service.py`` / ``config_service.py``: the generated ``query``,
  ``get_instance``, ``config`` models, ``create/update/delete`` -> ``do_*``, ``role_prefix``
  and ``entry`` required for public services, ``datastore_extend``.
- ``service/compound_service.py``: several classes in one namespace; a duplicate method
  name is a ``RuntimeError`` (middlewared would not start).
- ``service_exception.py``: ``CallError``, ``ValidationError(s)``, ``InstanceNotFound``.
- ``job.py``: ``Job`` with ``set_progress``, ``wait_sync``, states.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import functools
import inspect
import itertools
import threading
from typing import Annotated, Any

from pydantic import BaseModel as PydanticBaseModel
from pydantic import ConfigDict, Field, Secret, create_model
from pydantic_core import ValidationError as PydanticValidationError

# --- service_exception.py -------------------------------------------------------------------


class CallException(Exception):
    pass


class CallError(CallException):
    def __init__(self, errmsg: str, errno: int = errno_mod.EFAULT, extra: Any = None) -> None:
        self.errmsg, self.errno, self.extra = errmsg, errno, extra
        super().__init__(errmsg)

    def __str__(self) -> str:
        return f"[{errno_mod.errorcode.get(self.errno, 'EUNKNOWN')}] {self.errmsg}"


class NetworkActivityDisabled(CallError):
    def __init__(self, errmsg: str) -> None:
        super().__init__(errmsg, errno_mod.ENONET)


class ValidationError(CallException):
    def __init__(self, attribute: str, errmsg: str, errno: int = errno_mod.EINVAL) -> None:
        self.attribute, self.errmsg, self.errno = attribute, errmsg, errno
        super().__init__(f"{attribute}: {errmsg}")

    def __str__(self) -> str:
        return f"[{errno_mod.errorcode.get(self.errno, 'EUNKNOWN')}] {self.attribute}: {self.errmsg}"


class InstanceNotFound(ValidationError):
    """A validation error without a field (service_exception.py:115-118): the websocket
    sends it as "Invalid params" with ``extra`` ``[[None, message, ENOENT]]``."""

    def __init__(self, errmsg: str) -> None:
        super().__init__(None, errmsg, errno_mod.ENOENT)


class ValidationErrors(CallException):
    def __init__(self, errors: list[ValidationError] | None = None) -> None:
        self.errors = errors or []
        super().__init__(self.errors)

    def add(self, attribute: str, errmsg: str, errno: int = errno_mod.EINVAL) -> None:
        self.errors.append(ValidationError(attribute, errmsg, errno))

    def check(self) -> None:
        if self:
            raise self

    def __iter__(self):
        for e in self.errors:
            yield e.attribute, e.errmsg, e.errno

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __str__(self) -> str:
        return "".join(str(e) + "\n" for e in self.errors)


# --- api/base/model.py ------------------------------------------------------------------------


class BaseModel(PydanticBaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=1024,
                              use_attribute_docstrings=True, arbitrary_types_allowed=True)


def _generated(name: str, module: str, **fields: Any) -> type[BaseModel]:
    return create_model(name, __base__=(BaseModel,), __module__=module,
                        **{k: Annotated[v, Field()] if not isinstance(v, tuple) else v
                           for k, v in fields.items()})


class QueryOptions(BaseModel):
    get: bool = False
    count: bool = False
    limit: int = 0
    offset: int = 0
    order_by: list[str] = []
    select: list[str] = []
    extra: dict = {}
    force_sql_filters: bool = False


QueryOptions.__module__ = "middlewared.api.v25_10_5.common"
QueryArgs = _generated("QueryArgs", "middlewared.api.v25_10_5.common",
                       filters=(list, Field(default=[])),
                       options=(QueryOptions, Field(default_factory=QueryOptions)))


def query_result(entry: type[BaseModel]) -> type[BaseModel]:
    return _generated(entry.__name__.removesuffix("Entry") + "QueryResult", entry.__module__,
                      result=list[dict] | dict | int)


# --- api/base/decorator.py and handler/accept.py ------------------------------------------------

CONFIG_CRUD_METHODS = frozenset(["do_create", "do_update", "do_delete", "create", "update", "delete",
                                 "query", "get_instance", "config"])
CRUD_GENERATED = {"middlewared.service.crud_service", "middlewared.service.config_service"}


def check_model_module(model: type[BaseModel], private: bool) -> None:
    module_name = model.__module__
    if module_name in CRUD_GENERATED:
        return
    if private:
        if model.__name__ == "QueryArgs" or model.__name__.endswith("QueryResult"):
            return
        if module_name.startswith("middlewared.api."):
            raise ValueError("Private methods must have their accepts/returns models defined in the "
                             f"corresponding plugin class. {model.__name__} is defined in {module_name}.")
    elif not module_name.startswith("middlewared.api."):
        raise ValueError("Public methods must have their accepts/returns models defined in middlewared.api "
                         f"package. {model.__name__} is defined in {module_name}.")


def accept_params(model: type[BaseModel], args: list) -> list:
    """As TS-25.10.6 ``api/base/handler/accept.py`` ``accept_params`` (:9-31): too many arguments is
    an error on "" (:47-50); each pydantic error is named by its location alone, the argument field
    first (``".".join(loc)``, :70-84), e.g. ``vmware_coord_policy_create.ladder.0`` -- the model
    class's name is no part of it (as the real framework was seen to answer, tests/real_truenas)."""
    fields = list(model.model_fields)
    if len(args) > len(fields):
        verrors = ValidationErrors()
        verrors.add("", f"Too many arguments (expected {len(fields)}, found {len(args)})")
        raise verrors
    try:
        instance = model(**dict(zip(fields, args, strict=False)))
    except PydanticValidationError as e:
        verrors = ValidationErrors()
        for error in e.errors():
            loc, msg = list(map(str, error["loc"])), error["msg"]
            if error["type"] == "union_tag_not_found":   # accept.py:77-79
                loc.append(str(error["ctx"]["discriminator"]).strip("'"))
                msg = "Field required"
            verrors.add(".".join(loc), msg)
        raise verrors from None
    return [_exposed(getattr(instance, f)) for f in fields]


def _exposed(value: Any) -> Any:
    """What validate_model(..., expose_secrets=True) hands the method: secrets unwrapped."""
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, PydanticBaseModel):
        return value.model_dump()
    return value


def calculate_args_index(f) -> int:
    """schema/processor.py: the leading parameters, read from the code object, must be
    ``self`` then ``job`` for a job (``app``/``audit_callback`` are not used by the plugin)."""
    signature_args = list(f.__code__.co_varnames)[:f.__code__.co_argcount]
    expected = (["self"] if signature_args and signature_args[0] == "self" else [])
    expected += ["job"] if hasattr(f, "_job") else []
    if signature_args[:len(expected)] != expected:
        raise RuntimeError(f"Invalid method signature for {f!r}. Its arguments list must start with "
                           f"{', '.join(expected)!r}. It is {', '.join(signature_args)!r}")
    return len(expected)


def api_method(accepts: type[BaseModel], returns: type[BaseModel], *, roles: list[str] | None = None,
               private: bool = False, cli_private: bool = False, audit: str | None = None,
               **_ignored: Any):
    if list(returns.model_fields) != ["result"]:
        raise TypeError("`returns` model must only have one field called `result`")
    check_model_module(accepts, private)
    check_model_module(returns, private)

    def wrapper(func):
        args_index = calculate_args_index(func)
        if private and roles:
            raise ValueError("Cannot set roles, no authorization, or no authentication on private methods.")
        if not private and not roles and func.__name__ not in CONFIG_CRUD_METHODS:
            raise ValueError(f"{func.__name__}: Role definition is required for public API endpoints")

        if asyncio.iscoroutinefunction(func):
            @functools.wraps(func)
            async def wrapped(*args):
                return await func(*args[:args_index], *accept_params(accepts, list(args[args_index:])))
        else:
            @functools.wraps(func)
            def wrapped(*args):
                return func(*args[:args_index], *accept_params(accepts, list(args[args_index:])))
        wrapped.roles = roles or []
        wrapped._private = private
        wrapped._cli_private = cli_private
        wrapped.audit = audit
        wrapped.new_style_accepts = accepts
        wrapped.new_style_returns = returns
        return wrapped

    return wrapper


# --- service/decorators.py ---------------------------------------------------------------------


def private(fn):
    fn._private = True
    return fn


def job(lock=None, lock_queue_size=5, logs=False, process=False, pipes=None, check_pipes=True,
        transient=False, description=None, abortable=False, read_roles=None):
    def check_job(fn):
        fn._job = {"lock": lock, "lock_queue_size": lock_queue_size, "logs": logs, "process": process,
                   "pipes": pipes or [], "check_pipes": check_pipes, "transient": transient,
                   "description": description, "abortable": abortable, "read_roles": read_roles or []}
        return fn
    return check_job


def periodic(interval: float, run_on_start: bool = True):
    def wrapper(fn):
        fn._periodic = (interval, run_on_start)
        return fn
    return wrapper


# --- job.py ------------------------------------------------------------------------------------


class Job:
    """A running method: ``set_progress`` as in job.py; the double keeps every progress step."""

    _ids = itertools.count(1)

    def __init__(self, method_name: str) -> None:
        self.id = next(self._ids)
        self.method = method_name
        self.state = "WAITING"
        self.progress: dict[str, Any] = {"percent": 0, "description": "", "extra": None}
        self.progress_history: list[tuple[int | None, str | None]] = []
        self.result: Any = None
        self.error: str | None = None
        self.exc: BaseException | None = None
        self._done = threading.Event()

    def set_progress(self, percent: float | None = None, description: str | None = None,
                     extra: Any = None) -> None:
        if percent is not None:
            self.progress["percent"] = percent
        if description:
            self.progress["description"] = description
        self.progress_history.append((percent, description))

    def _finish(self, result: Any = None, exc: BaseException | None = None) -> None:
        self.result, self.exc = result, exc
        self.state = "FAILED" if exc else "SUCCESS"
        self.error = str(exc) if exc else None
        self._done.set()

    def wait_sync(self, timeout: float | None = None, raise_error: bool = False) -> Any:
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.method}) did not finish")
        if raise_error and self.exc is not None:
            raise self.exc
        return self.result


# --- service/base.py, service.py, crud_service.py, config_service.py -------------------------


def service_config(klass: type, config: dict[str, Any]) -> type:
    namespace = klass.__name__.removesuffix("Service").lower()
    attrs = {"datastore": None, "datastore_prefix": "", "datastore_extend": None,
             "datastore_extend_context": None, "datastore_primary_key": "id", "entry": None,
             "event_send": True, "namespace": namespace, "private": False, "cli_namespace": None,
             "cli_private": False, "role_prefix": None, "verbose_name": klass.__name__.replace("Service", "")}
    attrs.update({k: v for k, v in config.items() if not k.startswith("_")})
    return type("Config", (), attrs)


WRAPPED_LATER = {"ConfigService": {"config", "update"},
                 "CRUDService": {"query", "get_instance", "create", "update", "delete"}}


def validate_api_method_schema_class_names(klass: type) -> None:
    service_name = klass.__name__.removesuffix("Service")
    errors = []
    for name, method in inspect.getmembers(klass, predicate=inspect.isfunction):
        if name.startswith("_") or getattr(method, "_private", False) or klass._config.private:
            continue
        if any(name in WRAPPED_LATER.get(b.__name__, set()) for b in (klass, *klass.__bases__)):
            continue
        if not hasattr(method, "new_style_accepts"):
            raise RuntimeError(f"API method {method!r} is public, but has no @api_method.")
        method_name = name[3:] if name in ("do_create", "do_update", "do_delete") else name
        camel = "".join(w.capitalize() for w in method_name.split("_"))
        if method.new_style_accepts.__name__ not in ("QueryArgs", f"{service_name}{camel}Args"):
            errors.append(f"{name}: expected {service_name}{camel}Args, "
                          f"got {method.new_style_accepts.__name__}")
        if method.new_style_returns.__name__ != f"{service_name}{camel}Result":
            errors.append(f"{name}: expected {service_name}{camel}Result, "
                          f"got {method.new_style_returns.__name__}")
    if errors:
        raise RuntimeError(f"Service {klass.__name__} has API method schema class name validation errors:\n"
                           + "\n".join(errors))


class ServiceBase(type):
    def __new__(mcs, name, bases, attrs):
        if name == "Service" and bases == ():
            return super().__new__(mcs, name, bases, attrs)
        config = attrs.pop("Config", None)
        klass = super().__new__(mcs, name, bases, attrs)
        klass._config_specified = ({k: v for k, v in config.__dict__.items() if not k.startswith("_")}
                                   if config else {})
        klass._config = service_config(klass, klass._config_specified)
        validate_api_method_schema_class_names(klass)
        return klass


class Service(metaclass=ServiceBase):
    def __init__(self, middleware: Any) -> None:
        import logging
        self.logger = logging.getLogger(type(self).__name__)
        self.middleware = middleware


class CRUDServiceMetabase(ServiceBase):
    def __new__(mcs, name, bases, attrs):
        klass = super().__new__(mcs, name, bases, attrs)
        if name == "CRUDService":
            return klass
        config = klass._config
        if not config.private:
            if not config.role_prefix:
                raise ValueError(f"{config.namespace}: public CRUDService must have role_prefix defined")
            if not config.entry:
                raise ValueError(f"{config.namespace}: public CRUDService must have entry defined")
        if config.entry is not None:
            entry = config.entry
            if not hasattr(klass.query, "new_style_accepts"):
                klass.query = api_method(QueryArgs, query_result(entry), private=config.private)(klass.query)
            stem = entry.__name__.removesuffix("Entry")
            klass.get_instance = api_method(
                _generated(f"{stem}GetInstanceArgs", entry.__module__,
                           id=entry.model_fields["id"].annotation,
                           options=(QueryOptions, Field(default_factory=QueryOptions))),
                _generated(f"{stem}GetInstanceResult", entry.__module__, result=entry),
                private=config.private)(klass.get_instance)
        return klass


class CRUDService(Service, metaclass=CRUDServiceMetabase):
    def query(self, filters, options):
        options = dict(options or {})
        options["extend"] = self._config.datastore_extend
        options["prefix"] = self._config.datastore_prefix
        return self.middleware.call_sync("datastore.query", self._config.datastore, filters or [], options)

    def create(self, data):
        return self.middleware.call_sync(f"{self._config.namespace}.do_create", data)

    def update(self, id_, data):
        return self.middleware.call_sync(f"{self._config.namespace}.do_update", id_, data)

    def delete(self, id_, *args):
        return self.middleware.call_sync(f"{self._config.namespace}.do_delete", id_, *args)

    def get_instance(self, id_, options=None):
        rows = self.middleware.call_sync(f"{self._config.namespace}.query",
                                         [[self._config.datastore_primary_key, "=", id_]], options or {})
        if not rows:
            raise InstanceNotFound(f"{self._config.verbose_name} {id_} does not exist")
        return rows[0]


class ConfigServiceMetabase(ServiceBase):
    def __new__(mcs, name, bases, attrs):
        klass = super().__new__(mcs, name, bases, attrs)
        if name == "ConfigService":
            return klass
        config = klass._config
        if not config.private and not config.role_prefix:
            raise ValueError(f"{config.namespace}: public ConfigService must have role_prefix defined")
        if config.entry is None:
            if not config.private:
                raise ValueError(f"{config.namespace}: public ConfigService must have entry defined")
        else:
            stem = config.entry.__name__.removesuffix("Entry")
            klass.config = api_method(_generated(f"{stem}ConfigArgs", config.entry.__module__),
                                      _generated(f"{stem}ConfigResult", config.entry.__module__,
                                                 result=config.entry))(klass.config)
        return klass


class ConfigService(Service, metaclass=ConfigServiceMetabase):
    def config(self):
        ds = self._config.datastore
        options = {"extend": self._config.datastore_extend, "prefix": self._config.datastore_prefix}
        rows = self.middleware.call_sync("datastore.query", ds, [], options)
        if not rows:
            self.middleware.call_sync("datastore.insert", ds, {})
            rows = self.middleware.call_sync("datastore.query", ds, [], options)
        return rows[0]

    def update(self, data):
        return self.middleware.call_sync(f"{self._config.namespace}.do_update", data)


ABSTRACT_SERVICES = (CRUDService, ConfigService)


class CompoundService(Service):
    """Several classes of one namespace; a method name defined twice stops middlewared."""

    def __init__(self, middleware: Any, parts: list[Service]) -> None:
        super().__init__(middleware)
        self.parts = parts
        self._config = parts[0]._config
        seen: dict[str, Service] = {}
        for part in parts:
            for name in dir(part):
                if name.startswith("_") or not callable(getattr(part, name)):
                    continue
                if name in seen:
                    raise RuntimeError(f"Duplicate method name {name} for service parts "
                                       f"{seen[name]} and {part}")
                seen[name] = part
                setattr(self, name, getattr(part, name))
