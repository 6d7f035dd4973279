"""Unit tests start no service: Ray, a Kafka client, a Redis connection or a local server
process here fails the test at once, naming what to do (as Ray Serve's own unit tests forbid
`ray.init`). Tests on real parts live in tests/integration and tests/e2e."""

from __future__ import annotations

import functools
import pkgutil
from typing import Any, NoReturn

import pytest

_GUARDED = {
    "ray.init": "Ray",
    "kafka.KafkaConsumer.__init__": "a Kafka consumer",
    "kafka.KafkaProducer.__init__": "a Kafka producer",
    "kafka.KafkaAdminClient.__init__": "a Kafka admin client",
    "redis.connection.AbstractConnection.connect": "a Redis connection",
    "moderator.local.process.LocalServer.start": "a local server process",
}


def _refuse(original: Any, what: str) -> Any:
    @functools.wraps(original)  # inspect still finds the original's source
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError(
            f"a unit test started {what}: unit tests run without services; "
            "move the test to tests/integration (which has the shared broker, Redis and Ray)"
        )

    return refuse


@pytest.fixture(autouse=True)
def _no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    # Per test, not per session: a session fixture would stay on for the integration tests
    # that run after the unit tests in the same pytest run.
    for target, what in _GUARDED.items():
        module, _, attribute = target.rpartition(".")
        owner = pkgutil.resolve_name(module)
        monkeypatch.setattr(owner, attribute, _refuse(getattr(owner, attribute), what))
