"""A TCP proxy in a process of its own, to kill "vCenter" in the middle of a call (test rig only).

    python -m tools.rig.proxy --listen 127.0.0.1:PORT --to 127.0.0.1:SIMPORT

It copies bytes both ways and understands nothing of them: TLS passes through unchanged,
so a client that pins the simulator's certificate still sees that certificate. Once
listening it prints ``proxy ready port=<port> pid=<pid>``. Killing the process (SIGKILL,
by its pid) drops every connection at once, as a vCenter that dies or a network that
goes away would; started again on the same port (SO_REUSEADDR, so connections the dead
one left in TIME_WAIT do not block the bind) it serves new connections again. Stopping it
(SIGSTOP) is a vCenter that hangs, or a network that drops packets: the kernel still
accepts connections, but no byte comes back on any of them until it is continued.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"^proxy ready port=(\d+) pid=(\d+)$")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy until EOF or an error, then pass the EOF on (half-close), so TLS close_notify and
    an orderly shutdown look to each side as they would without the proxy."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, upstream_address: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(upstream_address, timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    for s in (client, upstream):
        with contextlib.suppress(OSError):
            s.close()


def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The same port again right after a kill, despite the dead proxy's TIME_WAIT connections.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    print(f"proxy ready port={server.getsockname()[1]} pid={os.getpid()}", flush=True)
    while True:
        client, _ = server.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(client, upstream), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rig.proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT (port 0: a free one)")
    parser.add_argument("--to", type=_address, required=True, help="HOST:PORT to forward to")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))   # stop at once, connections and all
    try:
        serve(args.listen, args.to)
    except OSError as exc:
        print(f"proxy: {exc}", file=sys.stderr)
        return 1
    return 0


@dataclasses.dataclass
class Proxy:
    """A running proxy process, stopped or killed by its own pid."""

    port: int
    pid: int
    process: subprocess.Popen
    upstream: tuple[str, int]
    host: str = "127.0.0.1"

    def kill(self) -> None:
        """SIGKILL: every connection drops mid-call, nothing is flushed or closed politely."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def freeze(self) -> None:
        """SIGSTOP: every connection, open or new, gets no answer until ``thaw``."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)   # a frozen proxy cannot act on SIGTERM
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait()
        self._close()

    def _close(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            if stream:
                stream.close()

    def restart(self) -> Proxy:
        """A new proxy process on the same port (this one must be gone)."""
        return start(self.upstream, listen_port=self.port, host=self.host)


def start(upstream: tuple[str, int], listen_port: int = 0, host: str = "127.0.0.1",
          timeout: float = 20) -> Proxy:
    cmd = [sys.executable, "-m", "tools.rig.proxy", "--listen", f"{host}:{listen_port}",
           "--to", f"{upstream[0]}:{upstream[1]}"]
    deadline = time.monotonic() + timeout
    while True:
        # stderr is a pipe of its own: an inherited one would keep the caller's output open
        # for as long as a proxy that outlived its test runs.
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        match = _READY.match(line.strip())
        if match:
            return Proxy(port=int(match[1]), pid=int(match[2]), process=proc, upstream=upstream, host=host)
        code = proc.wait()
        why = proc.stderr.read().strip()
        proc.stdout.close()
        proc.stderr.close()
        # The port may take a moment to be free again after a kill; anything else is fatal.
        if listen_port == 0 or time.monotonic() > deadline:
            raise RuntimeError(f"the proxy exited with {code} before it was ready ({why}): {' '.join(cmd)}")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
