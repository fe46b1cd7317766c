"""``middlewared.alert.base`` and the one-shot part of the ``alert`` service.

Mirrors TS-25.10.6 ``alert/base.py`` (``AlertClassMeta`` registers every class whose name ends
in ``AlertClass`` under its name without the suffix; ``Alert`` keys default to the JSON of
the args; ``OneShotAlertClass.create/delete``) and ``plugins/alert.py``
(``oneshot_create``/``oneshot_delete`` are jobs, lock ``process_alerts``; an alert with the
same class and key replaces the previous one; ``delete`` returns the alerts that stay).
"""

from __future__ import annotations

import enum
import json
from typing import Any


class AlertCategory(enum.Enum):
    PLUGINS = "PLUGINS"
    STORAGE = "STORAGE"
    SYSTEM = "SYSTEM"
    TASKS = "TASKS"


class AlertLevel(enum.Enum):
    INFO = 1
    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


class AlertClassMeta(type):
    def __init__(cls, name, bases, dct):
        super().__init__(name, bases, dct)
        if cls.__name__ != "AlertClass":
            if not cls.__name__.endswith("AlertClass"):
                raise NameError(f"Invalid alert class name {cls.__name__}")
            cls.name = cls.__name__.replace("AlertClass", "")
            AlertClass.classes.append(cls)
            AlertClass.class_by_name[cls.name] = cls


class AlertClass(metaclass=AlertClassMeta):
    classes: list[type] = []
    class_by_name: dict[str, type] = {}
    category: Any = NotImplemented
    level: Any = NotImplemented
    title: Any = NotImplemented
    text: str | None = None

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware

    @classmethod
    def format(cls, args: Any) -> str:
        if cls.text is None:
            return cls.title
        return cls.text % (tuple(args) if isinstance(args, list) else args)


class OneShotAlertClass:
    deleted_automatically = True
    expires_after = None

    async def create(self, args: Any) -> Alert:
        raise NotImplementedError

    async def delete(self, alerts: list[Alert], query: Any) -> list[Alert]:
        raise NotImplementedError


class Alert:
    def __init__(self, klass: type, args: Any = None, key: Any = ...) -> None:
        self.klass = klass
        self.args = args
        self.key = json.dumps(args if key is ... else key, sort_keys=True)

    @property
    def formatted(self) -> str:
        return self.klass.format(self.args)

    def __repr__(self) -> str:
        return f"<Alert {self.klass.name} {self.key}: {self.formatted}>"


class AlertService:
    """``alert.oneshot_create``/``oneshot_delete`` and a ``list`` of what is raised."""

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.alerts: list[Alert] = []

    async def oneshot_create(self, klass: str, args: Any) -> None:
        cls = AlertClass.class_by_name[klass]
        if not issubclass(cls, OneShotAlertClass):
            raise RuntimeError(f"Alert class {klass!r} is not a one-shot alert class")
        alert = await cls(self.middleware).create(args)
        if alert is None:
            return
        self.alerts = [a for a in self.alerts if (a.klass, a.key) != (alert.klass, alert.key)] + [alert]

    async def oneshot_delete(self, klass: str | list[str], query: Any) -> None:
        for name in [klass] if isinstance(klass, str) else klass:
            cls = AlertClass.class_by_name[name]
            related = [a for a in self.alerts if a.klass is cls]
            left = await cls(self.middleware).delete(related, query)
            self.alerts = [a for a in self.alerts if a.klass is not cls or a in left]

    def list(self) -> list[Alert]:
        return list(self.alerts)
