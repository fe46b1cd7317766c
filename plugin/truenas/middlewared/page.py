"""The web page, served by middlewared itself at ``/_plugins/vmware_coord/``.

TrueNAS's nginx proxies ``/_plugins`` in the same HTTPS site as ``/ui`` and ``/api/current``
(TS-25.10.6 ``plugins/etc_files/local/nginx/nginx.conf.mako:407-418``; 26.0 :485-496), so
the page is same-origin with the TrueNAS web UI and signs in with the UI's own session
where it can. ``Middleware.plugin_route_add`` (TS-25.10.6 ``main.py:536-537``) mounts a
handler under that prefix; the router is frozen before any plugin's ``setup()`` runs
(``main.py:1454`` then ``:1457``), so the route is added while the services are built.
Only the page's static files are served: every piece of data reaches it through the
authenticated websocket.
"""

import logging
import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PLUGIN = "vmware_coord"
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Scripts, styles and connections only from this site (its websocket included).
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; object-src 'none'; "
                               "frame-ancestors 'self'; base-uri 'none'",
}


def page_dir() -> Path:
    return Path(str(resources.files("truenas_vmware_coord.ui")))


async def serve(request: web.Request) -> web.StreamResponse:
    root = page_dir().resolve()
    wanted = request.match_info.get("path", "") or "index.html"
    target = (root / wanted).resolve()
    if root not in target.parents or not target.is_file() or target.suffix == ".py":
        raise web.HTTPNotFound()
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return web.Response(body=target.read_bytes(), content_type=kind, headers=HEADERS)


def add_route(middleware: Any) -> bool:
    """Mount the page (from a service's ``__init__``); False, logged, when middlewared
    cannot take a route now (``dump_api`` builds services without a web application)."""
    if getattr(middleware, "app", None) is None or not hasattr(middleware, "plugin_route_add"):
        return False
    try:
        middleware.plugin_route_add(PLUGIN, "{path:.*}", serve)
    except RuntimeError:   # "Cannot register a resource into frozen router"
        log.warning("truenas-vmware-coord: the page could not be mounted", exc_info=True)
        return False
    return True
