"""Start the real middlewared (``middlewared.main.main``) with only some plugins' setup() run.

Run by :mod:`tools.truenas_real.session` inside the private mount and network namespaces, with
the framework venv's interpreter::

    python -m tools.truenas_real.daemon --setup datastore,auth,pwenc,alert,vmware,vmware_coord

How the restriction works (TS-25.10.6 ``src/middlewared/middlewared/main.py``): ``__initialize``
(line ~1404) calls ``__plugins_load`` (line ~287), which imports every plugin module and
collects each module's ``setup`` as ``(name, function)`` where the name is the module path
after ``plugins.`` (``datastore``, ``vmware``, ``network``, ``zettarepl_.snapshot_removal_date``
...), then ``__plugins_setup(setup_funcs)`` (line ~360) sorts and runs them all, unguarded.
There is no option to skip any, so this wrapper replaces the name-mangled
``Middleware._Middleware__plugins_setup`` with one that filters the list and then calls the
original. The same wrapper installs the mocks of :mod:`.mocks` first. Everything else
(imports of all 588 plugin modules, services, API tables, the
websocket and unix sockets) is middlewared's own code, unchanged. Other plugins' setup()
would configure the appliance (interfaces, /etc files, pools, services) and fail or do harm
here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _restrict_setup(allowed: set[str]) -> None:
    from middlewared import main as mw_main

    original = mw_main.Middleware._Middleware__plugins_setup  # type: ignore[attr-defined]

    async def plugins_setup(self: Any, setup_funcs: list[tuple[str, Any]]) -> None:
        kept = [(name, fn) for name, fn in setup_funcs if name in allowed]
        skipped = sorted(name for name, _ in setup_funcs if name not in allowed)
        self.logger.info(
            "truenas_real: running setup() of %s; skipped %d others: %s",
            [n for n, _ in kept],
            len(skipped),
            ", ".join(skipped),
        )
        missing = allowed - {name for name, _ in setup_funcs}
        if missing:
            self.logger.error("truenas_real: no setup() found for %s", sorted(missing))
        _install_mocks(self)
        await original(self, kept)

    mw_main.Middleware._Middleware__plugins_setup = plugins_setup  # type: ignore[attr-defined]


def _install_mocks(middleware: Any) -> None:
    """The mocks of mocks.py, before any setup() runs (this product's setup starts a reconcile).

    Through ``Middleware.set_mock`` (main.py line ~1169), the function ``test.set_mock``
    (plugins/test/mock.py) calls after ``exec``-ing the same kind of source; doing it here
    instead of over the API only makes the mocks exist from the first call on.
    """
    from tools.truenas_real.mocks import MOCKS

    for name, source in MOCKS.items():
        scope: dict[str, Any] = {}
        exec(source, scope)  # noqa: S102 - our own mock sources, as test.set_mock execs them
        middleware.set_mock(name, None, scope["mock"])
    middleware.logger.info("truenas_real: mocked %s", ", ".join(MOCKS))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", required=True, help="comma-separated setup names to run")
    parser.add_argument("--debug-level", default="DEBUG")
    args = parser.parse_args(argv)
    _restrict_setup({name.strip() for name in args.setup.split(",") if name.strip()})
    from middlewared import main as mw_main

    # middlewared's own argument parser; the loop monitor's thread is of no use here.
    sys.argv = [
        "middlewared",
        "--disable-loop-monitor",
        "--debug-level",
        args.debug_level,
        "--log-handler",
        "file",
        "--pidfile",
    ]
    mw_main.main()


if __name__ == "__main__":
    main()
