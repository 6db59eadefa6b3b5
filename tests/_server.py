"""Start the real app (`python app.py ...`) on a free loopback port for tests, and stop it.

    from tests._server import AppServer
    with AppServer(["--checkpoint", "runs/x.pt"]) as server:   # waits until the page answers
        client = gradio_client.Client(server.url)

Reusable by any test module; pair it with a session- or module-scoped fixture so the server starts once.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py --host 127.0.0.1 --port <free> *args` in a subprocess; output goes to self.log."""

    def __init__(self, args: list[str] = (), env: dict[str, str] | None = None, timeout: float = 120.0):
        self.args, self.timeout = list(args), timeout
        self.env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="app_server_", suffix=".log")[1])

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self) -> "AppServer":
        cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with code {self.proc.returncode}:\n{self.output()}")
            try:
                # any HTTP answer (200, or 401 with --auth) means the server is up; the line app.py prints
                # last means its start-up work (sizing the queue from a throughput run) is over too
                if (httpx.get(self.url + "gradio_api/info", timeout=2).status_code in (200, 401)
                        and "* Running on local URL" in self.output()):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"app.py did not answer on {self.url} within {self.timeout:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the tunnel client goes too
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
