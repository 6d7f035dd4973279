"""A throwaway redis-server on a free loopback port, with no persistence."""

from __future__ import annotations

import logging
import shutil
import subprocess
from types import TracebackType

from moderator.errors import ModeratorError
from moderator.local.process import free_port, port_open, stop_process, wait_until

logger = logging.getLogger(__name__)


class LocalRedis:
    def __init__(
        self, port: int | None = None, maxmemory_mb: int = 256, extra_args: list[str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.maxmemory_mb = maxmemory_mb
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ModeratorError(
                "redis-server is not installed: apt-get install redis-server "
                "(or set MODERATOR_REDIS__URL to an existing Redis)"
            )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory",
                f"{self.maxmemory_mb}mb",
                "--maxmemory-policy",
                "allkeys-lru",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), timeout_s, f"redis-server on port {self.port}")
        logger.info("local redis-server listening on %s", self.url)
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ModeratorError("redis-server is not running")
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
