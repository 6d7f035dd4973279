"""How a worker reaches the model: one Serve handle call per micro-batch, retried on failure."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, cast

from ray.serve.handle import DeploymentHandle

from moderator import metrics
from moderator.errors import ModeratorError
from moderator.serving import ModelInfo, ScoreRequest, ScoreResponse
from workers.health import WorkerHealth

logger = logging.getLogger(__name__)


class WorkerStopping(ModeratorError):
    """The worker was asked to stop while a batch was still unscored; it is not committed."""


class BatchScorer(Protocol):
    def info(self) -> ModelInfo: ...

    def score(self, request: ScoreRequest) -> ScoreResponse: ...


class ServeScorer:
    """Calls the Classifier deployment; retries with backoff until it answers or we stop."""

    def __init__(
        self,
        handle: DeploymentHandle[Any],
        timeout_s: float,
        stop: threading.Event,
        health: WorkerHealth | None = None,
    ) -> None:
        self.handle = handle
        self.timeout_s = timeout_s
        self.stop = stop
        self.health = health

    def info(self) -> ModelInfo:
        return cast(ModelInfo, self._call("model_info"))

    def score(self, request: ScoreRequest) -> ScoreResponse:
        return cast(ScoreResponse, self._call("score_batch", request))

    def _call(self, method: str, *args: object) -> Any:
        backoff = 0.5
        while True:
            try:
                result = getattr(self.handle, method).remote(*args).result(timeout_s=self.timeout_s)
                if self.health is not None:
                    self.health.model_answered()
                return result
            except Exception as exc:
                # Ray surfaces replica deaths, timeouts and back-pressure as varied types;
                # the batch is simply retried, and nothing is committed meanwhile.
                metrics.MODEL_CALL_FAILURES.inc()
                logger.warning(
                    "classifier call %s failed (%s); retrying in %.1f s",
                    method,
                    type(exc).__name__,
                    backoff,
                )
            if self.health is not None:
                self.health.model_failed()
            if self.stop.wait(backoff):
                raise WorkerStopping(f"stopped while retrying {method}")
            backoff = min(backoff * 2, 10.0)
