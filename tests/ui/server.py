"""A local stand-in for a TrueNAS web server: the plugin's own routes under /_plugins/ (the
page, as middlewared serves it) plus a JSON-RPC 2.0 websocket at /api/current that hosts the
real plugin services inside the middlewared double, over the simulator and zfs-fuse. No
canned responses: every answer comes from the plugin. Sign-in: the API key of the spec, or
the token the TrueNAS web UI keeps for its session (``auth.login_with_token``).

Run by the UI tests as a process of its own on 127.0.0.1 (stopped by its pid):

    python -m tests.ui.server --workdir DIR --spec SPEC.json

SPEC holds the vCenter to map (host, port, username, sha256), the datastore and dataset of
the mapping, the ESXi host names the NAS resolves (``esx_hosts``: a restore's NFS share
names its host), and the API key the page signs in with; the vCenter password comes from the
environment (COORD_UI_VCENTER_PASSWORD), never a file. Once serving, it prints
``ui ready url=http://127.0.0.1:PORT/ pid=PID``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.middleware_double import harness  # noqa: E402
from tests.middleware_double.middleware import Middleware  # noqa: E402

NOT_AUTHENTICATED = {"code": -32001, "message": "Not authenticated",
                     "data": {"error": 13, "reason": "Not authenticated", "trace": None, "extra": None}}


def prepare(workdir: Path, spec: dict[str, Any]) -> Middleware:
    """A middlewared with the stock plugin and ours, one mapping, and its endpoint pinned."""
    mw, _plugin = harness.start(workdir)
    harness.wait_jobs(mw)
    mw.dns.update({host: "127.0.0.1" for host in spec.get("esx_hosts", ())})
    harness.add_mapping(mw, spec["host"], spec["username"], os.environ["COORD_UI_VCENTER_PASSWORD"],
                        spec["datastore"], spec["dataset"])
    endpoint = {"hostname": spec["host"], "port": spec["port"], "connect_timeout_seconds": 5,
                "tls": {"sha256_fingerprint": spec["sha256"]}}
    answer = mw.rpc({"jsonrpc": "2.0", "id": 0, "method": "vmware_coord.endpoint.create",
                     "params": [endpoint]})
    if "error" in answer:
        raise RuntimeError(f"pinning the endpoint failed: {answer['error']}")
    return mw


def rpc_handler(mw: Middleware, api_key: str, ui_token: str):
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        authenticated = False
        loop = asyncio.get_running_loop()
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            call = json.loads(message.data)
            method, params, id_ = call.get("method"), call.get("params") or [], call.get("id")
            if method in ("auth.login_with_api_key", "auth.login_with_token"):
                authenticated = params == [api_key if method == "auth.login_with_api_key" else ui_token]
                answer = {"jsonrpc": "2.0", "id": id_, "result": authenticated}
            elif not authenticated:
                answer = {"jsonrpc": "2.0", "id": id_, "error": NOT_AUTHENTICATED}
            elif method == "core.get_jobs":
                answer = {"jsonrpc": "2.0", "id": id_, "result": mw.get_jobs(*params)}
            else:
                # The double runs services in threads, as middlewared runs sync methods.
                answer = await loop.run_in_executor(None, lambda c=call: mw.rpc(c, wait_jobs=False))
            await ws.send_str(json.dumps(answer))
        return ws
    return websocket


async def serve(mw: Middleware, api_key: str, ui_token: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/api/current", rpc_handler(mw, api_key, ui_token))
    for plugin, route, handler in mw.routes:   # what plugin_route_add mounted
        app.router.add_route("*", f"/_plugins/{plugin}/{route}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"ui ready url=http://127.0.0.1:{bound}/ pid={os.getpid()}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    mw = prepare(args.workdir, spec)
    try:
        asyncio.run(serve(mw, spec["api_key"], spec["ui_token"], args.port))
    finally:
        harness.stop(mw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
