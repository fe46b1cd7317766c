"""The plugin's alert classes, built from ``truenas.alerts.DEFINITIONS`` in the shape the
running middlewared expects, and the one way to raise or clear them.

- 25.10 and 26.0 (truenas/middleware TS-25.10.6 and TS-26.0.0-BETA.3 ``alert/base.py``):
  classes named ``*AlertClass`` deriving from ``AlertClass`` and the ``OneShotAlertClass``
  mixin, with class attributes; ``alert.oneshot_create(name, args)``.
- 27 (master ``alert/base.py:35-218``): ``@dataclass(kw_only=True)`` classes named
  ``*Alert`` deriving from ``OneShotAlertClass`` with a ``config = AlertClassConfig(...)``;
  ``alert.oneshot_create`` takes one alert instance (``plugins/alert/__init__.py:134-149``).

Either way one alert per key: the next run replaces or clears it, and
``alert.oneshot_delete(name, key)`` removes it.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import middlewared.alert.base as alert_base

from ..alerts import DEFINITIONS, AlertOp

TYPED = hasattr(alert_base, "AlertClassConfig")   # 27 and later


def _classic(name: str) -> type:
    definition = DEFINITIONS[name]

    async def create(self: Any, args: dict[str, Any]) -> Any:
        return alert_base.Alert(type(self), args, key=args["key"])

    async def delete(self: Any, alerts: list[Any], query: Any) -> list[Any]:
        return [a for a in alerts if a.args["key"] != query]

    return type(f"{name}AlertClass", (alert_base.AlertClass, alert_base.OneShotAlertClass), {
        "category": getattr(alert_base.AlertCategory, definition.category),
        "level": getattr(alert_base.AlertLevel, definition.level),
        "title": definition.title, "text": definition.text, "create": create, "delete": delete,
        "__module__": __name__})


def _typed(name: str) -> type:
    definition = DEFINITIONS[name]
    config = alert_base.AlertClassConfig(
        category=getattr(alert_base.AlertCategory, definition.category),
        level=getattr(alert_base.AlertLevel, definition.level), title=definition.title, text=definition.text)

    def key_from_args(cls: type, args: Any) -> Any:
        return args["key"]

    return dataclasses.make_dataclass(
        f"{name}Alert", [("key", str), *definition.fields], bases=(alert_base.OneShotAlertClass,),
        kw_only=True, namespace={"config": config, "key_from_args": classmethod(key_from_args),
                                 "__module__": __name__})


CLASSES: dict[str, type] = {name: (_typed if TYPED else _classic)(name) for name in DEFINITIONS}
globals().update({cls.__name__: cls for cls in CLASSES.values()})
__all__ = sorted(cls.__name__ for cls in CLASSES.values())


def sender(call: Callable[..., Any]) -> Callable[[AlertOp], None]:
    """How ``op`` reaches ``alert.oneshot_create``/``oneshot_delete`` on this release."""

    def send(op: AlertOp) -> None:
        if op.action == "delete":
            call("alert.oneshot_delete", op.klass, op.args)
        elif TYPED:
            call("alert.oneshot_create", CLASSES[op.klass](**op.args))
        else:
            call("alert.oneshot_create", op.klass, op.args)

    return send
