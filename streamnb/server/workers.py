"""``streamnb serve --workers N``: N worker processes serving one socket and one shared ledger.

The supervisor binds the listening socket once and starts N workers, each a
plain ``streamnb serve`` process (its own runtime and uvicorn server) that
inherits the socket (``--socket-fd``): the kernel hands each new connection to
one of them. Streams live in the worker that opened them, and the shared
ledger (PostgreSQL) makes every stream reachable from every worker: a
reconnection, a ``POST .../cancel`` or an input that lands on another worker
reaches the stream through the ledger (``streamnb/_remote.py``).

Each worker reports on a pipe when it serves (``--ready-fd``); the supervisor
prints its one "serving" line once all have. A worker that dies (a crash, a
SIGKILL) is started again after :data:`RESTART_DELAY_S`; its streams are
settled ``failed``/``runtime_lost`` by the survivors once its lease runs out.
SIGINT or SIGTERM stops the workers gracefully (each ends its live
connections, settles its streams and closes its ledger), waiting up to
:data:`STOP_TIMEOUT_S` before killing them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

__all__ = ["RESTART_DELAY_S", "STOP_TIMEOUT_S", "supervise"]

#: how long the supervisor waits before starting a worker that died again, seconds
RESTART_DELAY_S = 1.0
#: how long stopping workers may take before they are killed, seconds
STOP_TIMEOUT_S = 30.0
#: how long the workers may take to start serving, seconds
START_TIMEOUT_S = 120.0


class _Supervisor:
    def __init__(self, argv: Sequence[str], sock: socket.socket, workers: int) -> None:
        self.argv = list(argv)
        self.sock = sock
        self.n = workers
        self.stop = threading.Event()
        self.ready_r, self.ready_w = os.pipe()
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        cmd = [
            sys.executable,
            "-m",
            "streamnb.cli",
            *self.argv,
            "--socket-fd",
            str(fd),
            "--ready-fd",
            str(self.ready_w),
        ]
        return subprocess.Popen(cmd, pass_fds=(fd, self.ready_w))

    def wait_ready(self, url: str) -> bool:
        """Read one line per worker from the ready pipe; False if one died first."""
        seen = 0
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while seen < self.n:
            if self.stop.is_set() or time.monotonic() > deadline:
                return False
            if any(p.poll() is not None for p in self.procs):
                return False
            ready, _, _ = select.select([self.ready_r], [], [], 0.2)
            if ready:
                buf += os.read(self.ready_r, 4096)
                seen = buf.count(b"\n")
        return True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()

    def run(self, url: str, announce: str) -> int:
        originals = {
            sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.procs = [self.spawn() for _ in range(self.n)]
            if not self.wait_ready(url):
                if not self.stop.is_set():
                    print("streamnb: a worker did not start; stopping", file=sys.stderr)
                return self.shutdown(1)
            print(announce, flush=True)
            while not self.stop.wait(0.2):
                for i, proc in enumerate(self.procs):
                    code = proc.poll()
                    if code is None or self.stop.is_set():
                        continue
                    print(
                        f"streamnb: worker {proc.pid} exited ({code}); starting another",
                        file=sys.stderr,
                        flush=True,
                    )
                    if self.stop.wait(RESTART_DELAY_S):
                        break
                    self.procs[i] = self.spawn()
            return self.shutdown(0)
        finally:
            for sig, original in originals.items():
                signal.signal(sig, original)
            for fd in (self.ready_r, self.ready_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def shutdown(self, status: int) -> int:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return status


def supervise(argv: Sequence[str], sock: socket.socket, workers: int, url: str, kinds: str) -> int:
    """Run ``workers`` processes of ``streamnb <argv>`` on ``sock`` until SIGINT/SIGTERM.

    Parameters
    ----------
    argv : sequence of str
        The ``serve`` command line each worker runs (without ``--workers``).
    sock : socket.socket
        The bound, listening socket the workers share.
    workers : int
        How many (>= 2).
    url, kinds : str
        For the "serving" line printed once every worker serves.

    Returns
    -------
    int
        The exit status (0 after a signal; 1 if a worker could not start).
    """
    supervisor = _Supervisor(argv, sock, workers)
    announce = f"streamnb serving {kinds} on {url} ({workers} workers)"
    return supervisor.run(url, announce)
