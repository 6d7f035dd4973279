"""The Classifier Ray Serve deployment: loads a checkpoint once, scores micro-batches.

Each worker request is already a micro-batch; @serve.batch additionally merges
requests that arrive together from several workers into one forward pass.
max_ongoing_requests must be at least max_batch_size, or Serve silently caps
the batches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.serve import Application

from moderator.model import InferenceOptions, Precision, load_model
from moderator.serving.messages import ModelInfo, ScoreRequest, ScoreResponse
from moderator.serving.recent import RecentEmbeddings
from moderator.serving.scoring import merge_requests, model_info, score_request, split_response

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "Classifier"


class BatchingConfig(BaseModel):
    """Live settings (Serve user_config): changed by reconfigure without a restart."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=4, ge=1, description="Worker requests per forward pass.")
    batch_wait_timeout_s: float = Field(default=0.002, ge=0)


class AutoscalingArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)


class ClassifierArgs(BaseModel):
    """Arguments of the Serve app builder (serveConfigV2 `args`, or `moderator serve`)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(default=None, description="Model directory; None → starter.")
    torch_threads: int = Field(default=2, ge=1)
    precision: Literal["fp32", "bf16", "int8"] = Field(
        default="fp32", description="CPU inference options; see docs/model.md for the trade-offs."
    )
    num_replicas: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0, description="Fractions share one GPU.")
    max_ongoing_requests: int = Field(default=8, ge=1)
    max_queued_requests: int = Field(
        default=64, ge=-1, description="Beyond this, callers get BackPressureError (-1: no cap)."
    )
    recent_embeddings: int = Field(
        default=4096,
        ge=0,
        description="Embeddings per kind the replica remembers, to reuse for reposts whose"
        " original is still in flight (not yet in Redis); 0 turns it off.",
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    autoscaling: AutoscalingArgs | None = None

    @model_validator(mode="after")
    def _batches_fit(self) -> ClassifierArgs:
        if self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                "max_ongoing_requests must be >= batching.max_batch_size, "
                "or Serve silently caps the batch size"
            )
        return self


@serve.deployment(name=DEPLOYMENT_NAME)
class ClassifierDeployment:
    def __init__(
        self,
        checkpoint: str | None,
        torch_threads: int,
        precision: Precision = "fp32",
        recent_embeddings: int = 4096,
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.model = load_model(checkpoint, InferenceOptions(precision=precision))
        self.recent = RecentEmbeddings(recent_embeddings)
        self.info = model_info(self.model)
        logger.info(
            "loaded model %s with categories %s", self.info.model_version, self.info.categories
        )

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = BatchingConfig.model_validate(user_config)
        self._score_merged.set_max_batch_size(config.max_batch_size)  # type: ignore[attr-defined]
        self._score_merged.set_batch_wait_timeout_s(  # type: ignore[attr-defined]
            config.batch_wait_timeout_s
        )
        logger.info("batching set to %s", config)

    def model_info(self) -> ModelInfo:
        return self.info

    async def score_batch(self, request: ScoreRequest) -> ScoreResponse:
        response: ScoreResponse = await self._score_merged(request)
        return response

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.002)
    async def _score_merged(self, requests: list[ScoreRequest]) -> list[ScoreResponse]:
        merged, rows = merge_requests(
            requests, self.info.image_embedding_dim, self.info.text_embedding_dim
        )
        return split_response(score_request(self.model, merged, self.recent), requests, rows)


def build_app(args: ClassifierArgs) -> Application:
    """Typed app builder: import path ``moderator.serving.classifier_deployment:build_app``."""
    options: dict[str, Any] = {
        "max_ongoing_requests": args.max_ongoing_requests,
        "max_queued_requests": args.max_queued_requests,
        "ray_actor_options": {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
        "user_config": args.batching.model_dump(),
    }
    if args.autoscaling is not None:
        options["autoscaling_config"] = args.autoscaling.model_dump()
    else:
        options["num_replicas"] = args.num_replicas
    return ClassifierDeployment.options(**options).bind(  # type: ignore[attr-defined]
        str(args.checkpoint) if args.checkpoint else None,
        args.torch_threads,
        args.precision,
        args.recent_embeddings,
    )
