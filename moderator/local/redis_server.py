"""A throwaway redis-server on a free loopback port, with no persistence."""

from __future__ import annotations

import shutil

from moderator.errors import ModeratorError
from moderator.local.process import LocalServer


class LocalRedis(LocalServer):
    name = "redis-server"
    start_timeout_s = 15.0

    def __init__(
        self, port: int | None = None, maxmemory_mb: int = 256, extra_args: list[str] | None = None
    ) -> None:
        super().__init__(port)
        self.maxmemory_mb = maxmemory_mb
        self.extra_args = extra_args or []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return self.url

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ModeratorError(
                "redis-server is not installed: apt-get install redis-server "
                "(or set MODERATOR_REDIS__URL to an existing Redis)"
            )
        return [
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
        ]
