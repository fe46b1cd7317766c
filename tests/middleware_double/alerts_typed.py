"""``middlewared.alert.base`` and the one-shot part of the ``alert`` service, as of 27.

Mirrors truenas/middleware master (27.0.0-BETA.1) ``alert/base.py``: ``AlertClassConfig``
(:35-85, a frozen keyword-only dataclass); ``AlertClass.__init_subclass__`` (:105-116):
every subclass but ``OneShotAlertClass``/``DismissableAlertClass`` must be named ``*Alert``
and define ``config``, and registers under its name without the suffix; ``args()`` is the
dataclass as a dict, ``key_from_args`` the whole args unless overridden;
``OneShotAlertClass.delete`` (:180-218) keeps the alerts whose ``key_from_args`` differs
from the query; ``Alert(instance, ...)`` (:284-361). And ``plugins/alert/__init__.py``
``oneshot_create(self, job, instance)`` (:134-149, one alert instance) and
``oneshot_delete(klass, query)`` (:151-167).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .alerts import AlertCategory, AlertLevel  # noqa: F401 - the same members in 27


@dataclasses.dataclass(slots=True, frozen=True, kw_only=True)
class AlertClassConfig:
    category: AlertCategory
    level: AlertLevel
    title: str
    text: str | None = None
    deleted_automatically: bool = True
    keys: list[str] | None = None
    name: str = "NOTSET"


class AlertClass:
    classes: list[type] = []
    by_name: dict[str, type] = {}
    config: AlertClassConfig

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if cls.__name__ not in ("DismissableAlertClass", "OneShotAlertClass"):
            if not cls.__name__.endswith("Alert"):
                raise NameError(f"Invalid alert class name {cls.__name__}")
            name = cls.__name__.removesuffix("Alert")
            cls.config = dataclasses.replace(cls.config, name=name)
            cls.name = name   # the double's tests read klass.name in both alert shapes
            AlertClass.classes.append(cls)
            AlertClass.by_name[name] = cls

    def args(self) -> Any:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else None

    @classmethod
    def key_from_args(cls, args: Any) -> Any:
        return args

    @classmethod
    def format(cls, args: Any) -> str:
        if cls.config.text is None:
            return cls.config.title
        return cls.config.text % (tuple(args) if isinstance(args, list) else args)


class OneShotAlertClass(AlertClass):
    @classmethod
    async def delete(cls, alerts: list[Alert], query: Any) -> list[Alert]:
        return [a for a in alerts if cls.key_from_args(a.instance.args()) != query]


class Alert:
    def __init__(self, instance: AlertClass) -> None:
        self.instance = instance
        self.klass = type(instance)
        self.args = instance.args()
        self.key = json.dumps(self.klass.key_from_args(self.args), sort_keys=True)

    @property
    def formatted(self) -> str:
        return self.klass.format(self.args)

    def __repr__(self) -> str:
        return f"<Alert {self.klass.name} {self.key}: {self.formatted}>"


class AlertService:
    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.alerts: list[Alert] = []

    async def oneshot_create(self, instance: Any) -> None:
        if not isinstance(instance, OneShotAlertClass):
            # what 27 does with 25.10's (name, args) call: the job fails inside
            raise TypeError(f"oneshot_create takes one alert instance, not {type(instance).__name__}")
        alert = Alert(instance)
        self.alerts = [a for a in self.alerts if (a.klass, a.key) != (alert.klass, alert.key)] + [alert]

    async def oneshot_delete(self, klass: str | list[str], query: Any) -> None:
        for name in [klass] if isinstance(klass, str) else klass:
            cls = AlertClass.by_name[name]
            related = [a for a in self.alerts if a.klass is cls]
            left = await cls.delete(related, query)
            self.alerts = [a for a in self.alerts if a.klass is not cls or a in left]

    def list(self) -> list[Alert]:
        return list(self.alerts)
