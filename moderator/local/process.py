"""Running a local server process: free ports, readiness, clean stops, and the base class
of the local broker and Redis (start on a free loopback port, wait for it, stop cleanly)."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from moderator.errors import ModeratorError

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready after {timeout_s:.0f} s")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


class LocalServer:
    """A server process on a loopback port (a free one unless given); use as a context manager.

    A subclass names the server (`name`, for messages) and gives its command line
    (`command()`) and, if it needs one, its environment (`env()`); `address` is what the
    log line prints once the port accepts connections.
    """

    name = "server"
    start_timeout_s = 30.0

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """The server's environment; None inherits this process's."""
        return None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float | None = None) -> Self:
        """Start the server and wait until its port accepts connections."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env(),
        )
        wait_until(lambda: port_open(self.port), timeout_s, f"{self.name} on port {self.port}")
        logger.info("local %s listening on %s", self.name, self.address)
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ModeratorError(f"the {self.name} is not running")
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
